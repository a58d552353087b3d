"""The ``notifications:`` config section, parsed once at load into frozen settings.

Every problem is reported as ``file:line: notifications.field.path: message``
when the config is loaded (every command, and SIGHUP), never at the first
event. Secrets are named by file (``url_file``, ``token_file``, ...) and read
at each delivery, so a rotated token needs no reload and a file the CLI user
cannot read does not stop ``reconciler status``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from reconciler import logs
from reconciler.core import durations, errors
from specs import yamlnodes

SECTION = "notifications"
NOTIFY_TYPES = ("slack", "teams", "webhook", "email", "apprise")
STATUS_TYPES = ("github", "gitlab")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_REPO_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_PROJECT_RE = re.compile(r"^(\d+|[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+)$")
_EMAIL_RE = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")
_HEADER_RE = re.compile(r"^[A-Za-z0-9-]+$")
DEFAULT_URLS = {"github": "https://api.github.com", "gitlab": "https://gitlab.com"}
SMTP_PORTS = {"none": 25, "starttls": 587, "ssl": 465}


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket per target: sends beyond it wait in the outbox, never in a deploy."""

    per_minute: float = 60.0  # deliveries a minute; 0 turns the limit off
    burst: int = 5  # deliveries that may go at once after a quiet spell


@dataclass(frozen=True, slots=True)
class Secret:
    """A value written in the config, or the path of a file holding it (read at each use)."""

    value: str = ""
    file: Path | None = None

    def read(self) -> str:
        """The value; every value read is registered with the log redactor, so it never shows in logs."""
        if self.file is None:
            value = self.value
        else:
            try:
                value = self.file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise errors.ConfigError(f"cannot read {self.file}: {exc.strerror}") from exc
        logs.register_secret(value)
        return value


@dataclass(frozen=True, slots=True)
class HttpSpec:
    """Slack and Teams incoming webhooks and generic JSON webhooks: one POST per event."""

    url: Secret
    headers: tuple[tuple[str, str], ...] = ()
    signing_secret: Secret | None = None  # webhook only: HMAC-SHA256 of the body in a header


@dataclass(frozen=True, slots=True)
class EmailSpec:
    host: str
    port: int
    security: str  # none | starttls | ssl
    sender: str
    recipients: tuple[str, ...]
    username: str = ""
    password: Secret | None = None


@dataclass(frozen=True, slots=True)
class AppriseSpec:
    """apprise URLs (``json://``, ``mailto://``, ``ntfy://``, ...): often carry tokens, so a file is best."""

    urls: tuple[str, ...] = ()
    urls_file: Path | None = None

    def read(self) -> tuple[str, ...]:
        if self.urls_file is None:
            return self.urls
        try:
            text = self.urls_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise errors.ConfigError(f"cannot read {self.urls_file}: {exc.strerror}") from exc
        urls = tuple(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))
        for url in urls:
            logs.register_secret(url)
        return urls


@dataclass(frozen=True, slots=True)
class ForgeSpec:
    """Commit statuses on GitHub (``repo: owner/name``) or GitLab (``project: id or group/name``)."""

    url: str
    repo: str
    token: Secret
    context: str = "reconciler"  # a status per application: <context>/<application>


Spec = HttpSpec | EmailSpec | AppriseSpec | ForgeSpec


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    type: str
    where: str  # file:line of the target, for messages about it after load
    spec: Spec
    timeout_s: float = 10.0  # one delivery attempt; a hung endpoint costs this target no more
    rate_limit: RateLimit = field(default_factory=RateLimit)
    max_age_s: float = 86400.0  # not delivered this long after the event happened: dropped, logged

    @property
    def commit_status(self) -> bool:
        return self.type in STATUS_TYPES


@dataclass(frozen=True, slots=True)
class Delivery:
    poll_s: float = 1.0  # how often new history is read; an event waits at most this long before its first send
    retry_first_s: float = 5.0  # the first delay after a failed delivery, doubled each time
    retry_max_s: float = 300.0  # the longest delay between two attempts
    max_age_s: float = 86400.0  # the default of every target's max_age


@dataclass(frozen=True, slots=True)
class NotificationSettings:
    targets: tuple[Target, ...] = ()
    delivery: Delivery = field(default_factory=Delivery)

    @property
    def enabled(self) -> bool:
        return bool(self.targets)

    def target(self, name: str) -> Target | None:
        return next((t for t in self.targets if t.name == name), None)

    def names(self, *, commit_status: bool) -> tuple[str, ...]:
        return tuple(t.name for t in self.targets if t.commit_status == commit_status)


# ---------------------------------------------------------------------------- parsing


@functools.lru_cache(maxsize=8)
def _line_map(file: Path, mtime_ns: int) -> dict[str, int]:
    """Field path -> line of the config file (cached per version of the file)."""
    del mtime_ns  # part of the cache key only
    try:
        _, lines = yamlnodes.load_yaml_with_lines(file.read_text(encoding="utf-8"), file=str(file))
    except (OSError, errors.SpecError):
        return {}
    return lines


class _Reader:
    """Typed access to the raw section that collects every problem with its line."""

    def __init__(self, name: str, lines: Mapping[str, int], base_dir: Path) -> None:
        self.name = name
        self.lines = lines
        self.base_dir = base_dir
        self.problems: list[str] = []

    def at(self, path: str) -> str:
        return f"{self.name}:{yamlnodes.line_of(dict(self.lines), path)}"

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{self.at(path)}: {path}: {message}")

    def mapping(self, value: Any, path: str, allowed: set[str] | None = None) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(path, f"expected a mapping, got {type(value).__name__}")
            return {}
        if allowed is not None:
            for key in sorted(set(value) - allowed, key=str):
                self.problem(f"{path}.{key}", f"unknown field; allowed here: {', '.join(sorted(allowed))}")
        return value

    def text(self, raw: Mapping[str, Any], key: str, path: str, *, required: bool = False,
             default: str = "") -> str:
        value = raw.get(key)
        if value is None or value == "":
            if required:
                self.problem(f"{path}.{key}", "required")
            return default
        if not isinstance(value, str | int) or isinstance(value, bool):
            self.problem(f"{path}.{key}", f"expected text, got {type(value).__name__}")
            return default
        return str(value)

    def duration(self, raw: Mapping[str, Any], key: str, path: str, default: float) -> float:
        if key not in raw:
            return default
        try:
            return durations.parse_duration(raw[key], where=f"{self.at(f'{path}.{key}')}: {path}.{key}")
        except errors.ConfigError as exc:
            self.problems.append(str(exc))
            return default

    def number(self, raw: Mapping[str, Any], key: str, path: str, default: float, *, minimum: float) -> float:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
            self.problem(f"{path}.{key}", f"expected a number of at least {minimum:g}, got {value!r}")
            return default
        return float(value)

    def file(self, raw: Mapping[str, Any], key: str, path: str) -> Path | None:
        value = self.text(raw, key, path)
        if not value:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    def url(self, raw: Mapping[str, Any], path: str, *, required: bool = True) -> Secret:
        """``url`` or ``url_file`` (exactly one); a written URL must be http(s)."""
        has_url, has_file = bool(raw.get("url")), bool(raw.get("url_file"))
        if has_url and has_file:
            self.problem(f"{path}.url", "give url or url_file, not both")
        if not has_url and not has_file:
            if required:
                self.problem(f"{path}.url", "required (or url_file: a file holding the URL, for URLs with tokens)")
            return Secret()
        if has_file:
            return Secret(file=self.file(raw, "url_file", path))
        value = self.text(raw, "url", path)
        self.check_url(value, f"{path}.url")
        return Secret(value=value)

    def check_url(self, value: str, path: str) -> None:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            self.problem(path, f"{value!r} is not an http(s) URL")

    def strings(self, raw: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
        value = raw.get(key)
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.problem(f"{path}.{key}", "expected a list of text")
            return ()
        return tuple(value)


_COMMON = {"type", "timeout", "rate_limit", "max_age"}
_KEYS = {
    "slack": _COMMON | {"url", "url_file"},
    "teams": _COMMON | {"url", "url_file"},
    "webhook": _COMMON | {"url", "url_file", "headers", "secret_file"},
    "email": _COMMON | {"smtp", "from", "to"},
    "apprise": _COMMON | {"urls", "urls_file"},
    "github": _COMMON | {"url", "repo", "token_file", "context"},
    "gitlab": _COMMON | {"url", "project", "token_file", "context"},
}


def parse(raw: Any, *, file: Path | None, base_dir: Path, lines: Mapping[str, int] | None = None
          ) -> NotificationSettings:
    """The section's settings; raises ``ConfigError`` listing every problem, one per line.

    ``lines`` maps field paths (``notifications.targets.chat.url``) to lines; without it the file is
    read again for them (the caller may already have them from its own parse).
    """
    name = str(file) if file else "config"
    if lines is None and file is not None and raw is not None:
        try:
            lines = _line_map(file, file.stat().st_mtime_ns)
        except OSError:
            lines = {}
    r = _Reader(name, lines or {}, base_dir)
    section = r.mapping(raw, SECTION, {"targets", "commit_status", "delivery"})
    d_raw = r.mapping(section.get("delivery"), f"{SECTION}.delivery", {"poll", "retry", "max_age"})
    retry = r.mapping(d_raw.get("retry"), f"{SECTION}.delivery.retry", {"first", "max"})
    delivery = Delivery(
        poll_s=max(r.duration(d_raw, "poll", f"{SECTION}.delivery", 1.0), 0.01),
        retry_first_s=r.duration(retry, "first", f"{SECTION}.delivery.retry", 5.0),
        retry_max_s=r.duration(retry, "max", f"{SECTION}.delivery.retry", 300.0),
        max_age_s=r.duration(d_raw, "max_age", f"{SECTION}.delivery", 86400.0),
    )
    targets: list[Target] = []
    for group, types in (("targets", NOTIFY_TYPES), ("commit_status", STATUS_TYPES)):
        entries = r.mapping(section.get(group), f"{SECTION}.{group}")
        for tname, traw in entries.items():
            path = f"{SECTION}.{group}.{tname}"
            if not isinstance(tname, str) or not _NAME_RE.match(tname):
                r.problem(path, "a target name is lowercase letters, digits, '-' and '_'")
                continue
            if any(t.name == tname for t in targets):
                r.problem(path, "this name is taken by another target (names are shared by targets and "
                          "commit_status)")
                continue
            target = _target(r, tname, r.mapping(traw, path), path, types, delivery)
            if target is not None:
                targets.append(target)
    if r.problems:
        raise errors.ConfigError("\n".join(r.problems))
    return NotificationSettings(tuple(targets), delivery)


def _target(r: _Reader, name: str, raw: Mapping[str, Any], path: str, types: tuple[str, ...],
            delivery: Delivery) -> Target | None:
    kind = raw.get("type")
    if kind not in types:
        r.problem(f"{path}.type", f"expected one of {', '.join(types)}, got {kind!r}")
        return None
    r.mapping(raw, path, _KEYS[kind])
    spec: Spec
    if kind in ("slack", "teams", "webhook"):
        headers: list[tuple[str, str]] = []
        for hname, hvalue in r.mapping(raw.get("headers"), f"{path}.headers").items():
            if not _HEADER_RE.match(str(hname)) or not isinstance(hvalue, str):
                r.problem(f"{path}.headers.{hname}", "a header is a name (letters, digits, '-') and a text value")
            else:
                headers.append((str(hname), hvalue))
        secret = r.file(raw, "secret_file", path)
        spec = HttpSpec(r.url(raw, path), tuple(headers), Secret(file=secret) if secret else None)
    elif kind == "email":
        smtp = r.mapping(raw.get("smtp"), f"{path}.smtp", {"host", "port", "security", "username", "password_file"})
        security = r.text(smtp, "security", f"{path}.smtp", default="starttls")
        if security not in SMTP_PORTS:
            r.problem(f"{path}.smtp.security", f"expected one of {', '.join(SMTP_PORTS)}, got {security!r}")
            security = "starttls"
        port = r.number(smtp, "port", f"{path}.smtp", SMTP_PORTS[security], minimum=1)
        sender = r.text(raw, "from", path, required=True)
        recipients = r.strings(raw, "to", path)
        if not recipients:
            r.problem(f"{path}.to", "required: a list of addresses")
        for addr in (sender, *recipients):
            if addr and not _EMAIL_RE.match(addr):
                r.problem(f"{path}.{'from' if addr == sender else 'to'}", f"{addr!r} is not an email address")
        password = r.file(smtp, "password_file", f"{path}.smtp")
        spec = EmailSpec(r.text(smtp, "host", f"{path}.smtp", required=True), int(port), security, sender,
                         recipients, r.text(smtp, "username", f"{path}.smtp"),
                         Secret(file=password) if password else None)
    elif kind == "apprise":
        urls = r.strings(raw, "urls", path)
        urls_file = r.file(raw, "urls_file", path)
        if bool(urls) == bool(urls_file):
            r.problem(f"{path}.urls", "give urls (a list) or urls_file (one URL a line), one of them")
        for i, u in enumerate(urls):
            if "://" not in u:
                r.problem(f"{path}.urls[{i}]", "not an apprise URL (scheme://...)")
        spec = AppriseSpec(urls, urls_file)
    else:
        key = "repo" if kind == "github" else "project"
        repo = r.text(raw, key, path, required=True)
        if repo and not (_REPO_RE if kind == "github" else _PROJECT_RE).match(repo):
            r.problem(f"{path}.{key}", "expected owner/name" if kind == "github" else
                      "expected a project id or its path (group/name)")
        url = r.text(raw, "url", path, default=DEFAULT_URLS[kind]).rstrip("/")
        r.check_url(url, f"{path}.url")
        token = r.file(raw, "token_file", path)
        if token is None:
            r.problem(f"{path}.token_file", "required: a file holding the API token")
        context = r.text(raw, "context", path, default="reconciler").strip("/")
        spec = ForgeSpec(url, repo, Secret(file=token), context or "reconciler")
    rate = r.mapping(raw.get("rate_limit"), f"{path}.rate_limit", {"per_minute", "burst"})
    return Target(
        name=name, type=kind, where=r.at(path), spec=spec,
        timeout_s=max(r.duration(raw, "timeout", path, 10.0), 0.1),
        rate_limit=RateLimit(r.number(rate, "per_minute", f"{path}.rate_limit", 60.0, minimum=0),
                             int(r.number(rate, "burst", f"{path}.rate_limit", 5, minimum=1))),
        max_age_s=r.duration(raw, "max_age", path, delivery.max_age_s),
    )

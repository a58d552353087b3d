"""Reading the config file: YAML with line numbers, every field checked, all problems reported at once.

``config.load_config`` is the entry point; this module turns the parsed YAML into ``config.Config``
and records each problem as ``file:line: field: message``, sorted by line. Line numbers come from
the composed YAML nodes (libyaml's loader when available), so every field, list item and account
setting can be named precisely; a provider's account settings are checked by the provider itself.

Why it is this long: every section of the config file is checked here, one ``_Builder`` method per section
(10 to 80 lines each), so that every problem carries its line and all are sorted and reported together; the typed
result is in ``settings``.
"""

from __future__ import annotations

import copy
import difflib
import logging
import re
import types
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from reconciler.config import settings as config_mod
from reconciler.core import access, durations, errors
from reconciler.notifications import settings as notify_settings
from specs import limits as spec_limits

_BRANCH_RE = re.compile(r"^(?!-)(?!/)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/+-]+(?<!/)(?<!\.lock)$")
_SCP_RE = re.compile(r"^[\w.-]+@[\w.-]+:")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_TOKEN_NAME_RE = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
_PATTERN_RE = re.compile(r"^[a-z0-9*?\[\]!-]{1,80}$")
_LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
TOP_KEYS = ("repo", "poll", "state", "state_dir", "prune", "providers", "http", "log",
            "execution", "ha", "webhook", "schedules", "approvals", "daemon", "notifications", "specs", "verify",
            "analysis")
"""The config file's top-level fields."""
_REPO_KEYS = ("url", "branch", "path", "allow_force_push", "allowed_signers", "username", "token_file",
              "ssh_key_file", "ssh_public_key_file", "ssh_known_hosts")
_HINTS = {"policies": "guardrail settings live in policies.yaml in the spec directory (docs/policies.md)"}


def load(file: Path | None, *, repo: str | None, branch: str | None, spec_path: str | None,
         state: str | None) -> config_mod.Config:
    """The settings from ``file`` (None: defaults only) and the command-line overrides."""
    raw: dict[str, Any] = {}
    lines: dict[str, int] = {}
    if file is not None:
        raw, lines = _read(file)
    return _Builder(raw, lines, file).build(repo=repo, branch=branch, spec_path=spec_path, state=state)


def _read(file: Path) -> tuple[dict[str, Any], dict[str, int]]:
    try:
        data = file.read_bytes()
    except IsADirectoryError as exc:
        raise errors.ConfigError(f"{file}: cannot read the config file: it is a directory") from exc
    except OSError as exc:
        raise errors.ConfigError(f"{file}: cannot read the config file: {exc.strerror}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise errors.ConfigError(f"{file}:{line}: (file): not UTF-8 text (byte {exc.start})") from exc
    loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        node = yaml.compose(text, Loader=loader)
        loaded = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader (libyaml's when available)
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", 0) + 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise errors.ConfigError(f"{file}:{line}: (file): not valid YAML: {problem}") from exc
    except RecursionError:
        raise errors.ConfigError(f"{file}:1: (file): YAML nested too deeply") from None
    if loaded is None:
        return {}, {}
    if not isinstance(loaded, dict):
        raise errors.ConfigError(f"{file}:1: (file): the config must be a mapping of settings, "
                                 f"not {_kind(loaded)}")
    lines: dict[str, int] = {}
    duplicates: list[str] = []
    try:
        _index(node, "", lines, duplicates, set())
    except RecursionError:
        raise errors.ConfigError(f"{file}:1: (file): YAML nested too deeply") from None
    if duplicates:
        raise errors.ConfigError("\n".join(f"{file}:{lines.get(d, 1)}: {d}: given twice" for d in duplicates))
    return loaded, lines


def _index(node: yaml.Node | None, path: str, lines: dict[str, int], duplicates: list[str], seen: set[int]) -> None:
    """Line numbers (1-based) of every field path: ``repo.url``, ``schedules[0].cron``."""
    if node is None or id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = f"{path}.{key}" if path else key
            if key in keys and child not in duplicates:
                duplicates.append(child)
            keys.add(key)
            lines[child] = key_node.start_mark.line + 1
            _index(value_node, child, lines, duplicates, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = f"{path}[{i}]"
            lines[child] = item.start_mark.line + 1
            _index(item, child, lines, duplicates, seen)


class _Builder:
    """Typed reads from the parsed YAML; each problem is recorded with its line, all raised together."""

    def __init__(self, raw: dict[str, Any], lines: dict[str, int], file: Path | None) -> None:
        self.raw = raw
        self.lines = lines
        self.file = file
        self.name = str(file) if file else "config"
        self.base_dir = file.parent if file else Path.cwd()
        self.problems: list[tuple[int, str]] = []  # (line, message), reported in file order

    # ------------------------------------------------------------------ primitives

    def fail(self, where: str, message: str) -> None:
        if where.startswith("--"):  # a command-line flag
            self.problems.append((0, f"{where}: {message}"))
            return
        line = self.line(where)
        self.problems.append((line, f"{self.name}:{line}: {where}: {message}"))

    def line(self, where: str) -> int:
        path = where
        while path:
            if path in self.lines:
                return self.lines[path]
            path = re.sub(r"(\.[^.\[\]]*|\[\d+\])$", "", path)
        return 1

    def section(self, value: Any, where: str, keys: tuple[str, ...]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(where, f"expected a mapping, got {_kind(value)}")
            return {}
        for key in value:
            if not isinstance(key, str):
                self.fail(where, f"keys must be names, got {_kind(key)} {key!r}")
            elif key not in keys:
                self.fail(_join(where, key), _unknown(key, keys))
        return value

    def text(self, sec: dict[str, Any], where: str, key: str, default: str, *, allow_empty: bool = False) -> str:
        if key not in sec or sec[key] is None:
            return default
        value = sec[key]
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.fail(_join(where, key), f"expected text, got {_kind(value)}")
            return default
        text = str(value)
        if not text and not allow_empty:
            self.fail(_join(where, key), "must not be empty")
            return default
        if _CONTROL_RE.search(text):
            self.fail(_join(where, key), "must not contain control characters")
            return default
        return text

    def flag(self, sec: dict[str, Any], where: str, key: str, default: bool) -> bool:
        value = sec.get(key, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(_join(where, key), f"expected true or false, got {durations.show(value)}")
            return default
        return value

    def count(self, sec: dict[str, Any], where: str, key: str, default: int, low: int, high: int) -> int:
        value = sec.get(key, default)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(_join(where, key), f"expected a whole number from {low} to {high}, got {durations.show(value)}")
            return default
        if not low <= value <= high:
            self.fail(_join(where, key), f"must be from {low} to {high}, got {value}")
            return default
        return value

    def duration(self, sec: dict[str, Any], where: str, key: str, default: float, *, low: float = 0.0,
                 maximum: float = durations.MAX_DURATION_S) -> float:
        value = sec.get(key, default)
        if value is None:
            return default
        try:
            seconds = durations.parse_duration(value, where=_join(where, key), maximum=maximum)
        except errors.ConfigError as exc:
            self.fail(_join(where, key), str(exc).split(": ", 1)[1])
            return default
        if seconds < low:
            self.fail(_join(where, key),
                      f"must be at least {durations.format_seconds(low)}, got {durations.show(value)}")
            return default
        return seconds

    def size(self, sec: dict[str, Any], where: str, key: str, default: int, low: int, high: int) -> int:
        value = sec.get(key, default)
        if value is None:
            return default
        try:
            size = durations.parse_size(value, where=_join(where, key))
        except errors.ConfigError as exc:
            self.fail(_join(where, key), str(exc).split(": ", 1)[1])
            return default
        if not low <= size <= high:
            self.fail(_join(where, key),
                      f"must be from {_fmt_size(low)} to {_fmt_size(high)}, got {durations.show(value)}")
            return default
        return size

    def file_path(self, sec: dict[str, Any], where: str, key: str) -> Path | None:
        text = self.text(sec, where, key, "")
        if not text:
            return None
        p = Path(text).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    # ------------------------------------------------------------------ the file

    def build(self, *, repo: str | None, branch: str | None, spec_path: str | None,
              state: str | None) -> config_mod.Config:
        raw = self.section(self.raw, "", TOP_KEYS)
        warnings: list[str] = []

        repo_sec = self.section(raw.get("repo"), "repo", _REPO_KEYS)
        url_text = repo if repo is not None else self.text(repo_sec, "repo", "url", ".")
        url, url_user, url_password = config_mod.split_credentials(url_text)
        if _CONTROL_RE.search(url):
            self.fail("--repo" if repo is not None else "repo.url", "must not contain control characters")
        url = _resolve_local(url, Path.cwd() if repo is not None else self.base_dir)
        git = self._git(repo_sec, url, url_user, url_password, warnings)
        branch_name = branch if branch is not None else self.text(repo_sec, "repo", "branch", "main")
        if not _BRANCH_RE.match(branch_name):
            self.fail("--branch" if branch is not None else "repo.branch",
                      f"{durations.show(branch_name)} is not a branch name")
        spec = self._spec_path(spec_path if spec_path is not None else self.text(repo_sec, "repo", "path", "apps"),
                               "--spec-path" if spec_path is not None else "repo.path")

        state_dir_text = self.text(raw, "", "state_dir", "") if "state_dir" in raw else ""
        state_dir = Path(state_dir_text).expanduser() if state_dir_text else config_mod.default_state_dir()
        if not state_dir.is_absolute():
            state_dir = (self.base_dir / state_dir).resolve()
        if state_dir.exists() and not state_dir.is_dir():
            self.fail("state_dir", f"{state_dir} exists and is not a directory")
        state_text = state if state is not None else (self.text(raw, "", "state", "") if "state" in raw else "")
        state_url = self._state_url(state_text or f"sqlite:///{state_dir / 'state.db'}",
                                    "--state" if state is not None else "state")

        poll = self.section(raw.get("poll"), "poll", ("interval", "jitter"))
        interval = self.duration(poll, "poll", "interval", 30.0, low=0.1)
        jitter = self.duration(poll, "poll", "jitter", 5.0)

        providers = self._providers(raw.get("providers"))
        http = self._http(raw.get("http"), raw.get("webhook"))
        execution = self._execution(raw.get("execution"))
        ha = self._ha(raw.get("ha"), state_url)
        log_sec = self.section(raw.get("log"), "log", ("level",))
        level = self._log_level(log_sec)
        daemon = self.section(raw.get("daemon"), "daemon", ("shutdown_deadline",))
        deadline = self.duration(daemon, "daemon", "shutdown_deadline", 30.0, maximum=3600.0)
        approvals = self.section(raw.get("approvals"), "approvals", ("ttl",))
        ttl = self.duration(approvals, "approvals", "ttl", 24 * 3600.0)
        schedules = self._schedules(raw.get("schedules"))
        prune = self.flag(raw, "", "prune", False)
        allow_force_push = self.flag(repo_sec, "repo", "allow_force_push", False)
        allowed_signers = self.file_path(repo_sec, "repo", "allowed_signers")
        notifications = self._notifications(raw.get("notifications"))
        specs = self._specs(raw.get("specs"))
        verify = self._verify(raw.get("verify"))
        prometheus = self._analysis(raw.get("analysis"))

        if self.problems:
            raise errors.ConfigError("\n".join(text for _line, text in sorted(self.problems, key=lambda p: p[0])))
        return config_mod.Config(
            path=self.file,
            repo_url=url,
            branch=branch_name,
            spec_path=spec,
            state_url=state_url,
            state_dir=state_dir,
            poll_interval_s=interval,
            poll_jitter_s=jitter,
            prune=prune,
            allow_force_push=allow_force_push,
            allowed_signers=allowed_signers,
            git=git,
            providers=providers,
            http=http,
            execution=execution,
            ha=ha,
            log_level=level,
            shutdown_deadline_s=deadline,
            schedules=schedules,
            approval_ttl_s=ttl,
            notifications=notifications,
            specs=specs,
            verify=verify,
            prometheus=prometheus,
            warnings=tuple(warnings),
        )

    # ------------------------------------------------------------------ sections

    def _specs(self, value: Any) -> spec_limits.SpecLimits:
        """The ``specs`` section (rendering and tree limits), checked by the spec layer's own parser."""
        try:
            return spec_limits.from_config(value, where="specs")
        except errors.ConfigError as exc:
            where, _, message = str(exc).partition(": ")
            self.fail(where, message)
            return spec_limits.SpecLimits()

    def _notifications(self, value: Any) -> notify_settings.NotificationSettings:
        """The ``notifications`` section, parsed by its own module; its problems join this file's."""
        try:
            return notify_settings.parse(value, file=self.file, base_dir=self.base_dir, lines=self.lines)
        except errors.ConfigError as exc:
            for text in str(exc).splitlines():
                m = re.match(r"^.*?:(\d+): ", text)
                self.problems.append((int(m.group(1)) if m else 1, text))
            return notify_settings.NotificationSettings()

    def _git(self, sec: dict[str, Any], url: str, url_user: str, url_password: str,
             warnings: list[str]) -> config_mod.GitCredentials:
        username = self.text(sec, "repo", "username", "")
        token_file = self.file_path(sec, "repo", "token_file")
        key_file = self.file_path(sec, "repo", "ssh_key_file")
        pub_file = self.file_path(sec, "repo", "ssh_public_key_file")
        known_hosts = self.file_path(sec, "repo", "ssh_known_hosts")
        if url_password:
            if token_file is not None:
                self.fail("repo.url", "carries a password and repo.token_file is set too; keep only token_file")
            warnings.append(f"{self.name}:{self.line('repo.url')}: repo.url carries a password; it is kept out of "
                            "logs and the mirror, but a file readable only by the service is safer: "
                            "move it to repo.token_file")
        if pub_file is not None and key_file is None:
            self.fail("repo.ssh_public_key_file", "needs repo.ssh_key_file")
        is_ssh = url.startswith("ssh://") or bool(_SCP_RE.match(url))
        if (key_file is not None or known_hosts is not None) and not is_ssh:
            which = "repo.ssh_key_file" if key_file is not None else "repo.ssh_known_hosts"
            self.fail(which, "only applies to ssh:// or user@host:path repository URLs")
        if token_file is not None and is_ssh:
            self.fail("repo.token_file", "only applies to https:// repository URLs (use repo.ssh_key_file)")
        return config_mod.GitCredentials(username=username or url_user, token=url_password, token_file=token_file,
                              ssh_key_file=key_file, ssh_public_key_file=pub_file, ssh_known_hosts=known_hosts)

    def _spec_path(self, text: str, where: str) -> str:
        cleaned = text.strip().strip("/")
        parts = [p for p in cleaned.split("/") if p not in ("", ".")]
        if text.strip().startswith("/") or ".." in parts or "\\" in text or _CONTROL_RE.search(text):
            self.fail(where, f"{durations.show(text)} must be a directory inside the repository, e.g. apps "
                      "(relative, without '..')")
            return "apps"
        return "/".join(parts)

    def _state_url(self, url: str, where: str) -> str:
        if url.startswith("sqlite:///"):
            return _resolve_sqlite(url, self.base_dir)
        if re.match(r"^postgresql(\+psycopg)?://", url):
            return url
        self.fail(where, f"{durations.show(_redact_url(url))} is not a state URL (sqlite:///PATH or postgresql://...)")
        return "sqlite:///:memory:"

    def _providers(self, value: Any) -> Mapping[str, Mapping[str, Any]]:
        from providers import base as provider_base  # noqa: PLC0415 - providers import the core; not at import time

        providers = self.section(value, "providers", tuple(value) if isinstance(value, dict) else ())
        out: dict[str, Any] = {}
        for pname, section in providers.items():
            where = f"providers.{pname}"
            sec = self.section(section, where, ("accounts",))
            accounts = self.section(sec.get("accounts"), f"{where}.accounts",
                                    tuple(sec["accounts"]) if isinstance(sec.get("accounts"), dict) else ())
            checked: dict[str, Any] = {}
            for aname, acc in accounts.items():
                settings = self.section(acc, f"{where}.accounts.{aname}", tuple(acc) if isinstance(acc, dict) else ())
                try:
                    problems = provider_base.check_account(str(pname), str(aname), settings)
                except errors.ProviderMissing as exc:
                    self.fail(where, str(exc))
                    break
                for fld, message in problems:
                    self.fail(f"{where}.accounts.{aname}" + (f".{fld}" if fld else ""), message)
                checked[str(aname)] = copy.deepcopy(settings)  # the provider's own values; compared on reload
            out[str(pname)] = types.MappingProxyType({"accounts": types.MappingProxyType(checked)})
        if "local" not in out:
            out["local"] = types.MappingProxyType({"accounts": types.MappingProxyType({"default": {}})})
        return types.MappingProxyType(out)

    def _http(self, value: Any, webhook_value: Any) -> config_mod.HttpSettings:
        sec = self.section(value, "http", ("listen", "token_file", "max_body", "tokens", "public_read",
                                           "session_ttl"))
        webhook = self.section(webhook_value, "webhook", ("secret_file",))
        host: str | None = None
        port = 0
        listen = self.text(sec, "http", "listen", "")
        if listen:
            parsed = _parse_listen(listen)
            if isinstance(parsed, str):
                self.fail("http.listen", parsed)
            else:
                host, port = parsed
        return config_mod.HttpSettings(
            host=host, port=port, token_file=self.file_path(sec, "http", "token_file"),
            webhook_secret_file=self.file_path(webhook, "webhook", "secret_file"),
            max_body=self.size(sec, "http", "max_body", config_mod.DEFAULT_MAX_BODY, 1024, 64 * 1024 * 1024),
            tokens=self._tokens(sec.get("tokens"), legacy="token_file" in sec and sec["token_file"] is not None),
            public_read=self.flag(sec, "http", "public_read", False),
            session_ttl_s=self.duration(sec, "http", "session_ttl", 8 * 3600.0, low=60.0, maximum=30 * 86400.0),
        )

    def _tokens(self, value: Any, *, legacy: bool) -> tuple[access.Token, ...]:
        """``http.tokens``: each ``{name, file | sha256, scopes: {PATTERN: [SCOPE, ...]}}``."""
        if value is None:
            return ()
        if not isinstance(value, list):
            self.fail("http.tokens", f"expected a list of {{name: ..., file: ..., scopes: {{'*': [read]}}}}, "
                      f"got {_kind(value)}")
            return ()
        out: list[access.Token] = []
        names: set[str] = {access.LEGACY_TOKEN_NAME} if legacy else set()
        digests: set[str] = set()
        for i, item in enumerate(value):
            where = f"http.tokens[{i}]"
            if not isinstance(item, dict):
                self.fail(where, f"expected {{name: ..., file: ..., scopes: ...}}, got {_kind(item)}")
                continue
            sec = self.section(item, where, ("name", "file", "sha256", "scopes"))
            name = self.text(sec, where, "name", "")
            if not name:
                self.fail(f"{where}.name", "required: who holds this token (recorded as the approver)")
            elif not _TOKEN_NAME_RE.match(name):
                self.fail(f"{where}.name", f"{durations.show(name)}: use letters, digits and . _ @ - "
                          "(at most 64)")
                name = ""
            elif name in names:
                why = "the name of http.token_file's token" if name == access.LEGACY_TOKEN_NAME else "given twice"
                self.fail(f"{where}.name", f"{name!r} is {why}; token names must be unique")
                name = ""
            names.add(name)
            file = self.file_path(sec, where, "file")
            sha = self.text(sec, where, "sha256", "").strip().lower()
            if (file is None) == (not sha):
                self.fail(where, "give exactly one of file: (a file holding the token) or sha256: (its hex "
                          "SHA-256, e.g. from `printf %s \"$TOKEN\" | sha256sum`)")
            elif sha and not re.fullmatch(r"[0-9a-f]{64}", sha):
                self.fail(f"{where}.sha256", "expected 64 hex digits (the SHA-256 of the token)")
                sha = ""
            elif sha and sha in digests:
                self.fail(f"{where}.sha256", "the same token is given twice")
            digests.add(sha)
            grants = self._grants(sec.get("scopes"), f"{where}.scopes")
            if name and grants and (file is not None or sha):
                out.append(access.Token(name=name, grants=grants, file=file, sha256=sha))
        return tuple(out)

    def _grants(self, value: Any, where: str) -> tuple[access.Grant, ...]:
        allowed = [s.value for s in access.Scope]
        if not isinstance(value, dict) or not value:
            self.fail(where, "required: a mapping of application patterns to scopes, e.g. "
                      "{'*': [read], 'checkout*': [approve, operate]}")
            return ()
        grants: list[access.Grant] = []
        for pattern, scopes in value.items():
            at = f"{where}.{pattern}"
            if not isinstance(pattern, str) or not _PATTERN_RE.match(pattern):
                self.fail(where, f"{durations.show(pattern)} is not an application pattern (lowercase letters, "
                          "digits and the wildcards * ? [ ])")
                continue
            items = scopes if isinstance(scopes, list) else [scopes]
            chosen: set[access.Scope] = set()
            for s in items:
                if not isinstance(s, str) or s not in allowed:
                    self.fail(at, f"{durations.show(s)} is not a scope (allowed: {', '.join(allowed)})")
                    continue
                chosen.add(access.Scope(s))
            if not items:
                self.fail(at, f"give at least one scope ({', '.join(allowed)})")
            if chosen:
                grants.append(access.Grant(pattern, frozenset(chosen)))
        return tuple(grants)

    def _verify(self, value: Any) -> dict[str, config_mod.VerifyEndpoint]:
        """``verify: {endpoints: {NAME: {url, timeout, token_file}}}``: the hooks specs may name."""
        sec = self.section(value, "verify", ("endpoints",))
        endpoints = sec.get("endpoints")
        out: dict[str, config_mod.VerifyEndpoint] = {}
        if endpoints is None:
            return out
        if not isinstance(endpoints, dict):
            self.fail("verify.endpoints", f"expected a mapping of NAME: {{url: ...}}, got {_kind(endpoints)}")
            return out
        for name, item in endpoints.items():
            where = f"verify.endpoints.{name}"
            if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_-]*", name) or len(name) > 64:
                self.fail(where, "endpoint names are lowercase letters, digits, - and _ (as specs spell them)")
                continue
            ep = self.section(item, where, ("url", "timeout", "token_file"))
            url = self.text(ep, where, "url", "")
            scheme = urllib.parse.urlsplit(url).scheme if url else ""
            if scheme not in ("http", "https"):
                self.fail(f"{where}.url", f"required: an http:// or https:// URL, got {durations.show(url)}")
                continue
            out[name] = config_mod.VerifyEndpoint(
                name=name, url=url, timeout_s=self.duration(ep, where, "timeout", 30.0, low=0.001, maximum=3600.0),
                token_file=self.file_path(ep, where, "token_file"))
        return out

    def _analysis(self, value: Any) -> config_mod.PrometheusSettings | None:
        """``analysis: {prometheus: {url, timeout, token_file, username, password_file}}`` (canary metrics)."""
        sec = self.section(value, "analysis", ("prometheus",))
        if sec.get("prometheus") is None:
            return None
        where = "analysis.prometheus"
        prom = self.section(sec["prometheus"], where, ("url", "timeout", "token_file", "username", "password_file"))
        url = self.text(prom, where, "url", "")
        scheme = urllib.parse.urlsplit(url).scheme if url else ""
        if scheme not in ("http", "https"):
            self.fail(f"{where}.url", f"required: an http:// or https:// URL, got {durations.show(url)}")
            return None
        username = self.text(prom, where, "username", "", allow_empty=True)
        password_file = self.file_path(prom, where, "password_file")
        if bool(username) != (password_file is not None):
            self.fail(where, "username and password_file go together (HTTP basic auth)")
        return config_mod.PrometheusSettings(
            url=url.rstrip("/"), timeout_s=self.duration(prom, where, "timeout", 10.0, low=0.001, maximum=600.0),
            token_file=self.file_path(prom, where, "token_file"), username=username, password_file=password_file)

    def _execution(self, value: Any) -> config_mod.ExecutionSettings:
        keys = ("max_attempts", "retry_backoff", "lease_ttl", "poll_health", "max_parallel", "step_retries",
                "step_backoff")
        sec = self.section(value, "execution", keys)
        d = config_mod.ExecutionSettings()
        return config_mod.ExecutionSettings(
            max_attempts=self.count(sec, "execution", "max_attempts", d.max_attempts, 1, 1000),
            retry_backoff_s=self.duration(sec, "execution", "retry_backoff", d.retry_backoff_s),
            lease_ttl_s=self.duration(sec, "execution", "lease_ttl", d.lease_ttl_s, low=1.0),
            poll_health_s=self.duration(sec, "execution", "poll_health", d.poll_health_s, low=0.001, maximum=3600.0),
            max_parallel=self.count(sec, "execution", "max_parallel", d.max_parallel, 1, 256),
            step_retries=self.count(sec, "execution", "step_retries", d.step_retries, 1, 100),
            step_backoff_s=self.duration(sec, "execution", "step_backoff", d.step_backoff_s, maximum=3600.0),
        )

    def _ha(self, value: Any, state_url: str) -> config_mod.HaSettings:
        sec = self.section(value, "ha", ("enabled", "heartbeat", "takeover"))
        d = config_mod.HaSettings()
        enabled_raw = sec.get("enabled", "auto")
        if enabled_raw is None or enabled_raw == "auto":
            enabled = state_url.startswith("postgresql")
        elif isinstance(enabled_raw, bool):
            enabled = enabled_raw
        else:
            self.fail("ha.enabled", f"expected auto, true or false, got {durations.show(enabled_raw)}")
            enabled = False
        heartbeat = self.duration(sec, "ha", "heartbeat", d.heartbeat_s, low=0.05, maximum=600.0)
        takeover = self.duration(sec, "ha", "takeover", d.takeover_s, low=0.2, maximum=3600.0)
        if "takeover" in sec and takeover < 3 * heartbeat:
            self.fail("ha.takeover", f"must be at least three heartbeats ({durations.format_seconds(3 * heartbeat)}) "
                      f"so that one late heartbeat does not move a live replica's work, got "
                      f"{durations.show(sec['takeover'])}")
        elif takeover < 3 * heartbeat:
            self.fail("ha.heartbeat", f"must be at most a third of ha.takeover "
                      f"({durations.format_seconds(takeover)}), got {durations.show(sec.get('heartbeat'))}")
        return config_mod.HaSettings(enabled=enabled, heartbeat_s=heartbeat, takeover_s=takeover)

    def _log_level(self, sec: dict[str, Any]) -> int:
        value = sec.get("level", "info")
        if isinstance(value, str) and value.strip().lower() in _LOG_LEVELS:
            return _LOG_LEVELS[value.strip().lower()]
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 50:
            return value
        self.fail("log.level", f"{durations.show(value)} is not a log level (debug, info, warning, error)")
        return logging.INFO

    def _schedules(self, value: Any) -> tuple[config_mod.Schedule, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.fail("schedules", f"expected a list of {{cron: '0 3 * * *', reason: ...}}, got {_kind(value)}")
            return ()
        out: list[config_mod.Schedule] = []
        for i, item in enumerate(value):
            where = f"schedules[{i}]"
            if not isinstance(item, dict):
                self.fail(where, f"expected {{cron: '0 3 * * *', reason: ...}}, got {_kind(item)}")
                continue
            sec = self.section(item, where, ("cron", "reason", "timezone"))
            cron = self.text(sec, where, "cron", "")
            if not cron:
                self.fail(f"{where}.cron", "required: five crontab fields, e.g. '0 3 * * *'")
                continue
            schedule = config_mod.Schedule(cron=cron, reason=self.text(sec, where, "reason", "schedule"),
                                timezone=self.text(sec, where, "timezone", "UTC"))
            problem = _check_cron(schedule)
            if problem:
                self.fail(f"{where}.{problem[0]}", problem[1])
                continue
            out.append(schedule)
        return tuple(out)


# ---------------------------------------------------------------------------- helpers


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _check_cron(schedule: config_mod.Schedule) -> tuple[str, str] | None:
    """APScheduler's own parser decides (the daemon builds its triggers from the same fields)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # noqa: PLC0415 - only with schedules

    from apscheduler.triggers.cron import CronTrigger  # noqa: PLC0415 - the CLI does not need the scheduler

    try:
        ZoneInfo(schedule.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return "timezone", f"{durations.show(schedule.timezone)} is not a time zone (e.g. UTC, Europe/Berlin)"
    if len(schedule.cron.split()) != 5:
        return "cron", f"{durations.show(schedule.cron)}: expected five crontab fields, e.g. '0 3 * * *'"
    try:
        CronTrigger.from_crontab(schedule.cron, timezone=schedule.timezone)
    except (ValueError, LookupError) as exc:
        return "cron", f"{durations.show(schedule.cron)}: {exc}"
    return None


def _parse_listen(text: str) -> tuple[str, int] | str:
    """``host:port`` or ``[v6]:port``; the port a number from 0 (any free port) to 65535."""
    m = re.match(r"^\[([0-9a-fA-F:.]+)\]:(\w*)$", text) or re.match(r"^([^:\[\]\s]+):(\w*)$", text)
    if not m:
        return f"{durations.show(text)}: expected host:port, e.g. 127.0.0.1:8787 (or [::1]:8787)"
    host, port = m.group(1), m.group(2)
    if not port.isdigit():
        return f"{durations.show(text)}: the port must be a number, e.g. 127.0.0.1:8787"
    if int(port) > 65535:
        return f"{durations.show(text)}: port {port} is out of range (0-65535)"
    return host, int(port)


def _resolve_local(url: str, base: Path) -> str:
    """Relative local repo paths are relative to the config file; URLs stay as they are."""
    if "://" in url or _SCP_RE.match(url):
        return url
    p = Path(url).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def _resolve_sqlite(url: str, base: Path) -> str:
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite:///:memory:":
        return prefix + str((base / url[len(prefix):]).resolve())
    return url


def _redact_url(url: str) -> str:
    clean, _user, password = config_mod.split_credentials(url)
    return clean if not password else clean.replace("@", ":[redacted]@", 1)


def _unknown(key: str, allowed: tuple[str, ...]) -> str:
    if key in _HINTS:
        return f"unknown field; {_HINTS[key]}"
    near = difflib.get_close_matches(key, allowed, n=1)
    hint = f"did you mean {near[0]}? " if near else ""
    return f"unknown field; {hint}allowed: {', '.join(sorted(allowed))}"


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", bool: "true/false", int: "a number",
            float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)


def _fmt_size(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size} bytes"

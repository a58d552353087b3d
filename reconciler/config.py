"""The daemon's configuration: one YAML file, every field checked with a message naming it.

With no file at all everything runs against the local provider, with state in
the user's state directory, so ``reconciler plan`` works on a fresh machine.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reconciler import errors
from specs import limits as spec_limits

ENV_CONFIG = "RECONCILER_CONFIG"
ENV_STATE_DIR = "RECONCILER_STATE_DIR"

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}

_TOP_KEYS = {
    "repo", "poll", "state", "state_dir", "prune", "providers", "http", "log",
    "execution", "webhook", "schedules", "policies", "approvals", "daemon", "specs",
}
_REPO_KEYS = {"url", "branch", "path", "allow_force_push", "allowed_signers"}


@dataclass(frozen=True, slots=True)
class ExecutionSettings:
    """How executions behave; every field is a duration in seconds or a count."""

    max_attempts: int = 3  # a failing change is retried this often, then the cluster is Stalled
    retry_backoff_s: float = 30.0  # first delay between attempts, doubled each time
    lease_ttl_s: float = 120.0  # a lease not renewed for this long may be taken over
    poll_health_s: float = 2.0  # how often a health wait re-reads the provider
    max_parallel: int = 8  # executions running at once (threads around blocking SDKs)
    step_retries: int = 5  # attempts of one provider call on throttling or unavailability
    step_backoff_s: float = 1.0  # first delay between those attempts, doubled each time (max 30s)


@dataclass(frozen=True, slots=True)
class Config:
    path: Path | None
    repo_url: str
    branch: str
    spec_path: str
    state_url: str
    state_dir: Path
    poll_interval_s: float = 30.0
    poll_jitter_s: float = 5.0
    prune: bool = False
    allow_force_push: bool = False
    allowed_signers: Path | None = None  # ssh-keygen allowed_signers file for SSH-signed commits
    providers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    http_listen: str | None = None
    http_token_file: Path | None = None
    execution: ExecutionSettings = field(default_factory=ExecutionSettings)
    specs: spec_limits.SpecLimits = field(default_factory=spec_limits.SpecLimits)  # limits on rendering and trees
    raw: Mapping[str, Any] = field(default_factory=dict)

    def accounts(self, provider: str) -> Mapping[str, Mapping[str, Any]]:
        section = self.providers.get(provider) or {}
        accounts = section.get("accounts") or {}
        return accounts if isinstance(accounts, Mapping) else {}


def default_state_dir() -> Path:
    env = os.environ.get(ENV_STATE_DIR) or os.environ.get("STATE_DIRECTORY")
    if env:
        return Path(env.split(":")[0])
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "reconciler"


def parse_duration(value: Any, *, where: str) -> float:
    """``30s``, ``10m``, ``1h``, ``500ms`` or a number of seconds."""
    if isinstance(value, bool):
        raise errors.ConfigError(f"{where}: expected a duration like 30s, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise errors.ConfigError(f"{where}: a duration cannot be negative")
        return float(value)
    m = _DURATION_RE.match(str(value))
    if not m:
        raise errors.ConfigError(
            f"{where}: {value!r} is not a duration (use e.g. 500ms, 30s, 10m, 1h)"
        )
    return float(m.group(1)) * _UNITS[m.group(2)]


def load_config(
    path: str | Path | None = None,
    *,
    repo: str | None = None,
    branch: str | None = None,
    spec_path: str | None = None,
    state: str | None = None,
) -> Config:
    """Read the config file (``--config``, ``$RECONCILER_CONFIG`` or none); CLI flags override."""
    chosen = path or os.environ.get(ENV_CONFIG)
    raw: dict[str, Any] = {}
    file: Path | None = None
    if chosen:
        file = Path(chosen)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise errors.ConfigError(f"{file}: cannot read the config file: {exc.strerror}") from exc
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            line = getattr(getattr(exc, "problem_mark", None), "line", -1) + 1
            raise errors.ConfigError(f"{file}:{line}: not valid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise errors.ConfigError(f"{file}: the config must be a mapping of settings")
        raw = loaded
    return _build(raw, file, repo=repo, branch=branch, spec_path=spec_path, state=state)


def _build(
    raw: dict[str, Any],
    file: Path | None,
    *,
    repo: str | None,
    branch: str | None,
    spec_path: str | None,
    state: str | None,
) -> Config:
    name = str(file) if file else "config"
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise errors.ConfigError(
            f"{name}: unknown setting(s) {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join(sorted(_TOP_KEYS))}"
        )
    base_dir = file.parent if file else Path.cwd()

    repo_raw = _mapping(raw.get("repo"), f"{name}: repo")
    unknown = set(repo_raw) - _REPO_KEYS
    if unknown:
        raise errors.ConfigError(
            f"{name}: repo.{sorted(unknown)[0]}: unknown field; allowed: {', '.join(sorted(_REPO_KEYS))}"
        )
    url = repo or repo_raw.get("url") or "."
    url = _resolve_local(str(url), base_dir if not repo else Path.cwd())

    state_dir = Path(raw["state_dir"]) if raw.get("state_dir") else default_state_dir()
    if not state_dir.is_absolute():
        state_dir = (base_dir / state_dir).resolve()
    state_url = state or raw.get("state") or f"sqlite:///{state_dir / 'state.db'}"
    state_url = _resolve_sqlite(str(state_url), base_dir)

    poll = _mapping(raw.get("poll"), f"{name}: poll")
    http = _mapping(raw.get("http"), f"{name}: http")
    providers = _mapping(raw.get("providers"), f"{name}: providers")
    for pname, section in providers.items():
        sec = _mapping(section, f"{name}: providers.{pname}")
        accounts = _mapping(sec.get("accounts"), f"{name}: providers.{pname}.accounts")
        for aname, acc in accounts.items():
            _mapping(acc, f"{name}: providers.{pname}.accounts.{aname}")
    if "local" not in providers:
        providers = {**providers, "local": {"accounts": {"default": {}}}}

    ex_raw = _mapping(raw.get("execution"), f"{name}: execution")
    ex = ExecutionSettings(
        max_attempts=int(ex_raw.get("max_attempts", 3)),
        retry_backoff_s=parse_duration(
            ex_raw.get("retry_backoff", 30), where=f"{name}: execution.retry_backoff"
        ),
        lease_ttl_s=parse_duration(ex_raw.get("lease_ttl", 120), where=f"{name}: execution.lease_ttl"),
        poll_health_s=parse_duration(
            ex_raw.get("poll_health", 2), where=f"{name}: execution.poll_health"
        ),
        max_parallel=int(ex_raw.get("max_parallel", 8)),
        step_retries=int(ex_raw.get("step_retries", 5)),
        step_backoff_s=parse_duration(
            ex_raw.get("step_backoff", 1), where=f"{name}: execution.step_backoff"
        ),
    )
    unknown = set(ex_raw) - {"max_attempts", "retry_backoff", "lease_ttl", "poll_health", "max_parallel",
                             "step_retries", "step_backoff"}
    if unknown:
        raise errors.ConfigError(f"{name}: execution.{sorted(unknown)[0]}: unknown field")
    token_file = http.get("token_file")
    prune = raw.get("prune", False)
    if not isinstance(prune, bool):
        raise errors.ConfigError(f"{name}: prune: expected true or false, got {prune!r}")
    return Config(
        path=file,
        repo_url=url,
        branch=branch or str(repo_raw.get("branch") or "main"),
        spec_path=(spec_path or str(repo_raw.get("path") or "apps")).strip("/"),
        state_url=state_url,
        state_dir=state_dir,
        poll_interval_s=parse_duration(poll.get("interval", "30s"), where=f"{name}: poll.interval"),
        poll_jitter_s=parse_duration(poll.get("jitter", "5s"), where=f"{name}: poll.jitter"),
        prune=prune,
        allow_force_push=bool(repo_raw.get("allow_force_push", False)),
        allowed_signers=(base_dir / str(repo_raw["allowed_signers"])) if repo_raw.get("allowed_signers") else None,
        providers=providers,
        http_listen=str(http["listen"]) if http.get("listen") else None,
        http_token_file=(base_dir / str(token_file)) if token_file else None,
        execution=ex,
        specs=spec_limits.from_config(raw.get("specs"), where=f"{name}: specs"),
        raw=raw,
    )


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _resolve_local(url: str, base: Path) -> str:
    """Relative local repo paths are relative to the config file; URLs stay as they are."""
    if "://" in url or re.match(r"^[\w.-]+@[\w.-]+:", url):
        return url
    p = Path(url).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def _resolve_sqlite(url: str, base: Path) -> str:
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite:///:memory:":
        return prefix + str((base / url[len(prefix):]).resolve())
    return url

"""The daemon's configuration: one YAML file, parsed once into typed, frozen settings.

Every field is checked at load, and every problem is reported as
``file:line: field: message`` (all of them at once), so a bad value never
reaches a running part: the CLI exits 1 naming the line, and a SIGHUP with a
bad file keeps the previous settings whole. Provider account settings are
checked by the provider's own ``check_settings``. Nothing outside this module
and ``config_file`` (which reads the YAML and checks it) sees the raw file.

With no file at all everything runs against the local provider, with state in
the user's state directory, so ``reconciler plan`` works on a fresh machine.

Credentials never stay in ``repo.url``: a password or token found there is
moved into ``GitCredentials`` and the URL kept without it, which is what is
printed, stored and written into the mirror's Git config.
"""

from __future__ import annotations

import logging
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.core import access
from reconciler.notifications import settings as notify_settings
from specs import limits as spec_limits

ENV_CONFIG = "RECONCILER_CONFIG"
ENV_STATE_DIR = "RECONCILER_STATE_DIR"

DEFAULT_MAX_BODY = 1024 * 1024
"""HTTP request bodies larger than this are refused before they are read (``http.max_body``)."""



# ---------------------------------------------------------------------------- settings


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
class VerifyEndpoint:
    """A verification hook (``verify.endpoints.NAME``): a deployment's description is POSTed to ``url`` and
    the answer is the verdict: 2xx passes; 4xx, 5xx, no answer within ``timeout_s`` or a refused connection
    fails. Specs name endpoints; only the config holds URLs, so a spec never makes the daemon call an
    address of its choosing."""

    name: str
    url: str
    timeout_s: float = 30.0
    token_file: Path | None = None  # sent as ``Authorization: Bearer``; read at each call (rotation)


@dataclass(frozen=True, slots=True)
class PrometheusSettings:
    """``analysis.prometheus``: where canary metrics are read. Only the config names it, as with
    verification endpoints, so a spec never makes the daemon query an address of its choosing."""

    url: str
    timeout_s: float = 10.0  # per query; no answer in time counts as a failed metric
    token_file: Path | None = None  # sent as ``Authorization: Bearer``; read at each query (rotation)
    username: str = ""  # HTTP basic auth, with password_file
    password_file: Path | None = None


@dataclass(frozen=True, slots=True)
class HaSettings:
    """Several replicas on one PostgreSQL database (``ha:``; docs/ha.md)."""

    enabled: bool = False  # ha.enabled: auto (the default) turns it on for a postgresql:// state URL
    heartbeat_s: float = 5.0  # ha.heartbeat: how often a replica says it lives and renews its claims
    takeover_s: float = 30.0  # ha.takeover: a replica silent this long is dead; its claims move


@dataclass(frozen=True, slots=True)
class GitCredentials:
    """Where fetches find credentials. Files are read at each fetch, so rotating one needs no restart.

    ``token`` is set only when ``repo.url`` carried a password (discouraged: use ``token_file``);
    it is never part of ``repr`` and never of the URL given to Git.
    """

    username: str = ""  # repo.username, else the URL's user name, else x-access-token (https)
    token: str = field(default="", repr=False)
    token_file: Path | None = None  # https: the password/token, one line
    ssh_key_file: Path | None = None  # ssh: a private key file (without one: the ssh-agent)
    ssh_public_key_file: Path | None = None  # default: ssh_key_file + .pub when it exists
    ssh_known_hosts: Path | None = None  # ssh: the only host keys accepted (default: ~/.ssh/known_hosts)


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """The HTTP endpoint: off unless ``listen`` is set."""

    host: str | None = None  # http.listen host (None: no endpoint)
    port: int = 0  # http.listen port (0: any free port)
    token_file: Path | None = None  # an admin token (named token-file), read at every request
    webhook_secret_file: Path | None = None  # webhook.secret_file; without it /webhook is 404
    max_body: int = DEFAULT_MAX_BODY  # bytes; larger request bodies get 413 before they are read
    tokens: tuple[access.Token, ...] = ()  # http.tokens: named tokens with scopes per application pattern
    public_read: bool = False  # true: status, plans and history are readable without a token
    session_ttl_s: float = 8 * 3600.0  # http.session_ttl: a console sign-in lasts this long

    def all_tokens(self) -> tuple[access.Token, ...]:
        """``http.tokens`` and, when set, ``http.token_file`` as the admin token ``token-file``."""
        return access.legacy_token(self.token_file) + self.tokens

    @property
    def listen(self) -> str | None:
        if self.host is None:
            return None
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Schedule:
    """An extra pass on a crontab schedule (``schedules[]``)."""

    cron: str  # five crontab fields
    reason: str = "schedule"  # shown in logs and STATUS=
    timezone: str = "UTC"


@dataclass(frozen=True, slots=True)
class Config:
    path: Path | None
    repo_url: str  # without credentials: safe to print, store, and write into the mirror's Git config
    branch: str
    spec_path: str
    state_url: str
    state_dir: Path
    poll_interval_s: float = 30.0
    poll_jitter_s: float = 5.0
    prune: bool = False
    allow_force_push: bool = False
    allowed_signers: Path | None = None  # ssh-keygen allowed_signers file for SSH-signed commits
    git: GitCredentials = field(default_factory=GitCredentials)
    providers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    http: HttpSettings = field(default_factory=HttpSettings)
    execution: ExecutionSettings = field(default_factory=ExecutionSettings)
    ha: HaSettings = field(default_factory=HaSettings)
    log_level: int = logging.INFO  # log.level; applied at start and on SIGHUP
    shutdown_deadline_s: float = 30.0  # daemon.shutdown_deadline: running steps get this long on SIGTERM
    schedules: tuple[Schedule, ...] = ()
    approval_ttl_s: float = 24 * 3600.0  # approvals.ttl: an approval is valid this long
    notifications: notify_settings.NotificationSettings = field(default_factory=notify_settings.NotificationSettings)
    specs: spec_limits.SpecLimits = field(default_factory=spec_limits.SpecLimits)  # limits on rendering and trees
    verify: Mapping[str, VerifyEndpoint] = field(default_factory=dict)  # verification endpoints by name
    prometheus: PrometheusSettings | None = None  # analysis.prometheus: canary metrics; None: no canary can pass
    warnings: tuple[str, ...] = ()  # accepted but discouraged settings, logged by the daemon

    @property
    def http_listen(self) -> str | None:
        return self.http.listen

    @property
    def http_token_file(self) -> Path | None:
        return self.http.token_file

    def accounts(self, provider: str) -> Mapping[str, Mapping[str, Any]]:
        section = self.providers.get(provider) or {}
        accounts = section.get("accounts") or {}
        return accounts if isinstance(accounts, Mapping) else {}


# ---------------------------------------------------------------------------- parsers


def default_state_dir() -> Path:
    env = os.environ.get(ENV_STATE_DIR) or os.environ.get("STATE_DIRECTORY")
    if env:
        return Path(env.split(":")[0])
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "reconciler"


def split_credentials(url: str) -> tuple[str, str, str]:
    """``(url without password, user name, password)``; only ``scheme://user:pass@host`` URLs carry one."""
    if "://" not in url:
        return url, "", ""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, "", ""
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    user = urllib.parse.unquote(user)
    password = urllib.parse.unquote(password)
    netloc = f"{urllib.parse.quote(user, safe='')}@{hostport}" if user else hostport
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), user, password


# ---------------------------------------------------------------------------- loading


def load_config(
    path: str | Path | None = None,
    *,
    repo: str | None = None,
    branch: str | None = None,
    spec_path: str | None = None,
    state: str | None = None,
) -> Config:
    """Read the config file (``--config``, ``$RECONCILER_CONFIG`` or none); CLI flags override.

    Raises one ``ConfigError`` listing every problem as ``file:line: field: message``.
    """
    from reconciler.config import file as config_file  # noqa: PLC0415 - it builds this module's settings

    chosen = path or os.environ.get(ENV_CONFIG)
    return config_file.load(Path(chosen) if chosen else None, repo=repo, branch=branch, spec_path=spec_path,
                            state=state)

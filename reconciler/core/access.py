"""Who may do what through the HTTP API and the console: tokens, scopes and application patterns.

A token has a name and grants; a grant gives scopes for the applications whose
names match a glob pattern (``checkout``, ``pay*``, ``*``). Scopes:

- ``read``: status, plans, history and executions of those applications;
- ``approve``: approve or reject their changes (and read);
- ``operate``: pause, resume, roll back, trigger a pass (and read);
- ``promote``: commit a new version of them to Git (``POST /api/v1/promote``, for CI) (and read);
- ``admin``: everything, and with the pattern ``*`` the fleet-wide freeze.

``approve`` and ``operate`` are separate on purpose: the on-call engineer who
can pause a cluster is not thereby the second pair of eyes on a deploy.

Values in, values out: the caller reads token files (``read_secret``) and
supplies the clock, so these decisions are tested without a server.
"""

from __future__ import annotations

import enum
import fnmatch
import hashlib
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

LEGACY_TOKEN_NAME = "token-file"  # noqa: S105 - a name, not a secret
"""The name recorded for the single ``http.token_file`` token (an admin of everything)."""

ANONYMOUS = "anonymous"
"""The reader's name with ``http.public_read: true`` and no token (it can only read)."""


class Scope(enum.Enum):
    READ = "read"
    APPROVE = "approve"
    OPERATE = "operate"
    ADMIN = "admin"
    PROMOTE = "promote"


_IMPLIES: dict[Scope, frozenset[Scope]] = {
    Scope.READ: frozenset({Scope.READ}),
    Scope.APPROVE: frozenset({Scope.APPROVE, Scope.READ}),
    Scope.OPERATE: frozenset({Scope.OPERATE, Scope.READ}),
    Scope.PROMOTE: frozenset({Scope.PROMOTE, Scope.READ}),
    Scope.ADMIN: frozenset(Scope),
}


@dataclass(frozen=True, slots=True)
class Grant:
    """Scopes for the applications whose names match ``pattern`` (a shell glob)."""

    pattern: str
    scopes: frozenset[Scope]

    def allows(self, scope: Scope, application: str) -> bool:
        return self.covers(scope) and fnmatch.fnmatchcase(application, self.pattern)

    def covers(self, scope: Scope) -> bool:
        return any(scope in _IMPLIES[s] for s in self.scopes)


@dataclass(frozen=True, slots=True)
class Token:
    """One entry of ``http.tokens``: the secret is in ``file`` (read at every request) or given as its SHA-256."""

    name: str
    grants: tuple[Grant, ...]
    file: Path | None = None
    sha256: str = ""  # lowercase hex digest of the token


@dataclass(frozen=True, slots=True)
class Identity:
    """Whoever made a request: a token's name and grants (``digest`` lets a session re-check its token)."""

    name: str
    grants: tuple[Grant, ...]
    digest: str = ""
    anonymous: bool = False

    def can(self, scope: Scope, application: str) -> bool:
        return any(g.allows(scope, application) for g in self.grants)

    def can_everywhere(self, scope: Scope) -> bool:
        """A fleet-wide action (freeze) needs the scope on the pattern ``*``."""
        return any(g.pattern == "*" and g.covers(scope) for g in self.grants)

    def can_somewhere(self, scope: Scope) -> bool:
        return any(g.covers(scope) for g in self.grants)

    def scopes_for(self, application: str) -> list[str]:
        """The scopes this identity holds for ``application``, for display."""
        return [s.value for s in Scope if self.can(s, application)]


def public_reader() -> Identity:
    return Identity(ANONYMOUS, (Grant("*", frozenset({Scope.READ})),), anonymous=True)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", errors="surrogateescape")).hexdigest()


def legacy_token(token_file: Path | None) -> tuple[Token, ...]:
    """``http.token_file`` keeps working: an admin of every application, named ``token-file``."""
    if token_file is None:
        return ()
    return (Token(LEGACY_TOKEN_NAME, (Grant("*", frozenset({Scope.ADMIN})),), file=token_file),)


def identify(presented_digest: str, tokens: Iterable[Token],
             read_secret: Callable[[Path], str | None]) -> Identity | None:
    """The token whose secret hashes to ``presented_digest``, or None. Every token is compared (in constant
    time), so the answer's timing does not tell which names exist."""
    found: Identity | None = None
    for token in tokens:
        expected = token.sha256
        if token.file is not None:
            secret = read_secret(token.file)
            expected = digest(secret) if secret else ""
        if expected and hmac.compare_digest(expected.encode(), presented_digest.encode()) and found is None:
            found = Identity(token.name, token.grants, digest=presented_digest)
    return found


def application_of(target: str) -> str:
    """The application of a cluster name (``app-stack-detail``; application names have no hyphen)."""
    return target.split("-", 1)[0]


def application_of_key(key: str) -> str:
    """The application of a change key ``provider/account/region/cluster``."""
    return application_of(key.rsplit("/", 1)[-1])

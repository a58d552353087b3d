"""Console sign-in sessions and their CSRF tokens, kept in the daemon's memory.

A session remembers the name and the SHA-256 of the token it was opened with,
never the token; every request looks the digest up among the tokens configured
now, so rotating or removing a token ends its sessions at once. Sessions end
after ``http.session_ttl`` and with the process (signing in again is cheap).

Every form carries the session's CSRF token; the sign-in form, before any
session exists, carries one bound to a short-lived cookie (double submit).
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from reconciler.core import access

COOKIE = "reconciler_session"
SIGNIN_COOKIE = "reconciler_signin"
MAX_SESSIONS = 10_000
"""Beyond this many open sessions the oldest is dropped (each needs a valid token, but memory is finite)."""


@dataclass(slots=True)
class Session:
    sid: str
    name: str
    digest: str  # SHA-256 of the token used to sign in
    csrf: str
    expires_at: float
    flash: list[str] = field(default_factory=list)  # messages for the next page shown


class Sessions:
    def __init__(self, *, clock: Callable[[], float], ttl_s: float) -> None:
        self.clock = clock
        self.ttl_s = ttl_s
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def open(self, identity: access.Identity) -> Session:
        session = Session(sid=secrets.token_urlsafe(32), name=identity.name, digest=identity.digest,
                          csrf=secrets.token_urlsafe(32), expires_at=self.clock() + self.ttl_s)
        with self._lock:
            self._sessions[session.sid] = session
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return session

    def get(self, sid: str | None) -> tuple[Session | None, bool]:
        """(the session, whether it existed but expired)."""
        if not sid:
            return None, False
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                return None, False
            if session.expires_at <= self.clock():
                del self._sessions[sid]
                return None, True
            return session, False

    def close(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)

    def __len__(self) -> int:
        return len(self._sessions)


def same(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two CSRF tokens; a missing one never matches."""
    if not a or not b:
        return False
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))


def new_token() -> str:
    return secrets.token_urlsafe(32)

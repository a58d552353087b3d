"""What every console page and API route shares: the request context, refusals, JSON bodies and answers."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from werkzeug.exceptions import BadRequest
from werkzeug.wrappers import Request, Response

from reconciler.config import settings as config_mod
from reconciler.console import backend as backend_mod
from reconciler.console import sessions as sessions_mod
from reconciler.core import access


class Refusal(Exception):
    """A request we answer with a clear refusal: JSON for the API, a page for the console."""

    def __init__(self, status: int, message: str, *, title: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.title = title or {400: "Bad request", 401: "Sign in needed", 403: "Not allowed", 404: "Not found",
                               409: "Refused", 413: "Too large"}.get(status, "Error")


@dataclass
class Ctx:
    """One request: who makes it (``identity`` None: nobody signed in) and what serves it."""

    request: Request
    backend: backend_mod.Backend
    settings: config_mod.HttpSettings
    identity: access.Identity | None
    session: sessions_mod.Session | None
    sessions: sessions_mod.Sessions
    clock: Callable[[], float]
    read_secret: Callable[[Path], str | None]  # a token file's content (None: unreadable)
    bad_token: bool = False  # a bearer token was sent and matched none
    expired: bool = False  # a session cookie was sent and its session had ended

    def require(self, scope: access.Scope, application: str | None = None, *, everywhere: bool = False,
                what: str = "") -> access.Identity:
        """The caller, if it holds ``scope`` (for ``application``, on ``*``, or for any application)."""
        who = self.identity
        if (who is None or who.anonymous) and not self.settings.all_tokens():
            if scope is access.Scope.READ:
                raise Refusal(403, "reads need a token and none is configured: set http.tokens or "
                              "http.token_file (or http.public_read: true)")
            raise Refusal(403, "state-changing routes are disabled: set http.tokens or http.token_file")
        if who is None:
            if self.bad_token:
                raise Refusal(401, "the bearer token matches no configured token (http.tokens, http.token_file)")
            if self.expired:
                raise Refusal(401, "your session has ended; sign in again")
            raise Refusal(401, "sign in with a token (Authorization: Bearer TOKEN); reads are open only with "
                          "http.public_read: true")
        if everywhere:
            ok = who.can_everywhere(scope)
            where = "every application (the pattern '*')"
        elif application is not None:
            ok = who.can(scope, application)
            where = f"application {application!r}"
        else:
            ok = who.can_somewhere(scope)
            where = "any application"
        if not ok:
            if who.anonymous:
                raise Refusal(401, f"{what or 'this'} needs a token with the {scope.value} scope; sign in first")
            raise Refusal(403, f"token {who.name!r} has no {scope.value} scope for {where}"
                          + (f": {what} refused" if what else ""))
        return who


def json_body(request: Request, *, strict: bool = True) -> dict[str, Any]:
    """A JSON object body, or ``{}``. For the API anything else is the client's mistake (400); a webhook
    payload sent form-encoded is simply not read (a verified push triggers a pass either way)."""
    data = request.get_data(cache=True)
    if not data.strip():
        return {}
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        if not strict:
            return {}
        raise BadRequest("the body is not JSON") from exc
    if not isinstance(doc, dict):
        if not strict:
            return {}
        raise BadRequest("the body must be a JSON object")
    return doc


def text_field(body: dict[str, Any], key: str, *, limit: int = 2000) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Refusal(400, f"{key!r} must be text")
    if len(value) > limit:
        raise Refusal(400, f"{key!r} is longer than {limit} characters")
    return value


def json_response(doc: Any, status: int = 200) -> Response:
    return Response(json.dumps(doc, default=str, sort_keys=True), status=status, mimetype="application/json")

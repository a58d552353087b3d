"""The console and the ``/api/v1/`` API as one WSGI application, mounted by ``reconciler.http``.

Here a request learns who makes it (a bearer token, a console session, or
nobody, which reads only with ``http.public_read``), is routed to an API route
or a page, and every answer gets the security headers: a Content-Security-Policy
that allows only this daemon's own stylesheet, script and forms (no inline
script or style, no other origin), no framing, no sniffing, no referrer.
Refusals become JSON for the API and pages for the console, never a traceback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from reconciler import logs
from reconciler.config import settings as config_mod
from reconciler.console import api, base, pages
from reconciler.console import backend as backend_mod
from reconciler.console import sessions as sessions_mod
from reconciler.core import access, errors

log = logging.getLogger(__name__)

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class Console:
    """Routes ``/api/v1/*`` and the console pages; ``http.Api`` hands it every path it does not serve."""

    def __init__(self, backend: backend_mod.Backend, settings: config_mod.HttpSettings, *,
                 clock: Callable[[], float] = time.time, read_secret: Callable[[Path], str | None]) -> None:
        self.backend = backend
        self.settings = settings
        self.clock = clock
        self.read_secret = read_secret
        self.sessions = sessions_mod.Sessions(clock=clock, ttl_s=settings.session_ttl_s)
        self.pages = pages.Pages()
        rules = [Rule(r.path, endpoint=f"api:{r.endpoint}", methods=[r.method]) for r in api.ROUTES]
        rules += [Rule(path, endpoint=f"page:{name}", methods=methods) for path, name, methods in pages.ROUTES]
        self.url_map = Map(rules, strict_slashes=False)

    def configure(self, settings: config_mod.HttpSettings) -> None:
        """A reload: the next request sees the new tokens, public_read and session lifetime."""
        self.settings = settings
        self.sessions.ttl_s = settings.session_ttl_s

    def rules(self) -> list[Rule]:
        return list(self.url_map.iter_rules())

    # ------------------------------------------------------------------ identity

    def context(self, request: Request, *, cookies: bool = True) -> base.Ctx:
        """Who asks: a bearer token; else (``cookies``) a console session; else, with public_read, a reader."""
        settings = self.settings
        ctx = base.Ctx(request=request, backend=self.backend, settings=settings, identity=None, session=None,
                       sessions=self.sessions, clock=self.clock, read_secret=self.read_secret)
        tokens = settings.all_tokens()
        header = request.headers.get("Authorization", "")
        if header:
            given = header[7:].strip() if header[:7].lower() == "bearer " else ""
            given = given.encode("latin-1", "replace").decode("utf-8", "replace")  # WSGI headers are Latin-1
            ctx.identity = access.identify(access.digest(given), tokens, self.read_secret) if given else None
            ctx.bad_token = ctx.identity is None
            return ctx
        session, expired = self.sessions.get(request.cookies.get(sessions_mod.COOKIE) if cookies else None)
        if session is not None:
            who = access.identify(session.digest, tokens, self.read_secret)
            if who is None:  # the token was rotated or removed: its sessions end with it
                self.sessions.close(session.sid)
                expired = True
            else:
                ctx.identity, ctx.session = who, session
        ctx.expired = expired
        if ctx.identity is None and settings.public_read:
            ctx.identity = access.public_reader()
        return ctx

    # ------------------------------------------------------------------ WSGI

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        response = self.handle(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.path.startswith("/api/") or request.method != "GET":
            response.headers.setdefault("Cache-Control", "no-store")
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        request.max_content_length = self.settings.max_body
        is_api = request.path.startswith("/api/")
        ctx: base.Ctx | None = None
        try:
            endpoint, args = self.url_map.bind_to_environ(request.environ).match()
            kind, name = endpoint.split(":", 1)
            # API changes take a bearer token only: a session cookie there would need a CSRF token too
            ctx = self.context(request, cookies=kind != "api" or request.method == "GET")
            if kind == "api":
                return api.HANDLERS[name](ctx, **args)
            return self.pages.handle(name, ctx, **args)
        except base.Refusal as exc:
            return self._refusal(request, ctx, exc.status, exc.message, exc.title, is_api)
        except HTTPException as exc:
            if isinstance(exc, NotFound) and not is_api:
                return self._refusal(request, ctx, 404, f"there is no page at {request.path}", "Not found", False)
            return self._refusal(request, ctx, exc.code or 500, str(exc.description), exc.name, is_api)
        except errors.ReconcilerError as exc:
            return self._refusal(request, ctx, 409, logs.redact(str(exc)), "Refused", is_api)
        except Exception:
            log.exception("HTTP %s %s failed", request.method, request.path)
            return self._refusal(request, ctx, 500, "internal error; see the daemon's log", "Internal error",
                                 is_api)

    def _refusal(self, request: Request, ctx: base.Ctx | None, status: int, message: str, title: str,
                 is_api: bool) -> Response:
        if is_api:
            return base.json_response({"error": message}, status)
        if status == 401 and request.method == "GET":
            return self.pages.to_signin(request, expired=bool(ctx and ctx.expired))
        return self.pages.error(ctx, status, title, message)

"""The daemon's HTTP endpoint: health, readiness, Prometheus metrics and webhooks here; the API and console
in ``reconciler.console``.

A WSGI app (werkzeug routing) served by waitress. ``/healthz``, ``/readyz`` and
``/metrics`` stay open for probes and scrapers. Every other path goes to the
console application: ``/api/v1/*`` (tokens with scopes from ``http.tokens``
and ``http.token_file``; reads need one unless ``http.public_read``) and the
console's pages. The webhook has its own secret (``webhook.secret_file``):
GitHub/Gitea HMAC-SHA256 signatures or GitLab's token.

A client's mistake is a 4xx, never a logged traceback: bodies larger than
``http.max_body`` are refused from their ``Content-Length`` (or, chunked, once
that much arrived) before the app reads them, and malformed headers and bodies
are answered 400.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import waitress.server
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from waitress import wasyncore
from werkzeug.exceptions import BadRequest, HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from reconciler import logs
from reconciler.config import settings as config_mod
from reconciler.console import app as console_app
from reconciler.console import backend as console_backend
from reconciler.console import base as console_base
from reconciler.core import access, errors
from reconciler.notifications import stream as event_stream
from reconciler.runtime import metrics

log = logging.getLogger("reconciler.httpapi")  # the name log filters know; kept when the module moved

Trigger = Callable[[str], None]


_SIGNATURE = re.compile(r"^[0-9a-fA-F]{64}$")


def _read_secret(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        log.error("cannot read secret file %s: %s", path, getattr(exc, "strerror", None) or "not UTF-8 text")
        return None
    logs.register_secret(value)
    return value or None


class Api:
    """``engine`` serves readiness and, through ``console.backend.EngineBackend``, the API and console
    (``backend`` replaces that, for tests)."""

    def __init__(self, engine: Any, trigger: Trigger, *, token_file: Path | None = None,
                 webhook_secret_file: Path | None = None, branch: str,
                 max_body: int = config_mod.DEFAULT_MAX_BODY, http: config_mod.HttpSettings | None = None,
                 backend: console_backend.Backend | None = None, clock: Callable[[], float] = time.time) -> None:
        settings = http or config_mod.HttpSettings(token_file=token_file, webhook_secret_file=webhook_secret_file,
                                                   max_body=max_body)
        self.backend = backend or console_backend.EngineBackend(engine, trigger)
        self.trigger = trigger
        self.console = console_app.Console(self.backend, settings, clock=clock, read_secret=_read_secret)
        self.branch = branch
        self.configure(settings, branch)
        self.url_map = Map([
            Rule("/healthz", endpoint="healthz", methods=["GET"]),
            Rule("/readyz", endpoint="readyz", methods=["GET"]),
            Rule("/metrics", endpoint="metrics", methods=["GET"]),
            Rule("/webhook", endpoint="webhook", methods=["POST"]),
            Rule("/api/v1/events", endpoint="events", methods=["GET"]),
        ])

    # ------------------------------------------------------------------ WSGI

    def configure(self, settings: config_mod.HttpSettings, branch: str) -> None:
        """A reload: the next request uses the new tokens, files, limit and branch."""
        self.token_file = settings.token_file
        self.webhook_secret_file = settings.webhook_secret_file
        self.max_body = settings.max_body
        self.branch = branch
        self.console.configure(settings)

    def rules(self) -> list[Rule]:
        """Every route served (for the OpenAPI check)."""
        return [*self.url_map.iter_rules(), *self.console.rules()]

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        request.max_content_length = self.max_body  # werkzeug refuses more (413) when the body is read
        adapter = self.url_map.bind_to_environ(environ)
        if not adapter.test():  # not a probe or the webhook: the API or a console page
            return self.console(environ, start_response)
        try:
            endpoint, args = adapter.match()
        except HTTPException as exc:
            response = _json({"error": exc.description}, exc.code or 500)
            return response(environ, start_response)
        try:
            response = getattr(self, f"on_{endpoint}")(request, **args)
        except HTTPException as exc:
            response = _json({"error": exc.description}, exc.code or 500)
        except errors.ReconcilerError as exc:
            response = _json({"error": str(exc)}, 409)
        except Exception:
            log.exception("HTTP %s %s failed", request.method, request.path)
            response = _json({"error": "internal error; see the daemon's log"}, 500)
        for name, value in console_app.SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response(environ, start_response)

    def _authorized(self, request: Request, scope: access.Scope = access.Scope.READ) -> Response | None:
        """For a route served here that needs a token: its 401/403 answer, or None when the caller holds
        ``scope`` for some application (a bearer token, a console session for reads, or public_read)."""
        ctx = self.console.context(request, cookies=request.method == "GET")
        try:
            ctx.require(scope)
        except console_base.Refusal as exc:
            return _json({"error": exc.message}, exc.status)
        return None

    # ------------------------------------------------------------------ routes

    def on_healthz(self, _request: Request) -> Response:
        return _json({"status": "alive"})

    def on_readyz(self, _request: Request) -> Response:
        ok, reason = self.backend.ready()
        return _json({"ready": ok, "reason": reason}, 200 if ok else 503)

    def on_metrics(self, _request: Request) -> Response:
        return Response(generate_latest(metrics.REGISTRY), mimetype=CONTENT_TYPE_LATEST)

    def on_events(self, request: Request) -> Response:
        """The history as server-sent events (docs/notifications.md); it shows what happens, so it needs ``read``."""
        try:
            who = self.console.context(request, cookies=True).require(access.Scope.READ)
        except console_base.Refusal as exc:
            return _json({"error": exc.message}, exc.status)
        return event_stream.response(self.backend.event_store(), request,
                                     visible=lambda app: not app or who.can(access.Scope.READ, app))

    def on_webhook(self, request: Request) -> Response:
        secret = _read_secret(self.webhook_secret_file)
        if secret is None:
            raise NotFound("webhooks are disabled: set webhook.secret_file")
        raw = request.get_data(cache=True)
        if not _webhook_ok(request, raw, secret):
            return _json({"error": "bad webhook signature or token"}, 401)
        event = _event(request)
        if event is not None and event not in ("push", "push hook"):
            return _json({"ignored": f"{event} event; only pushes trigger a pass"}, 202)
        payload = _body(request, strict=False)
        ref = str(payload.get("ref") or "")
        if ref and ref != f"refs/heads/{self.branch}":
            return _json({"ignored": f"push to {ref}, tracking refs/heads/{self.branch}"}, 202)
        self.trigger("webhook")
        return _json({"triggered": True}, 202)


def _webhook_ok(request: Request, raw: bytes, secret: str) -> bool:
    gitlab = request.headers.get("X-Gitlab-Token")
    if gitlab is not None:
        return hmac.compare_digest(_bytes(gitlab), secret.encode())
    expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest().encode()
    github = request.headers.get("X-Hub-Signature-256")
    if github is not None:
        if not github.startswith("sha256=") or not _SIGNATURE.match(github[7:]):
            raise BadRequest("malformed X-Hub-Signature-256 header: expected sha256=<64 hex digits>")
        return hmac.compare_digest(github[7:].lower().encode(), expected)
    gitea = request.headers.get("X-Gitea-Signature") or request.headers.get("X-Gogs-Signature")
    if gitea:
        if not _SIGNATURE.match(gitea):
            raise BadRequest("malformed X-Gitea-Signature header: expected 64 hex digits")
        return hmac.compare_digest(gitea.lower().encode(), expected)
    return False


def _bytes(header: str) -> bytes:
    """A header as the bytes the client sent (WSGI decodes them as Latin-1); compare_digest wants bytes."""
    return header.encode("latin-1", errors="replace")


def _event(request: Request) -> str | None:
    """The forge's event name (``push`` for GitHub/Gitea, ``Push Hook`` for GitLab), lower-cased."""
    for header in ("X-GitHub-Event", "X-Gitea-Event", "X-Gogs-Event", "X-Gitlab-Event"):
        value = request.headers.get(header)
        if value:
            return value.strip().lower()
    return None


_body = console_base.json_body


def _json(doc: Any, status: int = 200) -> Response:
    return Response(json.dumps(doc, default=str, sort_keys=True), status=status, mimetype="application/json")


class Server:
    """waitress in a daemon thread; ``port`` is the bound port (0 in the config picks a free one).

    waitress refuses a body over ``max_body`` from its Content-Length before reading it, and a chunked one
    as soon as that much arrived; ``set_max_body`` changes the limit for the next request (a reload).
    """

    def __init__(self, app: Api, host: str, port: int, *, max_body: int = config_mod.DEFAULT_MAX_BODY) -> None:
        self.listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            self._server = waitress.server.create_server(
                app, host=host, port=port, threads=4, ident="reconciler",
                max_request_body_size=max_body,
                channel_request_lookahead=1)  # event streams see a client leave
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise errors.ConfigError(f"http.listen {self.listen}: cannot listen there: {why}") from exc
        self.port = int(self._server.effective_port)  # type: ignore[union-attr,unused-ignore]
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)

    def set_max_body(self, max_body: int) -> None:
        self._server.adj.max_request_body_size = max_body

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop serving. The sockets are closed in the server's own loop thread: closed from another thread,
        they race its ``select`` (a traceback at shutdown, or a listening socket that lingers)."""
        if self._thread.is_alive():
            server: Any = self._server
            try:
                server.trigger.pull_trigger(self._stop)
            except OSError:  # the loop already closed its trigger: it is stopping on its own
                log.debug("http endpoint: already stopping")
            self._thread.join(timeout=5)
        else:
            self._stop()

    def _stop(self) -> None:
        """No new connections; requests being served finish (they answer through the trigger); then the rest."""
        server: Any = self._server
        wasyncore.dispatcher.close(server)  # the listening socket only
        server.task_dispatcher.shutdown(timeout=2)
        wasyncore.close_all(server._map)

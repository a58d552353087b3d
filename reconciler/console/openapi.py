"""The OpenAPI 3.1 document of the daemon's HTTP API, made from the route table (``api.ROUTES``).

The probe and webhook routes are served by ``reconciler.http`` itself; they are listed
here so the document describes every machine-facing route of the daemon (the
console's HTML pages are not part of it).
"""

from __future__ import annotations

import functools
import re
from typing import Any

from reconciler import __version__
from reconciler.console import api
from reconciler.core import access

_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}

HTTPAPI_ROUTES: tuple[tuple[str, str, str, access.Scope | None, str], ...] = (
    ("/healthz", "get", "healthz", None, "The process is alive (open, for probes)."),
    ("/readyz", "get", "readyz", None, "200 when the repository was read recently and the store is writable, else "
     "503 with the reason (open, for probes)."),
    ("/metrics", "get", "metrics", None, "Prometheus metrics (open, for scrapers)."),
    ("/webhook", "post", "webhook", None, "Push events from GitHub, Gitea or GitLab, signed with "
     "webhook.secret_file (HMAC-SHA256) or carrying GitLab's token; a push to the tracked branch starts a pass."),
    ("/api/v1/events", "get", "events", access.Scope.READ, "The history as server-sent events (`?application=`, "
     "`?kind=`, `Last-Event-ID`); only events of applications the token may read, and of none."),
)
"""Routes ``http.Api`` serves itself: (path, method, operationId, scope or None for open, summary)."""


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)


def _responses(route: api.Route) -> dict[str, Any]:
    out: dict[str, Any] = {str(route.status): {"description": "done",
                                               "content": {"application/json": {"schema": {"type": "object"}}}}}
    if route.scope is not None:
        out["401"] = {"description": "no token, or a token that matches none",
                      "content": {"application/json": {"schema": _ERROR}}}
        out["403"] = {"description": f"the token lacks the {route.scope.value} scope",
                      "content": {"application/json": {"schema": _ERROR}}}
    if route.params and any(p.where == "path" for p in route.params):
        out["404"] = {"description": "no such object", "content": {"application/json": {"schema": _ERROR}}}
    if route.method == "POST":
        out["400"] = {"description": "a malformed body", "content": {"application/json": {"schema": _ERROR}}}
        out["409"] = {"description": "refused: an unknown name or id (with the closest ones), a source error",
                      "content": {"application/json": {"schema": _ERROR}}}
        out["413"] = {"description": "the body is larger than http.max_body"}
    return out


@functools.cache
def document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in api.ROUTES:
        op: dict[str, Any] = {
            "operationId": route.endpoint,
            "summary": route.summary,
            "responses": _responses(route),
        }
        if route.scope is None:
            op["security"] = []
        else:
            op["security"] = [{"bearer": []}, {"session": []}] if route.method == "GET" else [{"bearer": []}]
            where = route.scope_note or "the application named in the path"
            op["description"] = (f"Scope: `{route.scope.value}` for {where}. "
                                 + ("With `http.public_read: true` no token is needed. "
                                    if route.scope is access.Scope.READ else "")
                                 + ("The token's name is recorded as who did it." if route.method == "POST" else ""))
        if route.params:
            op["parameters"] = [{"name": p.name, "in": p.where, "required": p.where == "path",
                                 "description": p.description, "schema": p.schema} for p in route.params]
        if route.body is not None:
            op["requestBody"] = {"required": False,
                                 "content": {"application/json": {"schema": route.body}}}
        paths.setdefault(_openapi_path(route.path), {})[route.method.lower()] = op
    for path, method, op_id, scope, summary in HTTPAPI_ROUTES:
        op = {"operationId": op_id, "summary": summary, "responses": {"200": {"description": "ok"}}}
        op["security"] = [] if scope is None else [{"bearer": []}, {"session": []}]
        if scope is not None:
            op["description"] = f"Scope: `{scope.value}` for any application."
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "reconciler", "version": __version__,
                 "description": "The reconciler daemon's HTTP API. Reads need a token with the read scope unless "
                                "http.public_read is true; every change needs a bearer token with its scope, and "
                                "records the token's name."},
        "servers": [{"url": "/"}],
        "components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "a token from http.tokens (or http.token_file)"},
            "session": {"type": "apiKey", "in": "cookie", "name": "reconciler_session",
                        "description": "the console's sign-in session (reads only)"},
        }},
        "paths": paths,
    }

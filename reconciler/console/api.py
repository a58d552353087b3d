"""The JSON API under ``/api/v1/``: everything the CLI can do, each route behind its scope.

``ROUTES`` is the single list of routes: the URL map and the OpenAPI document
(``/api/v1/openapi.json``) are both made from it, so a route cannot exist
undocumented. Reads are cut to the applications the caller may read; every
state-changing route records the caller's token name as who did it (a ``by``
in the body is ignored, as the caller could write anything there).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Response

from reconciler import render
from reconciler.console import base, views
from reconciler.console.backend import Preview
from reconciler.core import access, model

S = access.Scope
Handler = Callable[..., Response]


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    where: str  # path | query
    description: str
    schema: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Route:
    path: str  # werkzeug rule
    method: str
    endpoint: str
    scope: access.Scope | None  # None: no token needed
    summary: str
    params: tuple[Param, ...] = ()
    body: dict[str, Any] | None = None  # JSON Schema of the request body
    status: int = 200
    scope_note: str = ""  # where the scope must hold, for the document


def _path(name: str, description: str) -> Param:
    return Param(name, "path", description, {"type": "string"})


_APP_Q = Param("application", "query", "only this application", {"type": "string"})
_LIMIT_Q = Param("limit", "query", "at most this many, newest first (1-1000, default 50)",
                 {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50})
_COMMENT = {"type": "object", "properties": {"comment": {"type": "string", "maxLength": 2000}},
            "additionalProperties": True}

ROUTES: tuple[Route, ...] = (
    Route("/api/v1/openapi.json", "GET", "openapi", None, "This document (OpenAPI 3.1)."),
    Route("/api/v1/whoami", "GET", "whoami", S.READ, "The caller's token name and grants.",
          scope_note="any application"),
    Route("/api/v1/status", "GET", "status", S.READ,
          "Applications with conditions, server groups, the last pass's changes, executions, pauses, freeze.",
          scope_note="cut to the applications the caller may read"),
    Route("/api/v1/applications", "GET", "applications", S.READ,
          "The fleet: each application's condition, owner, criticality and last commit.",
          scope_note="cut to the applications the caller may read"),
    Route("/api/v1/applications/<name>", "GET", "application", S.READ,
          "One application: clusters by account and region with every server group, load balancers, "
          "security groups, pending approvals.", (_path("name", "application name"),)),
    Route("/api/v1/plan", "GET", "plan", S.READ,
          "The plan for the tracked branch's head against live state, with held and skipped changes.",
          (Param("format", "query", "also render the plan as text or Markdown (in 'text' / 'markdown')",
                 {"type": "string", "enum": ["json", "text", "markdown"], "default": "json"}),
           Param("max_comment_chars", "query", "Markdown parts of at most this many characters",
                 {"type": "integer", "minimum": 1000, "default": 65536})),
          scope_note="cut to the applications the caller may read"),
    Route("/api/v1/approvals", "GET", "approvals", S.READ, "Changes waiting for an approval.",
          scope_note="cut to the applications the caller may read"),
    Route("/api/v1/history", "GET", "history", S.READ, "Events and executions, newest first.",
          (_APP_Q, _LIMIT_Q), scope_note="cut to the applications the caller may read"),
    Route("/api/v1/executions", "GET", "executions", S.READ, "Executions (deployments), newest first.",
          (_APP_Q, _LIMIT_Q), scope_note="cut to the applications the caller may read"),
    Route("/api/v1/executions/<ident>", "GET", "execution", S.READ,
          "One execution with every step: start, end, attempts, result, error.", (_path("ident", "execution id"),)),
    Route("/api/v1/reconcile", "POST", "reconcile", S.OPERATE, "Start a pass now.", status=202,
          scope_note="any application"),
    Route("/api/v1/approve/<ident>", "POST", "approve", S.APPROVE,
          "Approve a change (change id) or a whole plan (plan id) of the plan in force.",
          (_path("ident", "change id or plan id"),), _COMMENT,
          scope_note="every application the change or plan touches"),
    Route("/api/v1/reject/<ident>", "POST", "reject", S.APPROVE, "Reject a change or a plan.",
          (_path("ident", "change id or plan id"),), _COMMENT,
          scope_note="every application the change or plan touches"),
    Route("/api/v1/environments/<application>/<environment>/<decision>", "POST", "decide_environment", S.APPROVE,
          "Approve or reject a version of an application for an environment that asks for approval "
          "(docs/environments.md).",
          (_path("application", "application name"), _path("environment", "environment name"),
           _path("decision", "approve or reject")),
          {"type": "object", "required": ["version"],
           "properties": {"version": {"type": "string", "maxLength": 128},
                          "comment": {"type": "string", "maxLength": 2000}}},
          scope_note="the application"),
    Route("/api/v1/promote", "POST", "promote", S.PROMOTE,
          "Commit a new version of an application (or of one environment) to the tracked branch and push it, "
          "as `reconciler promote` does; a pass starts at once (docs/environments.md).", (),
          {"type": "object", "required": ["application", "version"],
           "properties": {"application": {"type": "string", "maxLength": 40},
                          "version": {"type": "string", "maxLength": 128},
                          "environment": {"type": "string", "maxLength": 40,
                                          "description": "promote this environment's own version"},
                          "message": {"type": "string", "maxLength": 2000}}},
          scope_note="the application"),
    Route("/api/v1/pause/<target>", "POST", "pause", S.OPERATE, "Pause reconciling an application or cluster.",
          (_path("target", "application or cluster name"),),
          {"type": "object", "properties": {"reason": {"type": "string", "maxLength": 2000},
                                            "force": {"type": "boolean",
                                                      "description": "pause a name not in Git yet"}}}),
    Route("/api/v1/resume/<target>", "POST", "resume", S.OPERATE, "Resume a paused application or cluster.",
          (_path("target", "application or cluster name"),)),
    Route("/api/v1/rollback/<cluster>", "POST", "rollback", S.OPERATE,
          "Re-enable the retained previous server group of a cluster (in the background); the cluster is paused "
          "until the deploy is reverted in Git and it is resumed.", (_path("cluster", "cluster name"),),
          {"type": "object", "properties": {"region": {"type": "string", "description": "only this region"}}},
          status=202),
    Route("/api/v1/freeze", "POST", "freeze", S.ADMIN, "Stop every change except rollbacks.", (),
          {"type": "object", "required": ["reason"], "properties": {"reason": {"type": "string", "minLength": 1,
                                                                               "maxLength": 2000}}},
          scope_note="the pattern '*'"),
    Route("/api/v1/unfreeze", "POST", "unfreeze", S.ADMIN, "Lift a freeze.", scope_note="the pattern '*'"),
)


# ---------------------------------------------------------------------------- reads


def on_openapi(ctx: base.Ctx) -> Response:
    from reconciler.console import openapi  # noqa: PLC0415 - built on first request only

    return base.json_response(openapi.document())


def on_whoami(ctx: base.Ctx) -> Response:
    who = ctx.require(S.READ)
    return base.json_response({"name": who.name, "anonymous": who.anonymous,
                               "grants": [{"pattern": g.pattern, "scopes": sorted(s.value for s in g.scopes)}
                                          for g in who.grants]})


def _reader(ctx: base.Ctx) -> access.Identity:
    return ctx.require(S.READ)


def on_status(ctx: base.Ctx) -> Response:
    return base.json_response(views.visible(ctx.backend.status(), _reader(ctx)))


def on_applications(ctx: base.Ctx) -> Response:
    status = views.visible(ctx.backend.status(), _reader(ctx))
    return base.json_response({"commit": status.get("commit"), "freeze": status.get("freeze"),
                               "applications": [dataclasses.asdict(r) for r in views.fleet(status)]})


def on_application(ctx: base.Ctx, name: str) -> Response:
    ctx.require(S.READ, name)
    view = views.application(ctx.backend.status(), name)
    if view is None:
        raise base.Refusal(404, f"no application named {name!r} in the last pass")
    return base.json_response(dataclasses.asdict(view))


def preview_json(preview: Preview, who: access.Identity, *, fmt: str = "json",
                 max_chars: int = 65536) -> dict[str, Any]:
    """The plan contract (``render.render_json``) plus what will not run now, cut to what ``who`` may read."""
    plan = preview.plan
    readable = tuple(c for c in plan.changes if who.can(S.READ, c.application))
    resources = tuple(r for r in plan.resource_changes if who.can(S.READ, r.application))
    shown = plan
    if len(readable) != len(plan.changes) or len(resources) != len(plan.resource_changes) or (
            plan.problems and not who.can_everywhere(S.READ)):
        shown = dataclasses.replace(plan, changes=readable, resource_changes=resources,
                                    problems=() if not who.can_everywhere(S.READ) else plan.problems)
    held = [(c, why) for c, why in preview.held if who.can(S.READ, c.application)]
    skipped = [s for s in preview.skipped if who.can(S.READ, s.application)]
    doc: dict[str, Any] = {
        "plan": {**render.render_json(shown), "plan_id": plan.plan_id},
        "partial": shown is not plan,
        "summary_line": render.summary_line(shown),
        "held": [{"change_id": c.change_id, "application": c.application, "cluster": c.cluster,
                  "region": c.region, "why": str(why), "kind": why.kind.value} for c, why in held],
        "skipped": [dataclasses.asdict(s) for s in skipped],
        "unreadable": [{"provider": p, "account": a, "region": r, "error": why}
                       for (p, a, r), why in sorted(preview.unreadable.items())],
    }
    if fmt == "text":
        notes = [f"  held: {c.cluster} in {c.region}: {why}" for c, why in held]
        notes += [f"  skipped: {s.cluster} ({s.key}): {s.reason}" for s in skipped]
        doc["text"] = render.render_text(shown, color=False) + ("\n" + "\n".join(notes) if notes else "")
    elif fmt == "markdown":
        doc["markdown"] = render.render_markdown(shown, max_chars=max_chars,
                                                 notes=render.notes_markdown(held, skipped))
    return doc


def on_plan(ctx: base.Ctx) -> Response:
    who = _reader(ctx)
    fmt = ctx.request.args.get("format", "json")
    if fmt not in ("json", "text", "markdown"):
        raise base.Refusal(400, "format must be json, text or markdown")
    max_chars = _int_arg(ctx, "max_comment_chars", 65536, 1000, 10_000_000)
    return base.json_response(preview_json(ctx.backend.plan_preview(), who, fmt=fmt, max_chars=max_chars))


def on_approvals(ctx: base.Ctx) -> Response:
    status = views.visible(ctx.backend.status(), _reader(ctx))
    return base.json_response({"plan_id": status.get("plan_id"), "approvals": views.pending_approvals(status)})


def _int_arg(ctx: base.Ctx, name: str, default: int, low: int, high: int) -> int:
    raw = ctx.request.args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise base.Refusal(400, f"{name} must be a whole number from {low} to {high}")
    return int(raw)


def _filters(ctx: base.Ctx) -> tuple[access.Identity, str | None, int]:
    who = _reader(ctx)
    app = ctx.request.args.get("application") or None
    if app is not None:
        ctx.require(S.READ, app)
    return who, app, _int_arg(ctx, "limit", 50, 1, 1000)


def on_history(ctx: base.Ctx) -> Response:
    who, app, limit = _filters(ctx)
    events = views.visible_rows(ctx.backend.history(limit=limit, application=app), who)
    execs = views.visible_rows(ctx.backend.executions(limit=limit, application=app), who)
    return base.json_response({"events": events, "executions": execs})


def on_executions(ctx: base.Ctx) -> Response:
    who, app, limit = _filters(ctx)
    return base.json_response({"executions": views.visible_rows(
        ctx.backend.executions(limit=limit, application=app), who)})


def on_execution(ctx: base.Ctx, ident: str) -> Response:
    _reader(ctx)
    row = ctx.backend.execution(ident)
    if row is None:
        raise base.Refusal(404, f"no execution {ident!r}")
    ctx.require(S.READ, str(row.get("application", "")))
    return base.json_response(row)


# ---------------------------------------------------------------------------- changes


def on_reconcile(ctx: base.Ctx) -> Response:
    ctx.require(S.OPERATE, what="a pass")
    ctx.backend.trigger("api")
    return base.json_response({"triggered": True}, 202)


def decision_applications(backend: Any, ident: str) -> set[str] | None:
    """The applications a decision on ``ident`` touches (a change id: its one; a plan id: all of the plan's);
    None when it is neither (the engine then says why, with the ids it knows)."""
    status = backend.status()
    changes = status.get("changes") or ()
    if ident == status.get("plan_id"):
        return {access.application_of_key(str(c.get("key", ""))) for c in changes}
    for c in changes:
        if c.get("change_id") == ident:
            return {access.application_of_key(str(c.get("key", "")))}
    plan: model.Plan = backend.plan_preview(fresh=True).plan
    if ident == plan.plan_id:
        return {c.application for c in plan.changes}
    for ch in plan.changes:
        if ch.change_id == ident:
            return {ch.application}
    return None


def authorize_decision(ctx: base.Ctx, ident: str) -> access.Identity:
    who = ctx.require(S.APPROVE, what="an approval")
    for app in sorted(decision_applications(ctx.backend, ident) or ()):
        ctx.require(S.APPROVE, app, what=f"deciding {ident}")
    return who


def on_approve(ctx: base.Ctx, ident: str) -> Response:
    return _decide(ctx, ident, ctx.backend.approve)


def on_reject(ctx: base.Ctx, ident: str) -> Response:
    return _decide(ctx, ident, ctx.backend.reject)


def _decide(ctx: base.Ctx, ident: str, fn: Callable[..., dict[str, Any]]) -> Response:
    body = base.json_body(ctx.request)
    who = authorize_decision(ctx, ident)
    return base.json_response(fn(ident, by=who.name, comment=base.text_field(body, "comment")))


def on_decide_environment(ctx: base.Ctx, application: str, environment: str, decision: str) -> Response:
    if decision not in ("approve", "reject"):
        raise base.Refusal(404, f"no decision {decision!r}: approve or reject")
    body = base.json_body(ctx.request)
    who = ctx.require(S.APPROVE, application, what=f"deciding {application} in {environment}")
    version = base.text_field(body, "version", limit=128)
    if not version:
        raise base.Refusal(400, "'version' is required: the version to approve or reject")
    row = ctx.backend.decide_environment(application, environment, version,
                                         "approved" if decision == "approve" else "rejected",
                                         by=who.name, comment=base.text_field(body, "comment"))
    return base.json_response(row)


def on_promote(ctx: base.Ctx) -> Response:
    body = base.json_body(ctx.request)
    application = base.text_field(body, "application", limit=40)
    version = base.text_field(body, "version", limit=128)
    if not application or not version:
        raise base.Refusal(400, "'application' and 'version' are required: the version to promote")
    who = ctx.require(S.PROMOTE, application, what=f"promoting {application}")
    row = ctx.backend.promote(application, version, environment=base.text_field(body, "environment", limit=40)
                              or None, message=base.text_field(body, "message"), by=who.name)
    return base.json_response(row)


def on_pause(ctx: base.Ctx, target: str) -> Response:
    body = base.json_body(ctx.request)
    who = ctx.require(S.OPERATE, access.application_of(target), what=f"pausing {target}")
    ctx.backend.pause(target, by=who.name, reason=base.text_field(body, "reason"), force=body.get("force") is True)
    return base.json_response({"paused": target, "by": who.name})


def on_resume(ctx: base.Ctx, target: str) -> Response:
    who = ctx.require(S.OPERATE, access.application_of(target), what=f"resuming {target}")
    ctx.backend.resume(target, by=who.name)
    return base.json_response({"resumed": target, "by": who.name})


def on_rollback(ctx: base.Ctx, cluster: str) -> Response:
    body = base.json_body(ctx.request)
    who = ctx.require(S.OPERATE, access.application_of(cluster), what=f"rolling back {cluster}")
    regions = ctx.backend.rollback(cluster, region=base.text_field(body, "region", limit=100) or None, by=who.name)
    return base.json_response({"rollback": cluster, "regions": regions, "paused": cluster, "by": who.name}, 202)


def on_freeze(ctx: base.Ctx) -> Response:
    body = base.json_body(ctx.request)
    who = ctx.require(S.ADMIN, everywhere=True, what="a freeze")
    reason = base.text_field(body, "reason").strip()
    if not reason:
        raise base.Refusal(400, "a freeze needs a reason (body {\"reason\": \"...\"})")
    ctx.backend.freeze(by=who.name, reason=reason)
    return base.json_response({"frozen": True, "reason": reason, "by": who.name})


def on_unfreeze(ctx: base.Ctx) -> Response:
    who = ctx.require(S.ADMIN, everywhere=True, what="lifting a freeze")
    ctx.backend.unfreeze(by=who.name)
    return base.json_response({"frozen": False, "by": who.name})


HANDLERS: dict[str, Handler] = {r.endpoint: globals()[f"on_{r.endpoint}"] for r in ROUTES}

"""The console's pages: server-rendered with Jinja2 (autoescaped), forms for every action, no inline script.

Every action is two steps: a confirmation page (which already says if the
token lacks the scope) and a POST carrying the session's CSRF token. A page
marked ``data-refresh`` is re-fetched as an HTML fragment by the one static
script, so running executions update without a build step or inline code.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jinja2
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Request, Response

from reconciler import __version__
from reconciler.console import api, base, views
from reconciler.console import sessions as sessions_mod
from reconciler.core import access, errors, model

S = access.Scope

ROUTES: tuple[tuple[str, str, list[str]], ...] = (
    ("/", "fleet", ["GET"]),
    ("/apps/<name>", "application", ["GET"]),
    ("/plan", "plan", ["GET"]),
    ("/executions", "executions", ["GET"]),
    ("/executions/<ident>", "execution", ["GET"]),
    ("/history", "history", ["GET"]),
    ("/signin", "signin", ["GET", "POST"]),
    ("/signout", "signout", ["POST"]),
    ("/confirm/<action>", "confirm", ["GET"]),
    ("/actions/<action>", "act", ["POST"]),
    ("/static/<name>", "static", ["GET"]),
)

_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".svg": "image/svg+xml"}


@dataclass(frozen=True, slots=True)
class Action:
    label: str  # the button
    question: str  # the confirmation, with {target}
    scope: access.Scope
    target: str  # what the target is ("" for fleet-wide actions)
    text_field: str = ""  # reason / comment
    text_required: bool = False
    danger: bool = False


ACTIONS: dict[str, Action] = {
    "approve": Action("Approve", "Approve {target}? It runs at the next pass.", S.APPROVE, "change or plan id",
                      "comment"),
    "reject": Action("Reject", "Reject {target}? It will not run.", S.APPROVE, "change or plan id", "comment",
                     danger=True),
    "pause": Action("Pause", "Pause reconciling {target}? Nothing is planned for it until it is resumed.",
                    S.OPERATE, "application or cluster", "reason", danger=True),
    "resume": Action("Resume", "Resume reconciling {target}?", S.OPERATE, "application or cluster"),
    "rollback": Action("Roll back", "Roll back {target} to its retained previous server group? The cluster is "
                       "paused until the deploy is reverted in Git.", S.OPERATE, "cluster", danger=True),
    "freeze": Action("Freeze", "Freeze every change except rollbacks?", S.ADMIN, "", "reason",
                     text_required=True, danger=True),
    "unfreeze": Action("Unfreeze", "Lift the freeze?", S.ADMIN, ""),
    "reconcile": Action("Reconcile now", "Start a reconcile pass now?", S.OPERATE, ""),
}


def _safe_next(value: str | None, default: str = "/") -> str:
    """Only a path on this site (no scheme, no host, no ``//``) is followed after sign-in or an action."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value or "\n" in value:
        return default
    return value


def _load_static() -> dict[str, tuple[bytes, str, str]]:
    out: dict[str, tuple[bytes, str, str]] = {}
    folder = importlib.resources.files("reconciler.console") / "static"
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if suffix in _STATIC_TYPES:
            data = entry.read_bytes()
            out[entry.name] = (data, _STATIC_TYPES[suffix], hashlib.sha256(data).hexdigest()[:12])
    return out


class Pages:
    def __init__(self) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("reconciler.console", "templates"),
            autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        )
        self.env.filters["when"] = views.fmt_time
        self.env.filters["took"] = views.fmt_duration
        self.env.filters["short"] = lambda s: str(s or "")[:8]
        self.env.globals["ACTIONS"] = ACTIONS
        self.static = _load_static()
        self.static_version = hashlib.sha256(b"".join(v[2].encode() for v in self.static.values())).hexdigest()[:8]

    # ------------------------------------------------------------------ rendering

    def render(self, ctx: base.Ctx | None, template: str, status: int = 200, **values: Any) -> Response:
        session = ctx.session if ctx else None
        flash = list(session.flash) if session else []
        if session:
            session.flash.clear()
        values.setdefault("title", "reconciler")
        values.setdefault("fleet_status", {})
        html = self.env.get_template(template).render(
            identity=ctx.identity if ctx else None, session=session, flash=flash,
            csrf=session.csrf if session else "", version=__version__, static_version=self.static_version,
            path=ctx.request.full_path.rstrip("?") if ctx and ctx.request.method == "GET" else "/",
            now=ctx.clock() if ctx else 0.0,
            views=views, **values)
        return Response(html, status=status, mimetype="text/html")

    def error(self, ctx: base.Ctx | None, status: int, title: str, message: str) -> Response:
        return self.render(ctx, "error.html", status, title=title, code=status, message=message)

    def to_signin(self, request: Request, *, expired: bool) -> Response:
        query = {"next": _safe_next(request.full_path.rstrip("?"))}
        if expired:
            query["expired"] = "1"
        return Response(status=303, headers={"Location": "/signin?" + urllib.parse.urlencode(query)})

    def handle(self, page: str, ctx: base.Ctx, /, **args: Any) -> Response:
        handler: Callable[..., Response] = getattr(self, f"on_{page}")
        return handler(ctx, **args)

    def _status(self, ctx: base.Ctx) -> tuple[access.Identity, dict[str, Any]]:
        who = ctx.require(S.READ)
        return who, views.visible(ctx.backend.status(), who)

    def _page(self, ctx: base.Ctx, template: str, partial: str, **values: Any) -> Response:
        """The whole page, or with ``?partial=1`` only its live part (what the script re-fetches)."""
        if ctx.request.args.get("partial") == "1":
            return self.render(ctx, partial, **values)
        return self.render(ctx, template, partial=partial, **values)

    # ------------------------------------------------------------------ reading

    def on_fleet(self, ctx: base.Ctx) -> Response:
        _who, status = self._status(ctx)
        return self._page(ctx, "fleet.html", "_fleet.html", title="Applications", fleet_status=status,
                          rows=views.fleet(status), pending=views.pending_approvals(status))

    def on_application(self, ctx: base.Ctx, name: str) -> Response:
        ctx.require(S.READ, name)
        _who, status = self._status(ctx)
        view = views.application(status, name)
        if view is None:
            raise base.Refusal(404, f"no application named {name!r} in the last pass")
        executions = views.visible_rows(ctx.backend.executions(limit=10, application=name), ctx.require(S.READ))
        return self._page(ctx, "application.html", "_application.html", title=name, fleet_status=status,
                          view=view, executions=executions)

    def on_plan(self, ctx: base.Ctx) -> Response:
        who, status = self._status(ctx)
        try:
            doc: dict[str, Any] | None = api.preview_json(ctx.backend.plan_preview(), who)
            problem = ""
        except errors.ReconcilerError as exc:
            doc, problem = None, str(exc)
        waiting = {h["change_id"] for h in (doc or {}).get("held", ()) if h.get("kind") == model.Hold.APPROVAL.value}
        return self.render(ctx, "plan.html", title="Plan and approvals", fleet_status=status, doc=doc,
                           problem=problem, waiting=waiting)

    def on_executions(self, ctx: base.Ctx) -> Response:
        who, status = self._status(ctx)
        app = ctx.request.args.get("application") or None
        if app is not None:
            ctx.require(S.READ, app)
        rows = views.visible_rows(ctx.backend.executions(limit=50, application=app), who)
        return self._page(ctx, "executions.html", "_executions.html", title="Executions", fleet_status=status,
                          executions=rows, application=app or "")

    def on_execution(self, ctx: base.Ctx, ident: str) -> Response:
        _who, status = self._status(ctx)
        row = ctx.backend.execution(ident)
        if row is None:
            raise base.Refusal(404, f"no execution {ident!r}")
        ctx.require(S.READ, str(row.get("application", "")))
        return self._page(ctx, "execution.html", "_execution.html", title=f"Execution {ident}",
                          fleet_status=status, ex=row)

    def on_history(self, ctx: base.Ctx) -> Response:
        who, status = self._status(ctx)
        app = ctx.request.args.get("application") or None
        if app is not None:
            ctx.require(S.READ, app)
        events = views.visible_rows(ctx.backend.history(limit=200, application=app), who)
        return self.render(ctx, "history.html", title="History", fleet_status=status, events=events,
                           application=app or "")

    def on_static(self, ctx: base.Ctx, name: str) -> Response:
        if name not in self.static:
            raise NotFound()
        data, mimetype, etag = self.static[name]
        response = Response(data, mimetype=mimetype.split(";")[0])
        response.headers["Content-Type"] = mimetype
        response.set_etag(etag)
        response.headers["Cache-Control"] = "public, max-age=86400"
        return response.make_conditional(ctx.request)

    # ------------------------------------------------------------------ signing in

    def on_signin(self, ctx: base.Ctx) -> Response:
        request = ctx.request
        nxt = _safe_next(request.values.get("next"))
        if request.method == "GET":
            notice = ""
            if request.args.get("expired"):
                notice = "Your session has ended. Sign in again."
            elif request.args.get("signed_out"):
                notice = "Signed out."
            return self._signin_form(ctx, nxt, notice=notice)
        if not sessions_mod.same(request.cookies.get(sessions_mod.SIGNIN_COOKIE), request.form.get("signin_csrf")):
            return self._signin_form(ctx, nxt, status=403, error="The sign-in form expired or came from another "
                                     "site. Try again.")
        token = (request.form.get("token") or "").strip()
        who = access.identify(access.digest(token), ctx.settings.all_tokens(), ctx.read_secret) if token else None
        if who is None:
            return self._signin_form(ctx, nxt, status=401, error="That token matches no configured token.")
        ctx.sessions.close(request.cookies.get(sessions_mod.COOKIE))  # a new session id at every sign-in
        session = ctx.sessions.open(who)
        session.flash.append(f"Signed in as {who.name}.")
        response = Response(status=303, headers={"Location": nxt})
        response.set_cookie(sessions_mod.COOKIE, session.sid, max_age=int(ctx.sessions.ttl_s), path="/",
                            httponly=True, samesite="Strict", secure=request.is_secure)
        response.delete_cookie(sessions_mod.SIGNIN_COOKIE, path="/signin")
        return response

    def _signin_form(self, ctx: base.Ctx, nxt: str, *, status: int = 200, error: str = "",
                     notice: str = "") -> Response:
        token = sessions_mod.new_token()
        response = self.render(ctx, "signin.html", status, title="Sign in", next=nxt, error=error, notice=notice,
                               signin_csrf=token, public_read=ctx.settings.public_read)
        response.set_cookie(sessions_mod.SIGNIN_COOKIE, token, max_age=3600, path="/signin", httponly=True,
                            samesite="Strict", secure=ctx.request.is_secure)
        return response

    def on_signout(self, ctx: base.Ctx) -> Response:
        self._check_form(ctx)
        ctx.sessions.close(ctx.session.sid if ctx.session else None)
        response = Response(status=303, headers={"Location": "/signin?signed_out=1"})
        response.delete_cookie(sessions_mod.COOKIE, path="/")
        return response

    # ------------------------------------------------------------------ actions

    def _action(self, action: str) -> Action:
        if action not in ACTIONS:
            raise base.Refusal(404, f"there is no action {action!r}")
        return ACTIONS[action]

    def _authorize(self, ctx: base.Ctx, action: str, target: str) -> access.Identity:
        spec = self._action(action)
        if spec.target and not target:
            raise base.Refusal(400, f"{action} needs a target ({spec.target})")
        if action in ("approve", "reject"):
            return api.authorize_decision(ctx, target)
        if action in ("freeze", "unfreeze"):
            return ctx.require(spec.scope, everywhere=True, what=action)
        if action == "reconcile":
            return ctx.require(spec.scope, what="a pass")
        return ctx.require(spec.scope, access.application_of(target), what=f"{action} {target}")

    def on_confirm(self, ctx: base.Ctx, action: str) -> Response:
        spec = self._action(action)
        target = ctx.request.args.get("target", "")
        self._authorize(ctx, action, target)
        status = views.visible(ctx.backend.status(), ctx.require(S.READ))
        regions: list[str] = []
        if action == "rollback":
            regions = sorted({str(g.get("region")) for g in status.get("server_groups") or ()
                              if g.get("cluster") == target})
        return self.render(ctx, "confirm.html", title=spec.label, fleet_status=status, action=action, spec=spec,
                           target=target, regions=regions,
                           next=_safe_next(ctx.request.args.get("next"), self._after(action, target)))

    def _check_form(self, ctx: base.Ctx) -> None:
        """A console form must come from a signed-in session of this site and carry its CSRF token."""
        if ctx.session is None:
            raise base.Refusal(401, "Your session has ended; sign in again." if ctx.expired else
                               "Sign in first: this form needs a console session.")
        origin = ctx.request.headers.get("Origin")
        if origin and origin != "null" and urllib.parse.urlsplit(origin).netloc != ctx.request.host:
            raise base.Refusal(403, f"a form sent from another site ({origin}) is refused")
        if not sessions_mod.same(ctx.session.csrf, ctx.request.form.get("csrf")):
            raise base.Refusal(403, "The form's CSRF token is missing or does not match your session: reload the "
                               "page and try again.", title="Form refused")

    def _after(self, action: str, target: str) -> str:
        if action in ("approve", "reject", "freeze", "unfreeze"):
            return "/plan"
        if action == "reconcile":
            return "/executions"
        return f"/apps/{urllib.parse.quote(access.application_of(target))}" if target else "/"

    def on_act(self, ctx: base.Ctx, action: str) -> Response:
        self._check_form(ctx)
        spec = self._action(action)
        form = ctx.request.form
        target = form.get("target", "")
        who = self._authorize(ctx, action, target)
        text = (form.get(spec.text_field) or "").strip() if spec.text_field else ""
        if len(text) > 2000:
            raise base.Refusal(400, f"the {spec.text_field} is longer than 2000 characters")
        if spec.text_required and not text:
            raise base.Refusal(400, f"{spec.label} needs a {spec.text_field}")
        backend = ctx.backend
        if action == "approve":
            backend.approve(target, by=who.name, comment=text)
            message = f"{target} approved by {who.name}; it runs at the next pass (started now)."
        elif action == "reject":
            backend.reject(target, by=who.name, comment=text)
            message = f"{target} rejected by {who.name}."
        elif action == "pause":
            backend.pause(target, by=who.name, reason=text, force=False)
            message = f"{target} paused."
        elif action == "resume":
            backend.resume(target, by=who.name)
            message = f"{target} resumed."
        elif action == "rollback":
            regions = backend.rollback(target, region=form.get("region") or None, by=who.name)
            message = f"Rolling back {target} in {', '.join(regions)}; {target} is paused."
        elif action == "freeze":
            backend.freeze(by=who.name, reason=text)
            message = "Frozen: only rollbacks run."
        elif action == "unfreeze":
            backend.unfreeze(by=who.name)
            message = "Freeze lifted."
        else:
            backend.trigger("console")
            message = "A pass was started."
        assert ctx.session is not None
        ctx.session.flash.append(message)
        return Response(status=303, headers={"Location": _safe_next(form.get("next"), self._after(action, target))})


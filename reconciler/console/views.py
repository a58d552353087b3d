"""What the console and the API show, built from the status document: values in, values out.

``visible`` cuts a status down to the applications a caller may read; the other
functions shape it for pages (the fleet, one application, executions). Every
value stays as it came (from specs, Git and clouds): the templates escape it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.core import access, model

CONDITION_ORDER = ("Stalled", "Paused", "Reconciling", "Ready")
"""The condition shown for an application: the first of these that holds."""



# ---------------------------------------------------------------------------- filtering


def visible(status: Mapping[str, Any], identity: access.Identity) -> dict[str, Any]:
    """The status with only what ``identity`` may read; fleet-wide facts (commit, freeze, unreadable regions)
    stay for every reader."""
    def app_ok(name: str) -> bool:
        return identity.can(access.Scope.READ, name)

    def key_ok(item: Mapping[str, Any]) -> bool:
        return app_ok(access.application_of_key(str(item.get("key", ""))))

    out = dict(status)
    apps = {n: a for n, a in (status.get("applications") or {}).items() if app_ok(n)}
    out["applications"] = apps
    files = {a.get("file") for a in apps.values()}
    everything = identity.can_everywhere(access.Scope.READ)
    for name in ("changes", "held"):
        out[name] = [c for c in status.get(name) or () if key_ok(c)]
    out["skipped"] = [s for s in status.get("skipped") or () if app_ok(str(s.get("application", "")))]
    out["drift"] = [k for k in status.get("drift") or () if app_ok(access.application_of_key(str(k)))]
    out["problems"] = [p for p in status.get("problems") or () if everything or str(p).split(":", 1)[0] in files]
    out["server_groups"] = [g for g in status.get("server_groups") or () if app_ok(str(g.get("application", "")))]
    out["executions"] = [e for e in status.get("executions") or () if app_ok(str(e.get("application", "")))]
    out["paused"] = {t: p for t, p in (status.get("paused") or {}).items() if app_ok(access.application_of(t))}
    out["resources"] = [r for r in status.get("resources") or ()
                        if any(app_ok(str(a)) for a in r.get("applications") or ())]
    for name in ("resource_changes", "resource_skipped", "resource_held"):
        out[name] = [c for c in status.get(name) or () if app_ok(str(c.get("application", "")))]
    return out


def visible_rows(rows: Iterable[Mapping[str, Any]], identity: access.Identity) -> list[dict[str, Any]]:
    """History events and executions the caller may read; fleet-wide events (no application) are shown."""
    return [dict(r) for r in rows
            if not r.get("application") or identity.can(access.Scope.READ, str(r["application"]))]


# ---------------------------------------------------------------------------- the fleet


@dataclass(frozen=True, slots=True)
class AppRow:
    name: str
    condition: str
    reason: str
    message: str
    owner: str
    criticality: str
    commit: str
    clusters: int
    serving: int  # enabled server groups
    pending_approvals: int


def condition_of(name: str, app: Mapping[str, Any], status: Mapping[str, Any]) -> tuple[str, str, str]:
    """(condition, reason, message) of one application."""
    conds = list(app.get("conditions") or ())
    paused = status.get("paused") or {}
    hits = [t for t in paused if t == name or access.application_of(t) == name]
    if hits:
        p = paused[hits[0]]
        conds.append({"type": "Paused", "reason": "Paused", "message": f"{', '.join(sorted(hits))} paused by "
                      f"{p.get('by', '?')}" + (f": {p['reason']}" if p.get("reason") else "")})
    for kind in CONDITION_ORDER:
        for c in conds:
            if c.get("type") == kind:
                return kind, str(c.get("reason", "")), str(c.get("message", ""))
    return "Unknown", "", "no pass has judged this application yet"


def fleet(status: Mapping[str, Any]) -> list[AppRow]:
    groups = status.get("server_groups") or ()
    pending = pending_approvals(status)
    rows: list[AppRow] = []
    for name, app in sorted((status.get("applications") or {}).items()):
        mine = [g for g in groups if g.get("application") == name]
        condition, reason, message = condition_of(name, app, status)
        newest = max(mine, key=lambda g: float(g.get("created_at") or 0), default=None)
        commit = str((newest or {}).get("commit") or status.get("commit") or "")
        rows.append(AppRow(
            name=name, condition=condition, reason=reason, message=message, owner=str(app.get("owner", "")),
            criticality=str(app.get("criticality", "")), commit=commit,
            clusters=len(set(app.get("clusters") or ()) | {str(g.get("cluster")) for g in mine}),
            serving=sum(1 for g in mine if g.get("enabled")),
            pending_approvals=sum(1 for p in pending if p["application"] == name),
        ))
    return rows


def pending_approvals(status: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Changes of the last pass that wait for an approval (the policy said ``approve`` and they are held)."""
    held = {h.get("change_id"): h for h in status.get("held") or ()}
    out = []
    for c in status.get("changes") or ():
        h = held.get(c.get("change_id"))
        if c.get("verdict") == "approve" and h is not None and h.get("kind") == model.Hold.APPROVAL.value:
            key = str(c.get("key", ""))
            parts = key.split("/")
            out.append({"change_id": c["change_id"], "key": key, "action": c.get("action", ""),
                        "reason": c.get("reason", ""), "why": h.get("why", ""),
                        "application": access.application_of_key(key),
                        "cluster": parts[-1], "region": parts[2] if len(parts) == 4 else ""})
    reasons = {c.get("change_id"): c.get("reason", "") for c in status.get("resource_changes") or ()}
    for h in status.get("resource_held") or ():  # a narrowed ingress: approved like a cluster change
        if h.get("kind") == model.Hold.APPROVAL.value:
            parts = str(h.get("key", "")).split("/")
            out.append({"change_id": h["change_id"], "key": h.get("key", ""), "action": h.get("action", ""),
                        "reason": reasons.get(h["change_id"], ""), "why": h.get("why", ""),
                        "application": h.get("application", ""), "cluster": parts[-1],
                        "region": parts[2] if len(parts) == 4 else ""})
    return out


# ---------------------------------------------------------------------------- one application


@dataclass(frozen=True, slots=True)
class Location:
    provider: str
    account: str
    region: str
    groups: tuple[dict[str, Any], ...]  # newest first


@dataclass(frozen=True, slots=True)
class ClusterView:
    name: str
    stack: str
    detail: str
    desired: bool  # in Git at the commit in force
    paused: bool
    locations: tuple[Location, ...]
    regions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AppView:
    name: str
    app: Mapping[str, Any]
    condition: str
    reason: str
    message: str
    conditions: tuple[Mapping[str, Any], ...]
    clusters: tuple[ClusterView, ...]
    load_balancers: tuple[str, ...]
    security_groups: tuple[str, ...]
    paused: bool
    pending: tuple[dict[str, Any], ...]
    held: tuple[dict[str, Any], ...] = field(default=())
    resources: tuple[Mapping[str, Any], ...] = field(default=())
    """Its load balancers and security groups (declared, or used by its groups), with groups and health."""


def application(status: Mapping[str, Any], name: str) -> AppView | None:
    apps = status.get("applications") or {}
    groups = [g for g in status.get("server_groups") or () if g.get("application") == name]
    if name not in apps and not groups:
        return None
    app = apps.get(name) or {"conditions": [], "clusters": []}
    paused = status.get("paused") or {}
    names = sorted(set(app.get("clusters") or ()) | {str(g.get("cluster")) for g in groups})
    clusters: list[ClusterView] = []
    for cname in names:
        mine = [g for g in groups if g.get("cluster") == cname]
        where: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for g in mine:
            where.setdefault((str(g.get("provider")), str(g.get("account")), str(g.get("region"))), []).append(g)
        locations = tuple(
            Location(p, a, r, tuple(sorted(gs, key=lambda g: (float(g.get("created_at") or 0),
                                                               str(g.get("server_group"))), reverse=True)))
            for (p, a, r), gs in sorted(where.items()))
        parts = cname.split("-", 2)
        clusters.append(ClusterView(
            name=cname, stack=parts[1] if len(parts) > 1 else "", detail=parts[2] if len(parts) > 2 else "",
            desired=cname in (app.get("clusters") or ()), paused=cname in paused,
            locations=locations, regions=tuple(sorted({loc.region for loc in locations}))))
    condition, reason, message = condition_of(name, app, status)
    lbs = sorted({lb for g in groups for lb in g.get("load_balancers") or ()})
    sgs = sorted({sg for g in groups for sg in g.get("security_groups") or ()})
    return AppView(
        name=name, app=app, condition=condition, reason=reason, message=message,
        conditions=tuple(app.get("conditions") or ()), clusters=tuple(clusters), load_balancers=tuple(lbs),
        security_groups=tuple(sgs), paused=name in paused,
        pending=tuple(p for p in pending_approvals(status) if p["application"] == name),
        held=tuple(h for h in status.get("held") or () if access.application_of_key(str(h.get("key", ""))) == name),
        resources=tuple(r for r in status.get("resources") or () if name in (r.get("applications") or ())),
    )


# ---------------------------------------------------------------------------- executions


def duration(start: float | None, end: float | None, now: float) -> float | None:
    if not start:
        return None
    return max((end or now) - start, 0.0)


def fmt_time(ts: Any) -> str:
    if not ts:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(ts)))


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"

"""The plan-JSON contract of DESIGN §5 (``reconciler plan --format json``, saved plans, the API): keys are only
ever added, never renamed or removed. User data appears only as a hash, secret-looking tag values hidden."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from reconciler import resource_render
from reconciler.core import escaping, jsontext, model, strategies
from reconciler.render import common


def render_json(plan: model.Plan, *, held: Iterable[tuple[model.Change, model.Held]] = (),
                skipped: Iterable[Any] = (), resource_held: Iterable[tuple[Any, model.Held]] = (),
                resource_skipped: Iterable[Any] = (), lazy: bool = False) -> dict[str, Any]:
    """The plan-JSON contract of DESIGN §5; keys are only ever added, never renamed or removed.

    ``held`` and ``skipped`` (from the engine's evaluation) say what would not run now and why.
    ``lazy``: the lists are ``jsontext.Items``, made while ``jsontext.pieces`` writes them (a fleet's
    plan is never held as dicts); for sequences ``held`` and ``skipped`` only.
    """
    seq = jsontext.Items if lazy else _each
    return {
        "plan_id": plan.plan_id,
        "commit": plan.commit,
        "base_commit": plan.base_commit,
        "verdict": plan.verdict.value,
        "live_fingerprint": plan.live_fingerprint,
        "summary": common.summary(plan),
        "problems": seq(_problem_json, plan.problems),
        "notices": seq(_problem_json, plan.notices),
        "plan_verdicts": seq(_verdict_json, plan.plan_verdicts),
        "changes": seq(_change_json, plan.changes),
        "held": seq(_held_json, held),
        "skipped": seq(_skipped_json, skipped),
        **resource_render.json_keys(plan, resource_held, resource_skipped, lazy=lazy),
    }


def _each(fn: Callable[[Any], Any], source: Iterable[Any]) -> list[Any]:
    return [fn(x) for x in source]


def _verdict_json(v: Any) -> dict[str, Any]:
    out: dict[str, Any] = v.as_dict()
    return out


def _held_json(item: tuple[model.Change, model.Held]) -> dict[str, Any]:
    c, h = item
    return {"change_id": c.change_id, "key": c.key, "kind": h.kind.value, "message": h.message,
            "waiting": list(c.waiting)}


def _skipped_json(s: Any) -> dict[str, Any]:
    return {"key": s.key, "application": s.application, "cluster": s.cluster, "kind": str(s.kind),
            "reason": s.reason}

def _problem_json(p: Any) -> dict[str, Any]:
    return {"file": p.file, "line": p.line, "field": p.field, "message": p.message}

def _change_json(c: model.Change) -> dict[str, Any]:
    desired: dict[str, Any] | None = None
    view = model.desired_view(c.desired)
    if view is not None or c.desired_server_group is not None:
        desired = {"server_group": c.desired_server_group, **(view or {})}
        if "tags" in desired:
            desired["tags"] = escaping.tag_view(desired["tags"].items())
    return {
        "change_id": c.change_id,
        "application": c.application,
        "cluster": c.cluster,
        "provider": c.provider,
        "account": c.account,
        "region": c.region,
        "action": c.action.value,
        "wave": c.wave,
        "reason": c.reason,
        "current": c.current.view() if c.current else None,
        "desired": desired,
        "steps": [{**s.as_dict(), "description": s.describe()} for s in c.steps],
        "verdicts": [v.as_dict() for v in c.verdicts],
        "verdict": c.verdict.value,
        "after": list(c.after),
        "waiting": list(c.waiting),
        "removal": c.removal.value if c.removal else None,
        "last_capacity": common.is_last_capacity(c),
        "strategy": strategies.view(c.desired.strategy) if c.desired is not None else None,
        "restore": [{"server_group": name, "capacity": cap.as_dict()} for name, cap in c.restore],
        "image_resolution": image_resolution(c),
    }


def image_resolution(c: model.Change) -> dict[str, Any] | None:
    """How the change's image was found when the spec gives a pattern: the pattern and what the region resolved."""
    spec = c.desired
    if spec is None or spec.image_pattern is None:
        return None
    img = spec.resolved(c.region)
    return {"pattern": spec.image_pattern.as_dict(), "image": img.id if img else None,
            "name": img.name if img else None, "created": img.created if img else None}

"""What every output format says the same way: the summary counts, the lines that explain a change (its
strategy, what it waits behind, whether it takes the last serving capacity) and the field-by-field diff with
secrets hidden. Pure functions of model values."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from reconciler import resource_render
from reconciler.core import escaping, model, strategies


def summary(plan: model.Plan) -> dict[str, int]:
    """Counts per action plus what a reviewer must act on; the same numbers in every format."""
    counts = Counter(c.action for c in plan.changes)
    out = {action.value: counts[action] for action in model.Action}
    out["need_approval"] = sum(1 for c in plan.changes if c.verdict is model.Verdict.APPROVE)
    out["denied"] = sum(1 for c in plan.changes if c.verdict is model.Verdict.DENY)
    return out

def summary_line(plan: model.Plan) -> str:
    s = summary(plan)
    return (
        f"Plan: {s['create']} to create, {s['replace']} to replace, {s['resize']} to resize, "
        f"{s['rollback']} to roll back, {s['destroy']} to destroy; {s['need_approval']} need approval, "
        f"{s['denied']} denied"
    ) + resource_render.summary_suffix(plan)

def strategy_line(c: model.Change) -> str:
    """``strategy: ...`` for previews of a change that deploys with something other than plain red/black."""
    if c.desired is None or c.action not in (model.Action.CREATE, model.Action.REPLACE, model.Action.ROLLBACK):
        return ""
    strategy = c.desired.strategy
    if strategy.type is model.StrategyType.RED_BLACK and not strategy.verify:
        return ""
    line = f"strategy: {strategies.describe(strategy)}"
    if strategy.type is model.StrategyType.ROLLING_RED_BLACK and not any(s.percent for s in c.steps):
        line += "; nothing else serves here, so the new group starts at full capacity"
    return line

def is_last_capacity(c: model.Change) -> bool:
    """A destroy that takes an application's last serving capacity in a region (it says so loudly)."""
    return c.action is model.Action.DESTROY and c.reason.startswith(LAST_CAPACITY)

LAST_CAPACITY = "LAST SERVING CAPACITY"

def after_line(c: model.Change) -> str:
    """``after: X, Y serve (waiting for Y)`` for previews: what this change is ordered behind."""
    if not c.after:
        return ""
    waiting = set(c.waiting)
    if c.action is model.Action.DESTROY:
        names = [f"{model.split_key(k)[3]} ({model.split_key(k)[0]}/{model.split_key(k)[1]})" for k in c.after]
        what = f"{', '.join(names)} serve(s) in {c.region}"
    else:
        names = [model.split_key(k)[2] for k in c.after]
        what = f"spec {c.spec_hash[:8]} succeeded in {', '.join(names)} (earlier waves)"
    pending = [model.split_key(k)[3] if c.action is model.Action.DESTROY else model.split_key(k)[2]
               for k in c.after if k in waiting]
    return f"after: {what}" + (f"; not yet: {', '.join(pending)}" if pending else "")

@dataclass(frozen=True, slots=True)
class FieldChange:
    """One reviewable field of a change: ``None`` means absent on that side."""

    field: str
    old: str | None
    new: str | None
    hidden: bool = False  # a secret: say whether it changed, never what it is

    @property
    def changed(self) -> bool:
        return self.old != self.new

def field_diff(c: model.Change) -> list[FieldChange]:
    """Live group (old) against desired spec (new), field by field; a destroy has no new side."""
    old = _fields(c.current.launch, c.current.capacity) if c.current else {}
    new = _fields(c.desired.launch, c.desired.capacity) if c.desired and c.action is not model.Action.DESTROY else {}
    out = []
    for key in dict.fromkeys([*old, *new]):
        a, b = old.get(key), new.get(key)
        hidden = key == "user_data" or (key.startswith("tags.") and escaping.is_secret_key(key[5:]))
        out.append(FieldChange(key, a, b, hidden))
    return out

def _fields(launch: model.LaunchSpec, cap: model.Capacity) -> dict[str, str]:
    out = {
        "image": launch.image,
        "instance_type": launch.instance_type,
        "capacity": f"min {cap.min}, desired {cap.desired}, max {cap.max}",
        "load_balancers": ", ".join(launch.load_balancers) or "(none)",
        "security_groups": ", ".join(launch.security_groups) or "(none)",
    }
    if launch.user_data:
        out["user_data"] = _digest(launch.user_data)
    for key, value in sorted(launch.tags):
        out[f"tags.{key}"] = _digest(value) if escaping.is_secret_key(key) else value
    return out

def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()

def diff_lines(c: model.Change) -> list[str]:
    """Unified-diff-like lines: context for unchanged fields, ``-``/``+`` for changes, ``!`` for hidden ones."""
    lines = []
    for f in field_diff(c):
        if f.hidden:
            if not f.changed:
                lines.append(f"  {f.field}: {escaping.HIDDEN}")
            elif f.old is None:
                lines.append(f"+ {f.field}: (set, hidden)")
            elif f.new is None:
                lines.append(f"- {f.field}: {escaping.HIDDEN}")
            else:
                lines.append(f"! {f.field}: (changed, hidden)")
        elif not f.changed:
            lines.append(f"  {f.field}: {f.old}")
        else:
            if f.old is not None:
                lines.append(f"- {f.field}: {f.old}")
            if f.new is not None:
                lines.append(f"+ {f.field}: {f.new}")
    return lines

def sorted_problems(problems: Iterable[Any]) -> list[Any]:
    return sorted(dict.fromkeys(problems), key=lambda p: (p.file, p.line, p.field))

def destroys(n: int) -> str:
    return "1 change destroys" if n == 1 else f"{n} changes destroy"

def count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")

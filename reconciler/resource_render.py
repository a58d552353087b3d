"""Resource changes (load balancers, security groups) in every plan format: pure, like ``render``.

Field diffs print as ``~ health_check.path: / -> /health``, rules as ``+ ingress tcp 443 from 0.0.0.0/0``
and ``- ingress ...`` lines; each change names the groups that use the resource.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from reconciler.core import escaping, jsontext, model
from reconciler.core.resources import ResourceAction, ResourceChange

_COLOR = {ResourceAction.CREATE: "32", ResourceAction.UPDATE: "33", ResourceAction.DESTROY: "31"}
_MARKS = {model.Verdict.ALLOW: "✅", model.Verdict.WARN: "⚠️", model.Verdict.APPROVE: "✋", model.Verdict.DENY: "⛔"}


def summary(plan: model.Plan) -> dict[str, int]:
    out = {a.value: sum(1 for c in plan.resource_changes if c.action is a) for a in ResourceAction}
    out["need_approval"] = sum(1 for c in plan.resource_changes if c.verdict is model.Verdict.APPROVE)
    out["denied"] = sum(1 for c in plan.resource_changes if c.verdict is model.Verdict.DENY)
    return out


def summary_suffix(plan: model.Plan) -> str:
    """Appended to the plan's summary line, only when it has resource changes."""
    if not plan.resource_changes:
        return ""
    s = summary(plan)
    return (f"; resources: {s['create']} to create, {s['update']} to update, {s['destroy']} to destroy"
            + (f", {s['need_approval']} need approval" if s["need_approval"] else "")
            + (f", {s['denied']} denied" if s["denied"] else ""))


def change_json(c: ResourceChange) -> dict[str, Any]:
    return {
        "change_id": c.change_id, "kind": c.kind.value, "name": c.name, "application": c.application,
        "provider": c.provider, "account": c.account, "region": c.region, "action": c.action.value,
        "reason": c.reason, "fields": [f.as_dict() for f in c.fields], "rules_added": list(c.rules_added),
        "rules_removed": list(c.rules_removed), "used_by": list(c.used_by), "narrows": list(c.narrows),
        "after": list(c.after), "spec_hash": c.spec_hash, "verdicts": [v.as_dict() for v in c.verdicts],
        "verdict": c.verdict.value,
    }


def json_keys(plan: model.Plan, held: Iterable[tuple[Any, model.Held]], skipped: Iterable[Any], *,
              lazy: bool = False) -> dict[str, Any]:
    """The keys the plan JSON gains for resources (all new; the cluster keys are untouched)."""
    seq: Callable[[Callable[[Any], Any], Iterable[Any]], Any] = (
        jsontext.Items if lazy else (lambda fn, source: [fn(x) for x in source]))
    return {
        "resource_changes": seq(change_json, plan.resource_changes),
        "resource_summary": summary(plan),
        "resource_held": seq(_held_json, held),
        "resource_skipped": seq(_skipped_json, skipped),
    }


def _held_json(item: tuple[Any, model.Held]) -> dict[str, Any]:
    c, h = item
    return {"change_id": c.change_id, "key": c.key, "kind": h.kind.value, "message": h.message}


def _skipped_json(s: Any) -> dict[str, Any]:
    return {"key": s.key, "application": s.application, "name": s.name, "kind": str(s.kind), "reason": s.reason}


def text_lines(plan: model.Plan, paint: Callable[[str, str], str]) -> list[str]:
    v_ = escaping.visible
    lines: list[str] = []
    for c in plan.resource_changes:
        lines += ["", paint(f"{c.action.value} {c.kind.label} {v_(c.name)}", "1;" + _COLOR[c.action])
                  + v_(f" {c.provider}/{c.account} {c.region} ({c.application})") + f"  (change {c.change_id})"]
        if c.reason:
            lines.append(f"    why: {v_(c.reason)}")
        if c.used_by:
            lines.append(f"    used by: {v_(', '.join(c.used_by))}")
        for row in c.diff_lines():
            lines.append("    " + paint(v_(row), {"+": "32", "-": "31", "~": "33"}[row[0]]))
        for v in c.verdicts:
            if v.verdict is not model.Verdict.ALLOW:
                lines.append(f"    {v.verdict.value.upper()} [{v_(v.policy)}] {v_(v.message)}")
    return lines


def notes_text(held: Iterable[tuple[ResourceChange, model.Held]], skipped: Iterable[Any]) -> list[str]:
    out = [escaping.visible(f"  held: {c.label} in {c.region}: {why}") for c, why in held]
    out += [escaping.visible(f"  skipped: {s.name} ({s.key}): {s.reason}") for s in skipped]
    return out


def markdown_section(plan: model.Plan) -> str:
    """One folded section listing every resource change, placed before the clusters (they run first)."""
    if not plan.resource_changes:
        return ""
    verdict = model.Verdict.strictest([c.verdict for c in plan.resource_changes])
    freed = " (destroys the clusters free: after them)" if any(c.after for c in plan.resource_changes) else ""
    out = [f"<details open><summary><b>Load balancers and security groups</b> · "
           f"{len(plan.resource_changes)} change(s), applied before the clusters{freed} · {_MARKS[verdict]} "
           f"{verdict.value}</summary>", ""]
    for c in plan.resource_changes:
        out.append(f"**{c.action.value} {c.kind.label} `{_md(c.name)}`** · {_md(c.provider)}/{_md(c.account)} · "
                   f"{_md(c.region)} · {_md(c.application)} · change `{c.change_id}` · {_md(c.reason)}")
        out.append("")
        if c.used_by:
            out += [f"_used by {_md(', '.join(c.used_by))}_", ""]
        diff = c.diff_lines()
        if diff:
            out += ["```diff", *(escaping.visible(d).replace("```", "`\u200b``") for d in diff), "```", ""]
        for v in c.verdicts:
            out.append(f"- {_MARKS[v.verdict]} `{_md(v.policy)}`: {_md(v.message)}")
        if c.verdicts:
            out.append("")
    out.append("</details>")
    return "\n".join(out) + "\n"


def notes_markdown(held: Iterable[tuple[ResourceChange, model.Held]], skipped: Iterable[Any]) -> list[str]:
    lines = [f"- ✋ {_md(c.label)} in {_md(c.region)}: {_md(str(why))}" for c, why in held]
    lines += [f"- ⏸ {_md(s.name)} ({_md(s.key)}): {_md(s.reason)}" for s in skipped]
    return lines


def _md(text: str) -> str:
    out = escaping.visible(text)
    for ch in "\\`*_[]<>|#":
        out = out.replace(ch, "\\" + ch)
    return out

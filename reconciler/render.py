"""Plans as text (terminals), JSON (the DESIGN §5 contract) and Markdown (pull-request comments). No I/O."""

from __future__ import annotations

from collections import Counter
from typing import Any

from reconciler import model

_MARK = {model.Verdict.ALLOW: "✅", model.Verdict.WARN: "⚠️", model.Verdict.APPROVE: "✋", model.Verdict.DENY: "⛔"}
_COLOR = {model.Action.CREATE: "32", model.Action.REPLACE: "33", model.Action.RESIZE: "36",
          model.Action.DESTROY: "31", model.Action.ROLLBACK: "35"}


def summary(plan: model.Plan) -> dict[str, int]:
    counts = Counter(c.action.value for c in plan.changes)
    return {
        "create": counts["create"], "replace": counts["replace"], "resize": counts["resize"],
        "rollback": counts["rollback"], "destroy": counts["destroy"],
        "need_approval": sum(1 for c in plan.changes if c.verdict is model.Verdict.APPROVE),
        "denied": sum(1 for c in plan.changes if c.verdict is model.Verdict.DENY),
    }


def summary_line(plan: model.Plan) -> str:
    s = summary(plan)
    return (f"Plan: {s['create']} to create, {s['replace']} to replace, {s['resize']} to resize, "
            f"{s['rollback']} to roll back, {s['destroy']} to destroy; {s['need_approval']} need approval, "
            f"{s['denied']} denied")


def render_json(plan: model.Plan) -> dict[str, Any]:
    return {
        "plan_id": plan.plan_id,
        "commit": plan.commit,
        "base_commit": plan.base_commit,
        "verdict": plan.verdict.value,
        "live_fingerprint": plan.live_fingerprint,
        "summary": summary(plan),
        "problems": [{"file": p.file, "line": p.line, "field": p.field, "message": p.message} for p in plan.problems],
        "plan_verdicts": [v.as_dict() for v in plan.plan_verdicts],
        "changes": [_change_json(c) for c in plan.changes],
    }


def _change_json(c: model.Change) -> dict[str, Any]:
    desired = model.desired_view(c.desired)
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
        "desired": {"server_group": c.desired_server_group, **(desired or {})} if c.desired_server_group else None,
        "steps": [{**s.as_dict(), "description": s.describe()} for s in c.steps],
        "verdicts": [v.as_dict() for v in c.verdicts],
        "verdict": c.verdict.value,
    }


def render_text(plan: model.Plan, *, color: bool) -> str:
    def paint(text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if color else text

    lines = [f"Plan {plan.plan_id} for commit {plan.commit[:8]}"
             + (f" (against {plan.base_commit[:8]})" if plan.base_commit else "")]
    if plan.problems:
        lines.append(paint(f"{len(plan.problems)} spec problem(s):", "31"))
        lines += [f"  {p}" for p in plan.problems]
    if not plan.changes:
        lines.append("No changes: live state matches the desired state.")
    for c in plan.changes:
        current = c.current.name if c.current else "-"
        target = c.desired_server_group or "-"
        where = f"{c.provider}/{c.account}/{c.region}"
        head = f"{c.action.value:<8} {c.application}/{c.cluster} {where}: {current} -> {target}"
        lines.append("")
        lines.append(paint(head, _COLOR[c.action]))
        if c.reason:
            lines.append(f"    why: {c.reason}")
        for i, s in enumerate(c.steps, 1):
            lines.append(f"    {i}. {s.describe()}")
        for v in c.verdicts:
            if v.verdict is not model.Verdict.ALLOW:
                lines.append(paint(f"    {v.verdict.value.upper()} [{v.policy}] {v.message}",
                                   "31" if v.verdict is model.Verdict.DENY else "33"))
    for v in plan.plan_verdicts:
        lines.append(f"{v.verdict.value.upper()} [{v.policy}] {v.message}")
    lines.append("")
    lines.append(summary_line(plan))
    return "\n".join(lines)


def render_markdown(plan: model.Plan, *, max_chars: int = 65536, title: str = "reconciler plan") -> list[str]:
    head = f"### {title}: `{plan.commit[:8]}`" + (f" (base `{plan.base_commit[:8]}`)" if plan.base_commit else "")
    body = [head, ""]
    if plan.problems:
        body += ["**Spec problems** (these applications are not planned):", "", "```"]
        body += [str(p) for p in plan.problems] + ["```", ""]
    if not plan.changes:
        body.append("No changes.")
    else:
        body += ["| application | cluster | account | region | action | server group | verdict |",
                 "|---|---|---|---|---|---|---|"]
        for c in plan.changes:
            body.append(f"| {c.application} | {c.cluster} | {c.provider}/{c.account} | {c.region} | {c.action.value} "
                        f"| {c.current.name if c.current else '-'} → {c.desired_server_group or '-'} "
                        f"| {_MARK[c.verdict]} {c.verdict.value} |")
    body += ["", summary_line(plan)]
    text = "\n".join(body)
    return [text[:max_chars]]


def render_problems(problems: Any) -> str:
    return "\n".join(str(p) for p in problems)

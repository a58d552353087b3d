"""The plan for terminals: only what changes and what is not simply allowed, ANSI colour only when asked, and
the ``file:line: field: message`` problem list of ``reconciler validate``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from reconciler import resource_render
from reconciler.core import escaping, model
from reconciler.render import common

_ACTION_COLOR = {
    model.Action.CREATE: "32",
    model.Action.REPLACE: "33",
    model.Action.RESIZE: "36",
    model.Action.DESTROY: "31",
    model.Action.ROLLBACK: "35",
}

_VERDICT_COLOR = {model.Verdict.ALLOW: "32", model.Verdict.WARN: "33", model.Verdict.APPROVE: "33",
                  model.Verdict.DENY: "1;31"}

def render_text(plan: model.Plan, *, color: bool) -> str:
    """For terminals: only what changes and what is not simply allowed; ANSI colour only when asked.

    Every value is printed through ``escaping.visible``: a newline or an ANSI escape in an image, a name or
    a message cannot start a line of its own or recolour the terminal.
    """
    v_ = escaping.visible

    def paint(text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if color else text

    lines = [f"reconciler plan {_commits(plan)} (plan {plan.plan_id}, verdict "
             + paint(plan.verdict.value, _VERDICT_COLOR[plan.verdict]) + ")"]
    if plan.problems:
        lines += ["", paint(f"{common.count(len(plan.problems), 'spec problem')}; these applications are not planned:",
                            "1;31")]
        lines += [f"  {p}" for p in common.sorted_problems(plan.problems)]
    if plan.notices:
        lines += ["", f"{common.count(len(plan.notices), 'file')} under the spec path not read:"]
        lines += [f"  {p}" for p in common.sorted_problems(plan.notices)]
    lines += [_text_verdict(v, paint) for v in plan.plan_verdicts]
    last = [c for c in plan.changes if common.is_last_capacity(c)]
    if last:
        lines += ["", paint(f"!! {common.destroys(len(last))} an application's LAST serving capacity in a region: "
                            + ", ".join(f"{c.application} in {c.region}" for c in last), "1;31")]
    if not plan.changes and not plan.resource_changes:
        lines += ["", "No changes: live state matches the desired state."]
    lines += resource_render.text_lines(plan, paint)
    for c in plan.changes:
        current = c.current.name if c.current else "-"
        target = c.desired_server_group or "-"
        lines.append("")
        lines.append(
            paint(f"{c.action.value} {v_(c.cluster)}", "1;" + _ACTION_COLOR[c.action])
            + v_(f" {c.provider}/{c.account} {c.region}: {current} -> {target}")
            + f"  (wave {c.wave + 1}, change {c.change_id})"
        )
        if c.reason:
            lines.append(f"    why: {v_(c.reason)}")
        if c.after:
            lines.append(f"    {v_(common.after_line(c))}")
        if common.strategy_line(c):
            lines.append(f"    {v_(common.strategy_line(c))}")
        for row in common.diff_lines(c):
            if row[0] != " ":
                lines.append("    " + paint(v_(row), {"+": "32", "-": "31", "!": "33"}[row[0]]))
        lines += [f"    {i}. {v_(s.describe())}" for i, s in enumerate(c.steps, 1)]
        lines += ["    " + _text_verdict(v, paint) for v in c.verdicts if v.verdict is not model.Verdict.ALLOW]
    lines += ["", common.summary_line(plan)]
    return "\n".join(lines) + "\n"

def _text_verdict(v: model.PolicyVerdict, paint: Callable[[str, str], str]) -> str:
    """``DENY [policy] message``: the form scripts and people grep for; allows are left out of terminals."""
    return (paint(f"{v.verdict.value.upper()} [{escaping.visible(v.policy)}]", _VERDICT_COLOR[v.verdict])
            + f" {escaping.visible(v.message)}")

def render_problems(problems: Iterable[Any]) -> str:
    """``file:line: field.path: message`` per problem, sorted by file and line, for ``reconciler validate``."""
    return "".join(f"{p}\n" for p in common.sorted_problems(problems))


def _commits(plan: model.Plan) -> str:
    """``1a2b3c4d -> 5e6f7a8b``, or ``live -> …`` for a plan against live state."""
    base = plan.base_commit[:8] if plan.base_commit else ""
    return f"{base or 'live'} -> {plan.commit[:8] or '?'}"

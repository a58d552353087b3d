"""Plans as text (terminals), JSON (the DESIGN §5 contract) and Markdown (pull-request comments). No I/O.

Secrets never leave this module: user data is shown only as "changed", and tag
values whose key looks secret are hidden.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from reconciler import model

MARKER = "<!-- reconciler-plan -->"
_MARK = {model.Verdict.ALLOW: "✅", model.Verdict.WARN: "⚠️", model.Verdict.APPROVE: "✋", model.Verdict.DENY: "⛔"}
_COLOR = {model.Action.CREATE: "32", model.Action.REPLACE: "33", model.Action.RESIZE: "36",
          model.Action.DESTROY: "31", model.Action.ROLLBACK: "35"}
_SECRET_KEY = re.compile(r"(?i)secret|password|token|credential|private")


# ---------------------------------------------------------------------------- summary


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


# ---------------------------------------------------------------------------- JSON


def render_json(plan: model.Plan) -> dict[str, Any]:
    """The plan-JSON contract of DESIGN §5 (keys are only ever added, never renamed)."""
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
    if desired is not None:
        desired["tags"] = _safe_tags(desired["tags"])
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


# ---------------------------------------------------------------------------- field diff


def field_diff(c: model.Change) -> list[tuple[str, str, str | None, str | None]]:
    """(marker, field, old, new) rows: ' ' unchanged, '-'/'+' changed; secrets hidden."""
    old = _fields(c.current.launch, c.current.capacity, False) if c.current else {}
    new = _fields(c.desired.launch, c.desired.capacity, c.desired.autoscaling) if c.desired else {}
    if c.action is model.Action.DESTROY:
        new = {}
    rows: list[tuple[str, str, str | None, str | None]] = []
    for key in dict.fromkeys([*old, *new]):
        a, b = old.get(key), new.get(key)
        if key == "user_data":
            if a != b:
                rows.append(("~", key, None, "(changed, hidden)" if a is not None and b is not None else "(hidden)"))
            continue
        if key == "tags" and a == b and c.current and c.desired and c.current.launch.tags != c.desired.launch.tags:
            rows.append(("~", key, None, f"{b} (a hidden value changed)"))
            continue
        if key == "autoscaling":
            if b == "true":
                rows.append((" ", key, None, "true (desired capacity belongs to the autoscaler)"))
            continue
        rows.append((" " if a == b else "±", key, a, b))
    return rows


def _fields(launch: model.LaunchSpec, cap: model.Capacity, autoscaling: bool) -> dict[str, str]:
    out = {
        "image": launch.image,
        "instance_type": launch.instance_type,
        "capacity": f"min {cap.min}, desired {cap.desired}, max {cap.max}",
        "load_balancers": ", ".join(launch.load_balancers) or "(none)",
        "security_groups": ", ".join(launch.security_groups) or "(none)",
        "tags": ", ".join(f"{k}={v}" for k, v in sorted(_safe_tags(dict(launch.tags)).items())) or "(none)",
        "autoscaling": "true" if autoscaling else "false",
    }
    if launch.user_data:
        out["user_data"] = _digest(launch.user_data)
    return out


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _safe_tags(tags: dict[str, str]) -> dict[str, str]:
    return {k: ("(hidden)" if _SECRET_KEY.search(k) else v) for k, v in tags.items()}


def _diff_block(c: model.Change) -> list[str]:
    lines = []
    for marker, key, a, b in field_diff(c):
        if marker == " ":
            lines.append(f"  {key}: {a}")
        elif marker == "~":
            lines.append(f"! {key}: {b}")
        else:
            if a is not None:
                lines.append(f"- {key}: {a}")
            if b is not None:
                lines.append(f"+ {key}: {b}")
    return lines


def _change_cell(c: model.Change, key: str) -> str:
    for marker, k, a, b in field_diff(c):
        if k == key:
            if marker == " ":
                return "—"
            if a is None:
                return f"`{b}`"
            if b is None:
                return f"~~`{a}`~~"
            return f"`{a}` → `{b}`"
    return "—"


# ---------------------------------------------------------------------------- text


def render_text(plan: model.Plan, *, color: bool) -> str:
    def paint(text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if color else text

    lines = [f"Plan {plan.plan_id} for commit {plan.commit[:8]}"
             + (f" (against {plan.base_commit[:8]})" if plan.base_commit else "")]
    if plan.problems:
        lines.append(paint(f"{len(plan.problems)} spec problem(s); those applications are not planned:", "31"))
        lines += [f"  {p}" for p in plan.problems]
    if not plan.changes:
        lines.append("No changes: live state matches the desired state.")
    for c in plan.changes:
        current = c.current.name if c.current else "-"
        target = c.desired_server_group or "-"
        where = f"{c.provider}/{c.account}/{c.region}"
        lines.append("")
        lines.append(paint(f"{c.action.value:<8} {c.application}/{c.cluster} {where}: {current} -> {target}",
                           _COLOR[c.action]) + f"  [{c.change_id}]")
        if c.reason:
            lines.append(f"    why: {c.reason}")
        for row in _diff_block(c):
            if row[0] in "+-!":
                lines.append("    " + paint(row, {"+": "32", "-": "31", "!": "33"}[row[0]]))
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


# ---------------------------------------------------------------------------- Markdown


def render_markdown(plan: model.Plan, *, max_chars: int = 65536, title: str = "reconciler plan") -> list[str]:
    """One comment, or numbered parts of at most ``max_chars`` that each stand alone."""
    clusters = _by_cluster(plan.changes)
    sections = [_section(changes) for changes in clusters]
    rows = [[_row(c) for c in changes] for changes in clusters]
    problems = _problems_block(plan.problems)
    whole = _assemble(plan, title, "", problems, [r for rs in rows for r in rs], sections)
    if len(whole) <= max_chars:
        return [whole]
    parts: list[tuple[list[str], list[str]]] = []
    cur_rows: list[str] = []
    cur_secs: list[str] = []
    budget = max_chars - len(_assemble(plan, title, "Part 99 of 99", problems, [], [])) - 200
    used = 0
    for r, sec in zip(rows, sections, strict=True):
        size = sum(len(x) + 1 for x in r) + len(sec) + 2
        if cur_secs and used + size > budget:
            parts.append((cur_rows, cur_secs))
            cur_rows, cur_secs, used = [], [], 0
            problems_here = ""
        cur_rows += r
        cur_secs.append(sec if size <= budget else _truncate(sec, budget - sum(len(x) + 1 for x in r)))
        used += min(size, budget)
    if cur_secs or not parts:
        parts.append((cur_rows, cur_secs))
    n = len(parts)
    out = []
    for i, (r, secs) in enumerate(parts, 1):
        problems_here = problems if i == 1 else ""
        out.append(_assemble(plan, title, f"Part {i} of {n}", problems_here, r, secs))
    return out


def _assemble(plan: model.Plan, title: str, part: str, problems: str, rows: list[str], sections: list[str]) -> str:
    commits = f"`{plan.base_commit[:8]}` → `{plan.commit[:8]}`" if plan.base_commit else f"`{plan.commit[:8]}`"
    head = [MARKER, f"### {title}: {commits}" + (f" — {part}" if part else "")]
    verdict = plan.verdict
    head.append(f"Overall verdict: {_MARK[verdict]} **{verdict.value}** · plan `{plan.plan_id}`")
    out = [*head, ""]
    if problems:
        out += [problems, ""]
    if not plan.changes:
        out.append("**No changes**: live state already matches the desired state." if not plan.problems
                   else "No changes for the applications that validate.")
    elif rows:
        out += ["| application | cluster | account | region | action | server group | image | capacity | verdict |",
                "|---|---|---|---|---|---|---|---|---|", *rows, ""]
        out += sections
    for v in plan.plan_verdicts:
        out.append(f"- {_MARK[v.verdict]} **{v.policy}**: {_md(v.message)}")
    out += ["", f"**{summary_line(plan)}**"]
    return "\n".join(out).rstrip() + "\n"


def _problems_block(problems: Iterable[Any]) -> str:
    problems = list(problems)
    if not problems:
        return ""
    lines = [f"#### ⛔ {len(problems)} spec problem(s): these applications are not planned", "", "```"]
    lines += [str(p) for p in problems]
    return "\n".join([*lines, "```"])


def _by_cluster(changes: Iterable[model.Change]) -> list[list[model.Change]]:
    groups: dict[tuple[str, str, str, str], list[model.Change]] = {}
    for c in changes:
        groups.setdefault((c.application, c.cluster, c.provider, c.account), []).append(c)
    return list(groups.values())


def _row(c: model.Change) -> str:
    current = c.current.name if c.current else "—"
    target = c.desired_server_group or "—"
    cells = [c.application, c.cluster, f"{c.provider}/{c.account}", c.region, f"**{c.action.value}**",
             f"{current} → {target}", _change_cell(c, "image"), _change_cell(c, "capacity"),
             f"{_MARK[c.verdict]} {c.verdict.value}"]
    return "| " + " | ".join(_md(x) for x in cells) + " |"


def _section(changes: list[model.Change]) -> str:
    first = changes[0]
    regions = ", ".join(c.region for c in changes)
    verdict = model.Verdict.strictest([c.verdict for c in changes])
    out = [f"<details><summary><b>{first.cluster}</b> ({first.provider}/{first.account}): "
           f"{first.action.value} in {regions} — {_MARK[verdict]} {verdict.value}</summary>", ""]
    diff = _diff_block(first)
    if diff:
        out += ["```diff", *diff, "```", ""]
    for c in changes:
        out.append(f"**{c.region}** (wave {c.wave + 1}, change `{c.change_id}`): {_md(c.reason)}")
        out.append("")
        out += [f"{i}. {_md(s.describe())}" for i, s in enumerate(c.steps, 1)]
        out.append("")
        for v in c.verdicts:
            flag = " **needs approval**" if v.verdict is model.Verdict.APPROVE else (
                " **denied**" if v.verdict is model.Verdict.DENY else "")
            out.append(f"- {_MARK[v.verdict]} `{v.policy}`{flag}: {_md(v.message)}")
        out.append("")
    out.append("</details>")
    return "\n".join(out) + "\n"


def _truncate(section: str, limit: int) -> str:
    note = "\n…(truncated to fit the comment limit; see the JSON plan)\n</details>\n"
    return section[: max(limit - len(note), 0)] + note


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def notes_markdown(held: Iterable[tuple[model.Change, str]], skipped: Iterable[Any]) -> str:
    """What was not planned or will not run now (paused, stalled, waiting), for the comment's end."""
    lines = [f"- ✋ {c.cluster} in {c.region}: {_md(why)}" for c, why in held]
    lines += [f"- ⏸ {s.cluster} ({s.key}): {_md(s.reason)}" for s in skipped]
    return ("#### Not applied now\n\n" + "\n".join(lines) + "\n") if lines else ""


def render_problems(problems: Iterable[Any]) -> str:
    return "\n".join(str(p) for p in problems)

"""The plan as pull-request comments: one comment, or numbered parts under the forge's size limit that each
stand alone (headline, verdict, alerts and summary repeated; a cluster never split between parts).

Every value goes through ``_text``, ``_md``, ``_code`` or ``_fence``, so nothing in a spec can open HTML,
close a code span or fence early, or add a line.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler import resource_render
from reconciler.core import errors, escaping, model
from reconciler.render import common

MARKER = "<!-- reconciler-plan -->"
"""First line of every Markdown part: CI finds its previous (sticky) comment by it."""

MARKS = {
    model.Verdict.ALLOW: "✅",
    model.Verdict.WARN: "⚠️",
    model.Verdict.APPROVE: "✋",
    model.Verdict.DENY: "⛔",
}

_FLAGS = {model.Verdict.APPROVE: "needs approval", model.Verdict.DENY: "denied"}

_PART_PLACEHOLDER = "Part 9999 of 9999"

@dataclass(frozen=True, slots=True)
class _Unit:
    """What must stay together in one comment: a cluster's table rows and its folded section."""

    rows: tuple[str, ...]
    section: str

    @property
    def size(self) -> int:
        return sum(len(r) + 1 for r in self.rows) + len(self.section) + 1

def render_markdown(
    plan: model.Plan, *, max_chars: int = 65536, title: str = "reconciler plan", notes: str = ""
) -> list[str]:
    """One pull-request comment, or numbered parts of at most ``max_chars`` that each stand alone.

    Every part repeats the headline, the overall verdict, plan-wide verdicts, the table header and
    the whole plan's summary line, so a reviewer can read any one of them. A cluster's rows and
    section are never split between parts; ``notes`` (held or skipped work) goes last.
    """
    if not plan.changes and not plan.problems and not plan.notices and not plan.resource_changes:
        return [_no_changes(plan, title, notes)]
    units = [_unit(changes) for changes in _by_cluster(plan.changes)]
    if plan.resource_changes:  # they run first, so they read first
        units.insert(0, _Unit((), resource_render.markdown_section(plan)))
    if notes:
        units.append(_Unit((), notes.rstrip("\n")))
    problems = _problems_block(plan.problems, max_chars // 2)
    frame = _frame(plan, title)
    whole = _compose(frame, "", problems, units)
    if len(whole) <= max_chars:
        return [whole]

    pointer = f"> ⛔ {common.count(len(plan.problems), 'spec problem')}: see part 1." if plan.problems else ""
    first_fixed = len(_compose(frame, _PART_PLACEHOLDER, problems, []))
    rest_fixed = len(_compose(frame, _PART_PLACEHOLDER, pointer, []))
    parts: list[list[_Unit]] = [[]]
    used = first_fixed
    for unit in units:
        budget = max_chars - (first_fixed if len(parts) == 1 else rest_fixed)
        if parts[-1] and used + unit.size > max_chars:
            parts.append([])
            used = rest_fixed
            budget = max_chars - rest_fixed
        fitted = _fit(unit, budget)
        parts[-1].append(fitted)
        used += fitted.size
    n = len(parts)
    return [
        _compose(frame, f"Part {i} of {n}", problems if i == 1 else pointer, part)
        for i, part in enumerate(parts, 1)
    ]

@dataclass(frozen=True, slots=True)
class _Frame:
    """What every part repeats, computed once per plan (a 10,000-cluster plan makes about 90 parts)."""

    headline: str
    overall: str
    alerts: tuple[str, ...]
    verdicts: tuple[str, ...]
    table: str
    footer: str

def _frame(plan: model.Plan, title: str) -> _Frame:
    verdict = plan.verdict
    clusters = len({(c.application, c.cluster, c.provider, c.account) for c in plan.changes})
    return _Frame(
        headline=f"### {_md(title)}: {_commits(plan)}",
        overall=f"{MARKS[verdict]} **{verdict.value}** · {common.count(len(plan.changes), 'change')} in "
        f"{common.count(clusters, 'cluster')}"
        + (f" · {common.count(len(plan.resource_changes), 'resource change')}" if plan.resource_changes else "")
        + f" · plan `{plan.plan_id}`",
        alerts=_alerts(plan),
        verdicts=tuple(_verdict_line(v) for v in plan.plan_verdicts),
        table="| application | cluster | provider/account | region | action | server group | image "
        "| capacity (min/desired/max) | verdict |\n|---|---|---|---|---|---|---|---|---|"
        if plan.changes
        else "No cluster changes.\n" if plan.resource_changes
        else "No changes for the applications that validate.\n",
        footer=f"**{common.summary_line(plan)}**",
    )

def _alerts(plan: model.Plan) -> tuple[str, ...]:
    """What no reviewer may miss, repeated at the top of every part."""
    out = []
    last = [c for c in plan.changes if common.is_last_capacity(c)]
    if last:
        where = ", ".join(f"{_md(c.application)} in {_md(c.region)}" for c in last)
        out.append(f"> 🛑 **{common.destroys(len(last))} an application's LAST serving capacity in a region**: {where}")
    if plan.notices:
        files = ", ".join(_code(p.file) for p in common.sorted_problems(plan.notices)[:5])
        more = " …" if len(plan.notices) > 5 else ""
        out.append(f"> ⚠️ {common.count(len(plan.notices), 'file')} under the spec path not read (only .yaml and .yml "
                   f"are specs): {files}{more}")
    return tuple(out)

def _compose(frame: _Frame, part: str, problems: str, units: Sequence[_Unit]) -> str:
    """One comment; its length is the fixed blocks plus ``unit.size`` per unit, which the packer relies on."""
    blocks = [MARKER, frame.headline + (f" — {part}" if part else ""), frame.overall, ""]
    if frame.alerts:
        blocks += [*frame.alerts, ""]
    if problems:
        blocks += [problems, ""]
    if frame.verdicts:
        blocks += [*frame.verdicts, ""]
    blocks.append(frame.table)
    for u in units:
        blocks += u.rows
    blocks.append("")
    blocks += [u.section for u in units]
    blocks.append(frame.footer)
    return "\n".join(blocks) + "\n"

def _fit(unit: _Unit, budget: int) -> _Unit:
    """A unit that alone exceeds a part: fold its section to a pointer to the JSON plan, then drop rows."""
    if unit.size <= budget:
        return unit
    if not unit.rows:  # the notes
        tail = "\n… (truncated: see `reconciler status`)"
        if budget > len(tail) + 1:
            return _Unit((), unit.section[: budget - len(tail) - 1].rstrip() + tail)
    else:
        head = unit.section.split("\n", 1)[0]
        note = "Too long for one comment: see `reconciler plan --format json` for this cluster's steps."
        folded = _Unit(unit.rows, f"{head}\n\n{note}\n</details>\n")
        if folded.size <= budget:
            return folded
        for kept in range(len(unit.rows) - 1, 0, -1):
            omitted = f"| … | {len(unit.rows) - kept} more row(s) in the JSON plan | | | | | | | |"
            trimmed = _Unit((*unit.rows[:kept], omitted), folded.section)
            if trimmed.size <= budget:
                return trimmed
    raise errors.ReconcilerError(
        f"the comment limit leaves {budget} characters after the headline, too few for one table row; "
        "raise the limit"
    )

def _no_changes(plan: model.Plan, title: str, notes: str) -> str:
    blocks = [MARKER, f"### {_md(title)}: {_commits(plan)}", "",
              "**No changes**: live state already matches the desired state."]
    if plan.plan_verdicts:
        blocks += ["", *[_verdict_line(v) for v in plan.plan_verdicts]]
    if notes:
        blocks += ["", notes.rstrip("\n")]
    return "\n".join(blocks) + "\n"

def _problems_block(problems: Sequence[Any], limit: int) -> str:
    if not problems:
        return ""
    ordered = [str(p) for p in common.sorted_problems(problems)]
    head = f"#### ⛔ {common.count(len(problems), 'spec problem')}: these applications are not planned until fixed"
    shown: list[str] = []
    used = len(head) + 40
    for line in ordered:
        if used + len(line) + 1 > limit:
            break
        shown.append(line)
        used += len(line) + 1
    tail = [f"… and {len(ordered) - len(shown)} more: run `reconciler validate`"] if len(shown) < len(ordered) else []
    return "\n".join([head, "", *_fence(shown, "text"), *tail])

def _by_cluster(changes: Iterable[model.Change]) -> list[list[model.Change]]:
    groups: dict[tuple[str, str, str, str], list[model.Change]] = {}
    for c in changes:
        groups.setdefault((c.application, c.cluster, c.provider, c.account), []).append(c)
    return list(groups.values())

def _unit(changes: list[model.Change]) -> _Unit:
    return _Unit(tuple(_row(c) for c in changes), _section(changes))

def _row(c: model.Change) -> str:
    current = c.current.name if c.current else "—"
    target = c.desired_server_group or "—"
    cells = [
        _text(c.application), _text(c.cluster), _text(f"{c.provider}/{c.account}"), _text(c.region),
        f"**{c.action.value}**", _text(f"{current} → {target}"), _cell_change(c, "image"),
        _cell_change(c, "capacity", short=True), f"{MARKS[c.verdict]} {c.verdict.value}",
    ]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

def _section(changes: list[model.Change]) -> str:
    first = changes[0]
    verdict = model.Verdict.strictest([c.verdict for c in changes])
    by_action: dict[model.Action, dict[str, None]] = {}
    for c in changes:
        by_action.setdefault(c.action, {})[c.region] = None
    what = "; ".join(f"{a.value} in {', '.join(regions)}" for a, regions in by_action.items())
    out = [
        f"<details><summary><b>{_html(first.cluster)}</b> · {_html(first.provider)}/"
        f"{_html(first.account)} · {_html(what)} · {MARKS[verdict]} {verdict.value}</summary>",
        "",
    ]
    diffs = [common.diff_lines(c) for c in changes]
    shared = all(d == diffs[0] for d in diffs)
    if shared and diffs[0]:
        out += [*_fence(diffs[0], "diff"), ""]
    if any(c.desired is not None and c.desired.autoscaling for c in changes):
        out += ["_Desired capacity belongs to the autoscaler: its drift is not a change._", ""]
    for c, diff in zip(changes, diffs, strict=True):
        moves = f"{c.current.name if c.current else '—'} → {c.desired_server_group or '—'}"
        out.append(f"**{_md(c.region)}** · {c.action.value} {_md(moves)} · wave {c.wave + 1} · change "
                   f"`{c.change_id}`" + (f" · {_md(c.reason)}" if c.reason else ""))
        out.append("")
        if c.after:
            out += [f"_{_md(common.after_line(c))}_", ""]
        if common.strategy_line(c):
            out += [f"_{_md(common.strategy_line(c))}_", ""]
        if not shared and diff:
            out += [*_fence(diff, "diff"), ""]
        if c.steps:
            out += [f"{i}. {_md(s.describe())}" for i, s in enumerate(c.steps, 1)]
            out.append("")
        if c.verdicts:
            out += [_verdict_line(v) for v in c.verdicts]
            out.append("")
    out.append("</details>")
    return "\n".join(out) + "\n"

def _verdict_line(v: model.PolicyVerdict) -> str:
    flag = f" **{_FLAGS[v.verdict]}**" if v.verdict in _FLAGS else ""
    return f"- {MARKS[v.verdict]} {_code(v.policy)}{flag}: {_md(v.message)}"

def notes_markdown(held: Iterable[tuple[model.Change, Any]], skipped: Iterable[Any],
                   resource_held: Iterable[tuple[Any, Any]] = (), resource_skipped: Iterable[Any] = ()) -> str:
    """What was planned but will not run now (held, paused, stalled), for the last part's end."""
    lines = [f"- ✋ {_md(c.cluster)} in {_md(c.region)}: {_md(str(why))}" for c, why in held]
    lines += [f"- ⏸ {_md(s.cluster)} ({_md(s.key)}): {_md(s.reason)}" for s in skipped]
    lines += resource_render.notes_markdown(resource_held, resource_skipped)
    return ("#### Not applied now\n\n" + "\n".join(lines) + "\n") if lines else ""

def _cell_change(c: model.Change, key: str, short: bool = False) -> str:
    f = next((f for f in common.field_diff(c) if f.field == key), None)
    if f is None or not f.changed:
        return "—"
    old, new = (_short_capacity(f.old), _short_capacity(f.new)) if short else (f.old, f.new)
    if old is None:
        return _code(new or "")
    if new is None:
        return f"~~{_code(old)}~~"
    return f"{_code(old)} → {_code(new)}"

def _short_capacity(text: str | None) -> str | None:
    """``min 1, desired 2, max 6`` as ``1/2/6`` for the narrow table column."""
    return "/".join(re.findall(r"\d+", text)) if text is not None else None

def _html(text: str) -> str:
    return html.escape(escaping.visible(text))

def _text(text: str) -> str:
    """Plain text that cannot open HTML (a stray ``<details>`` would swallow the comment), on one line:
    control characters are shown as escapes."""
    return html.escape(escaping.visible(text), quote=False)

def _md(text: str) -> str:
    """Plain text safe inside Markdown prose and table cells."""
    return _text(text).replace("|", "\\|")

def _code(text: str) -> str:
    """An inline code span that survives backticks and newlines in the value."""
    text = escaping.visible(text)
    ticks = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"

def _fence(lines: list[str], lang: str) -> list[str]:
    """A fenced block no value can close early: the fence is longer than any backtick run inside, and no
    value can add a line (control characters are shown as escapes)."""
    lines = [escaping.visible(line) for line in lines]
    longest = max((len(run) for line in lines for run in re.findall(r"`+", line)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}{lang}", *lines, fence]


def _commits(plan: model.Plan) -> str:
    base = plan.base_commit[:8] if plan.base_commit else ""
    return f"{_code(base) if base else 'live state'} → {_code(plan.commit[:8] or '?')}"

"""Plans for people and tools: text for terminals, the DESIGN §5 JSON contract, Markdown for pull requests.

Pure functions of ``model.Plan`` values (no I/O, no clock) so the CLI, the daemon and the tests render
identically. Secrets never leave this module: user data appears only as a hash (JSON) or as "hidden"
(text, Markdown), and the values of tags whose key looks secret are hidden everywhere.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler import resource_render
from reconciler.core import errors, escaping, jsontext, model, strategies

MARKER = "<!-- reconciler-plan -->"
"""First line of every Markdown part: CI finds its previous (sticky) comment by it."""

MARKS = {
    model.Verdict.ALLOW: "✅",
    model.Verdict.WARN: "⚠️",
    model.Verdict.APPROVE: "✋",
    model.Verdict.DENY: "⛔",
}
_FLAGS = {model.Verdict.APPROVE: "needs approval", model.Verdict.DENY: "denied"}
_ACTION_COLOR = {
    model.Action.CREATE: "32",
    model.Action.REPLACE: "33",
    model.Action.RESIZE: "36",
    model.Action.DESTROY: "31",
    model.Action.ROLLBACK: "35",
}
_VERDICT_COLOR = {model.Verdict.ALLOW: "32", model.Verdict.WARN: "33", model.Verdict.APPROVE: "33",
                  model.Verdict.DENY: "1;31"}
_PART_PLACEHOLDER = "Part 9999 of 9999"


# ---------------------------------------------------------------------------- summary


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


# ---------------------------------------------------------------------------- JSON


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
        "summary": summary(plan),
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
        "last_capacity": is_last_capacity(c),
        "strategy": strategies.view(c.desired.strategy) if c.desired is not None else None,
        "restore": [{"server_group": name, "capacity": cap.as_dict()} for name, cap in c.restore],
    }


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


# ---------------------------------------------------------------------------- field diff


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


def _cell_change(c: model.Change, key: str, short: bool = False) -> str:
    f = next((f for f in field_diff(c) if f.field == key), None)
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


# ---------------------------------------------------------------------------- text


def render_text(plan: model.Plan, *, color: bool) -> str:
    """For terminals: only what changes and what is not simply allowed; ANSI colour only when asked.

    Every value is printed through ``escaping.visible``: a newline or an ANSI escape in an image, a name or
    a message cannot start a line of its own or recolour the terminal.
    """
    v_ = escaping.visible

    def paint(text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if color else text

    lines = [f"reconciler plan {_commits(plan, plain=True)} (plan {plan.plan_id}, verdict "
             + paint(plan.verdict.value, _VERDICT_COLOR[plan.verdict]) + ")"]
    if plan.problems:
        lines += ["", paint(f"{_count(len(plan.problems), 'spec problem')}; these applications are not planned:",
                            "1;31")]
        lines += [f"  {p}" for p in _sorted_problems(plan.problems)]
    if plan.notices:
        lines += ["", f"{_count(len(plan.notices), 'file')} under the spec path not read:"]
        lines += [f"  {p}" for p in _sorted_problems(plan.notices)]
    lines += [_text_verdict(v, paint) for v in plan.plan_verdicts]
    last = [c for c in plan.changes if is_last_capacity(c)]
    if last:
        lines += ["", paint(f"!! {_destroys(len(last))} an application's LAST serving capacity in a region: "
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
            lines.append(f"    {v_(after_line(c))}")
        if strategy_line(c):
            lines.append(f"    {v_(strategy_line(c))}")
        for row in diff_lines(c):
            if row[0] != " ":
                lines.append("    " + paint(v_(row), {"+": "32", "-": "31", "!": "33"}[row[0]]))
        lines += [f"    {i}. {v_(s.describe())}" for i, s in enumerate(c.steps, 1)]
        lines += ["    " + _text_verdict(v, paint) for v in c.verdicts if v.verdict is not model.Verdict.ALLOW]
    lines += ["", summary_line(plan)]
    return "\n".join(lines) + "\n"


def _text_verdict(v: model.PolicyVerdict, paint: Callable[[str, str], str]) -> str:
    """``DENY [policy] message``: the form scripts and people grep for; allows are left out of terminals."""
    return (paint(f"{v.verdict.value.upper()} [{escaping.visible(v.policy)}]", _VERDICT_COLOR[v.verdict])
            + f" {escaping.visible(v.message)}")


def render_problems(problems: Iterable[Any]) -> str:
    """``file:line: field.path: message`` per problem, sorted by file and line, for ``reconciler validate``."""
    return "".join(f"{p}\n" for p in _sorted_problems(problems))


def _sorted_problems(problems: Iterable[Any]) -> list[Any]:
    return sorted(dict.fromkeys(problems), key=lambda p: (p.file, p.line, p.field))


# ---------------------------------------------------------------------------- Markdown


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

    pointer = f"> ⛔ {_count(len(plan.problems), 'spec problem')}: see part 1." if plan.problems else ""
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
        headline=f"### {_md(title)}: {_commits(plan, plain=False)}",
        overall=f"{MARKS[verdict]} **{verdict.value}** · {_count(len(plan.changes), 'change')} in "
        f"{_count(clusters, 'cluster')}"
        + (f" · {_count(len(plan.resource_changes), 'resource change')}" if plan.resource_changes else "")
        + f" · plan `{plan.plan_id}`",
        alerts=_alerts(plan),
        verdicts=tuple(_verdict_line(v) for v in plan.plan_verdicts),
        table="| application | cluster | provider/account | region | action | server group | image "
        "| capacity (min/desired/max) | verdict |\n|---|---|---|---|---|---|---|---|---|"
        if plan.changes
        else "No cluster changes.\n" if plan.resource_changes
        else "No changes for the applications that validate.\n",
        footer=f"**{summary_line(plan)}**",
    )


def _alerts(plan: model.Plan) -> tuple[str, ...]:
    """What no reviewer may miss, repeated at the top of every part."""
    out = []
    last = [c for c in plan.changes if is_last_capacity(c)]
    if last:
        where = ", ".join(f"{_md(c.application)} in {_md(c.region)}" for c in last)
        out.append(f"> 🛑 **{_destroys(len(last))} an application's LAST serving capacity in a region**: {where}")
    if plan.notices:
        files = ", ".join(_code(p.file) for p in _sorted_problems(plan.notices)[:5])
        more = " …" if len(plan.notices) > 5 else ""
        out.append(f"> ⚠️ {_count(len(plan.notices), 'file')} under the spec path not read (only .yaml and .yml "
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
    blocks = [MARKER, f"### {_md(title)}: {_commits(plan, plain=False)}", "",
              "**No changes**: live state already matches the desired state."]
    if plan.plan_verdicts:
        blocks += ["", *[_verdict_line(v) for v in plan.plan_verdicts]]
    if notes:
        blocks += ["", notes.rstrip("\n")]
    return "\n".join(blocks) + "\n"


def _problems_block(problems: Sequence[Any], limit: int) -> str:
    if not problems:
        return ""
    ordered = [str(p) for p in _sorted_problems(problems)]
    head = f"#### ⛔ {_count(len(problems), 'spec problem')}: these applications are not planned until fixed"
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
    diffs = [diff_lines(c) for c in changes]
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
            out += [f"_{_md(after_line(c))}_", ""]
        if strategy_line(c):
            out += [f"_{_md(strategy_line(c))}_", ""]
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


# ---------------------------------------------------------------------------- small helpers


def _commits(plan: model.Plan, *, plain: bool) -> str:
    base = plan.base_commit[:8] if plan.base_commit else ""
    head = plan.commit[:8] or "?"
    if plain:
        return f"{base or 'live'} -> {head}"
    return f"{_code(base) if base else 'live state'} → {_code(head)}"


def _destroys(n: int) -> str:
    return "1 change destroys" if n == 1 else f"{n} changes destroy"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


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

"""Canary: a small canary group of the new version and a baseline group of the serving version, both in
traffic beside the serving group, judged by metric analysis; on pass the canary grows and takes over as
``canary.then`` says (red/black, highlander, or rolling red/black: the canary is then the new group of
``rolling.steps``, the serving groups' original capacities in the change's ``restore``), on fail both
go and the serving group was never touched.

Convergent like the other strategies: live state says which groups exist, and the store's progress
record (``Progress``, written by the executor before the first step, dropped when the deployment ends)
says which group is the baseline, when the analysis began and whether it passed, so a deployment
interrupted at any step is planned again from where it stands (docs/strategies.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from reconciler.core import canary as canary_mod
from reconciler.core import model
from reconciler.core.model import Action, Capacity, ServerGroup, Step, StepKind
from reconciler.core.strategies import retire, rolling

PREFIX = "canary/"
"""Store keys ``canary/<cluster key>`` -> the progress of that cluster's canary."""


def progress_key(cluster_key: str) -> str:
    return PREFIX + cluster_key


@dataclass(frozen=True, slots=True)
class Progress:
    """A canary deployment in progress, as the store keeps it."""

    canary: str
    baseline: str  # empty: no baseline (a new cluster)
    spec_hash: str
    started: float | None = None  # when the analysis began (None: not yet)
    passed: bool = False
    approved: bool = False  # pause_for_approval: the manual judgment step ran

    def as_dict(self) -> dict[str, object]:
        return {"canary": self.canary, "baseline": self.baseline, "spec_hash": self.spec_hash,
                "started": self.started, "passed": self.passed, "approved": self.approved}

    def done(self, canary: canary_mod.Canary) -> bool:
        """Whether a change that ended well ended the deployment (not at its manual judgment)."""
        return not canary.pause_for_approval or self.approved


def parse(records: Mapping[str, object]) -> dict[str, Progress]:
    """Store records as progress by store key; a malformed record is ignored (the canary then starts over)."""
    out: dict[str, Progress] = {}
    for key, v in records.items():
        if isinstance(v, dict) and all(isinstance(v.get(k), str) for k in ("canary", "baseline", "spec_hash")):
            started = v.get("started")
            out[key] = Progress(v["canary"], v["baseline"], v["spec_hash"],
                                float(started) if isinstance(started, int | float) else None,
                                v.get("passed") is True, v.get("approved") is True)
    return out


def baseline_of(change: model.Change) -> str:
    """The baseline group a canary change creates, analyzes against or removes (empty: none)."""
    for s in change.steps:
        if s.kind is StepKind.BASELINE:
            return s.server_group
        if s.kind is StepKind.ANALYZE:
            return s.reason
    return next((s.server_group for s in reversed(change.steps) if s.reason == REMOVE_BASELINE), "")


REMOVE_BASELINE = "canary baseline no longer needed"

Planned = tuple[Action, list[Step], ServerGroup | None, str, str, tuple[tuple[str, Capacity], ...]]
"""action, steps, current, target, reason, restore (``then: rolling_red_black``: the serving groups'
original capacities)."""
NextName = Callable[[str, Iterable[ServerGroup]], str]


def plan(spec: model.ClusterSpec, owned: Sequence[ServerGroup], groups: Sequence[ServerGroup], spec_hash: str,
         progress: Progress | None, wait: Step, next_name: NextName,
         target_capacity: Callable[[Sequence[ServerGroup]], Capacity], cluster_key: str = "",
         origins: Mapping[str, Capacity] | None = None, judgment: rolling.Judgment | None = None) -> Planned | None:
    """The canary change of one cluster in one region; None where the generic planner decides (the spec
    equals a group that exists, with no canary of it in progress: finish, or roll back to it).

    With ``then: rolling_red_black``, ``origins`` and ``judgment`` are the rolling deployment's records
    (``rolling.origin_key``, ``rolling.judgment_key``) of ``cluster_key``."""
    canary = spec.strategy.canary
    assert canary is not None
    by_name = {g.name: g for g in owned}

    def rolls(new: str, serving: Sequence[ServerGroup]) -> Rolls | None:
        if canary.then != model.StrategyType.ROLLING_RED_BLACK.value or not serving:
            return None
        return Rolls(rolling.restore_of(cluster_key, new, serving, origins or {}), judgment)

    rec = progress if progress is not None and progress.spec_hash == spec_hash \
        and progress.canary in by_name else None
    if rec is not None:
        new = by_name[rec.canary]
        rest = [g for g in owned if g.name not in (rec.canary, rec.baseline)]
        serving = [g for g in rest if g.enabled]
        then = rolls(new.name, serving)
        steps = _steps(spec, new.name, new, rec.baseline, by_name.get(rec.baseline) if rec.baseline else None,
                       serving[0] if serving else None, rec.passed, serving, rest, wait,
                       target_capacity(serving), approved=rec.approved, rolls_on=then)
        what = "analysis passed; finish" if rec.passed else "resume"
        return Action.REPLACE, steps, serving[0] if serving else None, new.name, \
            f"{what}: canary deployment of {new.name}", then.restore if then else ()
    stale = progress.baseline if progress is not None and progress.baseline in by_name else ""
    rest = [g for g in owned if g.name != stale]
    if any(g.spec_hash == spec_hash for g in rest):
        return None
    serving = [g for g in rest if g.enabled]
    name = next_name(spec.name, groups)
    cleanup = [Step(StepKind.DISABLE, stale, reason=REMOVE_BASELINE),
               Step(StepKind.DESTROY, stale, reason=REMOVE_BASELINE)] if stale else []
    if not serving:
        steps = _steps(spec, name, None, "", None, None, False, [], rest, wait, spec.capacity)
        return (Action.CREATE if not owned else Action.REPLACE), cleanup + steps, None, name, \
            "first deploy: canary without a baseline (nothing serves yet)", ()
    placeholder = dataclasses.replace(groups[0], name=name, created_at=float("inf"))
    baseline = next_name(spec.name, [*groups, placeholder])
    then = rolls(name, serving)
    steps = _steps(spec, name, None, baseline, None, serving[0], False, serving, rest, wait,
                   target_capacity(serving), rolls_on=then)
    return Action.REPLACE, cleanup + steps, serving[0], name, "immutable fields changed", \
        then.restore if then else ()


@dataclass(frozen=True, slots=True)
class Rolls:
    """``then: rolling_red_black``: the serving groups' original capacities and the rolling judgments."""

    restore: tuple[tuple[str, Capacity], ...]
    judgment: rolling.Judgment | None


def _steps(spec: model.ClusterSpec, name: str, new_live: ServerGroup | None, baseline: str,
           baseline_live: ServerGroup | None, source: ServerGroup | None, passed: bool,
           serving: Sequence[ServerGroup], rest: Sequence[ServerGroup], wait: Step,
           target: Capacity, *, approved: bool = False, rolls_on: Rolls | None = None) -> list[Step]:
    canary = spec.strategy.canary
    assert canary is not None
    n = canary.capacity
    small = Capacity(n, n, n)
    if baseline and baseline_live is None and (passed or source is None):
        baseline = ""  # gone already, or nothing to make it from: no baseline steps

    def wait_for(group: str) -> Step:
        return Step(StepKind.WAIT_HEALTHY, group, seconds=wait.seconds, healthy_percent=wait.healthy_percent)

    out: list[Step] = []
    alone = not serving  # a new cluster: analyzed out of traffic, enabled once it passed (as hooks are asked)
    enable = [] if alone or (new_live is not None and new_live.enabled) else [Step(StepKind.ENABLE, name)]
    if new_live is None:
        out += [Step(StepKind.CREATE, name, capacity=small, reason="canary"), wait_for(name), *enable]
    else:
        if not passed and new_live.capacity != small:
            out.append(Step(StepKind.RESIZE, name, capacity=small, reason="canary"))
        out += [wait_for(name), *enable]
    if not passed:
        if baseline and source is not None and baseline_live is None:
            out += [Step(StepKind.BASELINE, baseline, capacity=small, reason=source.name), wait_for(baseline),
                    Step(StepKind.ENABLE, baseline)]
        elif baseline_live is not None:
            out.append(wait_for(baseline))
            if not baseline_live.enabled:
                out.append(Step(StepKind.ENABLE, baseline))
        out.append(Step(StepKind.ANALYZE, name, seconds=canary.duration_s,
                                    reason=baseline))
    if baseline and (not passed or baseline_live is not None):
        out += [Step(StepKind.DISABLE, baseline, reason=REMOVE_BASELINE),
                Step(StepKind.DESTROY, baseline, reason=REMOVE_BASELINE)]
    if canary.pause_for_approval and not approved:
        if not passed:
            return out  # the deployment waits here for a person: the next plan starts with the judgment
        out.append(Step(StepKind.JUDGMENT, name, reason="pause_for_approval"))
    if rolls_on is not None:  # the canary, in traffic at its size, is the rolling deployment's new group
        grown = new_live if new_live is not None and passed else dataclasses.replace(
            serving[0], name=name, capacity=small, enabled=True)
        return out + rolling.steps(then_spec(spec), name, grown, serving, list(rest), rolls_on.restore, wait,
                                   rolls_on.judgment)
    if new_live is None or new_live.capacity != target or not passed:
        out.append(Step(StepKind.RESIZE, name, capacity=target, reason="canary passed: full capacity"))
    out.append(wait_for(name))
    then = then_spec(spec)
    if alone:
        out += retire.verify_steps(then, name)
        if new_live is None or not new_live.enabled:
            out.append(Step(StepKind.ENABLE, name))
    return out + retire.steps(then, name, serving, list(rest))


def then_spec(spec: model.ClusterSpec) -> model.ClusterSpec:
    """The spec as the ``then`` strategy sees it, for the steps after the analysis."""
    canary = spec.strategy.canary
    assert canary is not None
    return dataclasses.replace(spec, strategy=dataclasses.replace(
        spec.strategy, type=model.StrategyType(canary.then)))


def describe(strategy: model.Strategy) -> str:
    """The preview line of a canary: size, duration, metrics, thresholds, what follows."""
    c = strategy.canary
    assert c is not None
    metrics = "; ".join(m.describe() for m in c.metrics)
    return (f"canary: a canary and a baseline group of {c.capacity} instance(s) each beside the serving group "
            f"for {model._fmt_seconds(c.duration_s)}, judged every {model._fmt_seconds(c.interval_s)} on "
            f"{len(c.metrics)} metric(s) ({metrics}); passes at score >= {c.pass_score:g}, fails below "
            f"{c.marginal_score:g} at any interval; on pass {c.then}{_then_steps(strategy)}, on fail both "
            f"groups are removed and the serving group is never touched"
            + ("; after the analysis it waits for `reconciler approve`" if c.pause_for_approval else ""))


def _then_steps(strategy: model.Strategy) -> str:
    """``then: rolling_red_black``: the steps the canary grows in."""
    c = strategy.canary
    if c is None or c.then != model.StrategyType.ROLLING_RED_BLACK.value:
        return ""
    judged = f", waiting for `reconciler approve` after {', '.join(f'{p}%' for p in strategy.approval_steps)}" \
        if strategy.approval_steps else ""
    return f" in steps of {', '.join(f'{p}%' for p in strategy.steps)}{judged}"


def view(strategy: model.Strategy) -> dict[str, object]:
    """``changes[].strategy.canary`` in plan JSON."""
    c = strategy.canary
    assert c is not None
    return {
        "capacity": c.capacity, "duration_seconds": c.duration_s, "interval_seconds": c.interval_s,
        "pass_score": c.pass_score, "marginal_score": c.marginal_score, "then": c.then,
        "pause_for_approval": c.pause_for_approval,
        "metrics": [{"name": m.name, "query": m.query, "weight": m.weight, "no_data": m.no_data.value,
                     **({"fail_if": f"{m.fail_if[0]} {m.fail_if[1]:g}"} if m.fail_if else
                        {"direction": str(m.direction), "tolerance": m.tolerance})} for m in c.metrics],
    }

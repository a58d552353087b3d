"""Rolling red/black: the new group grows in percentage steps while the same share of the old groups leaves.

With target capacity ``T`` and steps ``p1 < ... < 100``, after step ``p`` the new group has
``ceil(T.desired * p / 100)`` instances (in traffic once healthy) and each older serving group with
original capacity ``O`` keeps ``O.desired - floor(O.desired * p / 100)``: what leaves is rounded down, what
arrives is rounded up, so serving capacity never drops below ``T`` when the old groups had ``T``. At 100%
the new group has ``T`` and the older groups leave traffic as in red/black.

Convergent: the step reached is read from the new group's live size, and the old groups' original
capacities (``origins``) are kept in the store from the first step on, so a deployment interrupted at any
step continues from where it stands.

A step with ``pause_for_approval`` ends the change once that step is done (the old groups' share left,
or, at 100%, the new group is full and healthy before the old groups leave traffic); the executor then
records the step reached (``Judgment``), and the next plan starts with a ``judgment`` step that the
``manual-judgment`` policy holds for ``reconciler approve``. Once that step ran, the approval is in the
record, so a crash after it never asks again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reconciler.core import model
from reconciler.core.model import Capacity, ServerGroup, Step, StepKind
from reconciler.core.strategies import retire

ORIGINS_PREFIX = "rolling-origin/"
"""Store keys ``rolling-origin/<cluster key>/<new group>/<old group>`` -> the old group's capacity."""


def origin_key(change_key: str, new: str, old: str) -> str:
    """With empty ``new`` and ``old``: ``<prefix><cluster key>//``, whose first part minus one slash is the
    prefix of every record of that cluster."""
    return f"{ORIGINS_PREFIX}{change_key}/{new}/{old}"


JUDGMENT_PREFIX = "rolling-judgment/"
"""Store keys ``rolling-judgment/<cluster key>`` -> the manual judgments of that cluster's deployment."""


def judgment_key(change_key: str) -> str:
    return JUDGMENT_PREFIX + change_key


@dataclass(frozen=True, slots=True)
class Judgment:
    """A rolling deployment's manual judgments, as the store keeps them: the step at which its last change
    stopped to wait for one (0: none), and the steps already approved."""

    server_group: str
    reached: int = 0
    approved: tuple[int, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {"server_group": self.server_group, "reached": self.reached, "approved": list(self.approved)}


def parse_judgments(records: Mapping[str, object]) -> dict[str, Judgment]:
    """Store records as judgments by store key; a malformed one is ignored (its step is then done again and
    the rollout stops there again: it never continues without an approval)."""
    out: dict[str, Judgment] = {}
    for key, v in records.items():
        if isinstance(v, dict) and isinstance(v.get("server_group"), str) and isinstance(v.get("reached"), int) \
                and isinstance(v.get("approved"), list) and all(isinstance(p, int) for p in v["approved"]):
            out[key] = Judgment(v["server_group"], v["reached"], tuple(v["approved"]))
    return out


def stops_at(change: model.Change) -> int | None:
    """The step (percent) at which this change stops to wait for a manual judgment; None when it ends the
    deployment (its old groups leave traffic) or has no such step."""
    spec, new, olds = change.desired, change.desired_server_group, {name for name, _ in change.restore}
    if spec is None or not spec.strategy.approval_steps or any(
            s.kind is StepKind.DISABLE and s.server_group in olds for s in change.steps):
        return None
    p = max((s.percent for s in change.steps if s.server_group == new), default=0)
    judged = any(s.kind is StepKind.JUDGMENT and s.percent == p for s in change.steps)
    return p if p in spec.strategy.approval_steps and not judged else None


def parse_origins(records: Mapping[str, object]) -> dict[str, Capacity]:
    """Store records (key -> ``{min, desired, max}``) as capacities; a malformed record is ignored
    (the old group's live capacity is then taken as its origin, which only shrinks it less)."""
    out: dict[str, Capacity] = {}
    for key, value in records.items():
        if isinstance(value, dict) and all(isinstance(value.get(k), int) for k in ("min", "desired", "max")):
            out[key] = Capacity(value["min"], value["desired"], value["max"])
    return out


def new_capacity(target: Capacity, percent: int) -> Capacity:
    """The new group's capacity after the step ``percent`` (at least one instance)."""
    if percent >= 100:
        return target
    n = max(1, math.ceil(target.desired * percent / 100))
    return Capacity(min(target.min, n), n, max(target.max, n))


def old_capacity(origin: Capacity, percent: int) -> Capacity:
    """An older group's capacity after the step ``percent``: its share of ``percent`` has left."""
    d = origin.desired - origin.desired * percent // 100
    return Capacity(min(origin.min, d), d, origin.max)


def target_capacity(spec: model.ClusterSpec, origins: Sequence[Capacity]) -> Capacity:
    """Spec capacity; under autoscaling, what the old groups had before the deployment, clamped to the spec."""
    if not spec.autoscaling or not origins or origins[0].desired == 0:
        return spec.capacity
    return spec.capacity.clamp(origins[0].desired)


def steps(spec: model.ClusterSpec, new_name: str, new_live: ServerGroup | None, olds: Sequence[ServerGroup],
          owned: list[ServerGroup], restore: Sequence[tuple[str, Capacity]], wait: Step,
          judgment: Judgment | None = None) -> list[Step]:
    """The steps left to take ``new_name`` from where it stands (``None``: not created) to full service,
    or to the next step that waits for a manual judgment.

    ``olds`` are the older enabled groups; ``restore`` their original capacities, in the same order;
    ``judgment`` the deployment's manual judgments (ignored unless they are of ``new_name``).
    """
    percents = spec.strategy.steps
    origin = dict(restore)
    target = target_capacity(spec, [c for _, c in restore])
    out: list[Step] = []
    mine = judgment if judgment is not None and judgment.server_group == new_name else Judgment(new_name)
    pending = [p for p in spec.strategy.approval_steps if p not in mine.approved]

    def wait_new(percent: int) -> Step:
        return Step(StepKind.WAIT_HEALTHY, new_name, seconds=wait.seconds, healthy_percent=wait.healthy_percent,
                    percent=percent)

    if new_live is None:
        at = 0
        out += [Step(StepKind.CREATE, new_name, capacity=new_capacity(target, percents[0]), percent=percents[0]),
                wait_new(percents[0]), Step(StepKind.ENABLE, new_name, percent=percents[0])]
    else:
        size = new_live.capacity.desired
        at = max((i for i, p in enumerate(percents) if new_capacity(target, p).desired <= size), default=0)
        at = min([at, *(percents.index(p) for p in pending)])  # never past a step that waits for approval
        cap = new_capacity(target, percents[at])
        if new_live.capacity != cap:
            out.append(Step(StepKind.RESIZE, new_name, capacity=cap, percent=percents[at]))
        out.append(wait_new(percents[at]))
        if not new_live.enabled:
            out.append(Step(StepKind.ENABLE, new_name, percent=percents[at]))
    for i in range(at, len(percents)):
        p = percents[i]
        if i > at:
            out += [Step(StepKind.RESIZE, new_name, capacity=new_capacity(target, p), percent=p), wait_new(p)]
        judged = i == at and mine.reached == p and p in pending  # done when its change stopped for this
        if p >= 100:
            break  # the last step's hooks run in retire.steps, before the old groups leave traffic
        if not judged:
            out += retire.verify_steps(spec, new_name, p)
        for g in olds:
            shrunk = old_capacity(origin.get(g.name, g.capacity), p)
            if i > at or g.capacity != shrunk:
                out.append(Step(StepKind.RESIZE, g.name, capacity=shrunk, percent=p,
                                reason=f"{p}% of its capacity leaves"))
        if spec.strategy.pause_s > 0 and not judged:
            out.append(Step(StepKind.DELAY, new_name, seconds=spec.strategy.pause_s,
                            reason=f"pause after the {p}% step", percent=p))
        if p in pending:
            if not judged:
                return out  # the change ends here; the next one starts with the judgment
            out.append(Step(StepKind.JUDGMENT, new_name, reason="pause_for_approval", percent=p))
    if 100 in pending:
        if not (at == len(percents) - 1 and mine.reached == 100):
            return out  # full and healthy beside the old groups, which leave traffic once approved
        out.append(Step(StepKind.JUDGMENT, new_name, reason="pause_for_approval", percent=100))
    return out + retire.steps(spec, new_name, olds, owned)


def restore_of(change_key: str, new_name: str, olds: Sequence[ServerGroup],
               origins: Mapping[str, Capacity]) -> tuple[tuple[str, Capacity], ...]:
    """Each older serving group's capacity before the deployment began: from the store once recorded,
    else (the first plan) its live capacity."""
    return tuple((g.name, origins.get(origin_key(change_key, new_name, g.name), g.capacity)) for g in olds)


def undo_steps(change: model.Change, timeout_s: float, healthy_percent: int) -> list[Step]:
    """A failed rolling step: every older group back to its original capacity and healthy, then the new
    group out of traffic and removed (it never carried all of the traffic)."""
    target = change.desired_server_group or ""
    out = [Step(StepKind.RESIZE, name, capacity=cap, reason="roll back: restore capacity")
           for name, cap in change.restore]
    out += [Step(StepKind.WAIT_HEALTHY, name, seconds=timeout_s, healthy_percent=healthy_percent,
                 reason="roll back: restored group healthy") for name, _ in change.restore]
    return [*out, Step(StepKind.DISABLE, target, reason="roll back"),
            Step(StepKind.DESTROY, target, reason="roll back failed group")]

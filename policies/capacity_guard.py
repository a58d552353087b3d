"""Capacity guard: a new group never starts below what the serving group serves without the spec saying so,
and a cluster behind a load balancer keeps at least ``capacity.min_serving`` instances.
A rolling deployment's new group starts at its first step's share by design, a canary at the canary's
size: what counts is the size it grows to.

Starting smaller than the serving group is how a red/black deploy under load
turns into an outage, so it needs a reason: when the spec itself asks for less
(``capacity.desired``, or ``capacity.max`` under autoscaling) the cut is
deliberate and the plan warns; when the new group would start below both the
serving group and the spec, something upstream is wrong and it is denied.
"""

from __future__ import annotations

from collections.abc import Iterator

from policies.base import Judgement, Policy, PolicyContext, deny, warn
from reconciler.core import model
from reconciler.core.model import StepKind
from reconciler.core.strategies import rolling

NAME = "capacity-guard"


def evaluate(plan: model.Plan, ctx: PolicyContext) -> Iterator[Judgement]:
    for change in plan.changes:
        spec = change.desired
        if spec is None or change.action is model.Action.ROLLBACK:
            continue
        floor = int(ctx.for_change(change)["capacity"]["min_serving"])
        if spec.launch.load_balancers and spec.capacity.min < floor:
            yield deny(NAME, change, f"capacity.min is {spec.capacity.min}; a cluster behind load balancers "
                                     f"({', '.join(spec.launch.load_balancers)}) keeps at least {floor} instance(s)")
            continue
        create = next((s for s in change.steps if s.kind is StepKind.CREATE and s.capacity is not None), None)
        current = change.current
        if create is None or create.capacity is None or current is None or not current.enabled:
            continue
        serving = current.capacity.desired or current.healthy
        starts = create.capacity.desired
        if create.percent:  # rolling: the new group starts small by design; judge the size it grows to at 100%
            starts = rolling.target_capacity(spec, [c for _, c in change.restore]).desired  # (a change may stop
            # before, at a step that waits for approval)
        elif create.reason == "canary":  # as small by design, and it grows to the spec's target once it passed
            starts = spec.capacity.clamp(serving).desired if spec.autoscaling else spec.capacity.desired
        if starts >= serving:
            continue
        asked = spec.capacity.clamp(serving).desired if spec.autoscaling else spec.capacity.desired
        if starts >= asked:
            field = "capacity.max" if spec.autoscaling else "capacity.desired"
            yield warn(NAME, change, f"the new group starts with {starts} instance(s), fewer than the {serving} "
                                     f"{current.name} serves: {field} lowers capacity on purpose")
        else:
            yield deny(NAME, change, f"the new group would start with {starts} instance(s), below the {serving} "
                                     f"{current.name} serves and the {asked} the spec asks for")


POLICY = Policy(NAME, evaluate, per_cluster=True)

"""Capacity guard: a new group never starts below what the serving group serves without saying so,
and a cluster behind a load balancer keeps at least ``capacity.min_serving`` instances."""

from __future__ import annotations

from collections.abc import Iterator

from policies.base import Judgement, Policy, PolicyContext, deny, warn
from reconciler import model
from reconciler.model import StepKind

NAME = "capacity-guard"


def evaluate(plan: model.Plan, ctx: PolicyContext) -> Iterator[Judgement]:
    for change in plan.changes:
        spec = change.desired
        if spec is None:
            continue
        floor = int(ctx.for_change(change)["capacity"]["min_serving"])
        if spec.launch.load_balancers and spec.capacity.min < floor:
            yield deny(NAME, change, f"capacity.min is {spec.capacity.min}; a cluster behind load balancers "
                                     f"keeps at least {floor} instance(s)")
            continue
        create = next((s for s in change.steps if s.kind is StepKind.CREATE), None)
        current = change.current
        if create and create.capacity and current is not None and current.enabled:
            serving = current.capacity.desired
            if create.capacity.desired < serving:
                yield warn(NAME, change, f"the new group starts with {create.capacity.desired} instance(s), fewer "
                                         f"than the {serving} {current.name} serves: capacity is lowered on purpose")


POLICY = Policy(NAME, evaluate)

"""Traffic guard: no step sequence may leave a serving cluster without healthy enabled capacity.

Each change's steps are simulated against the region's live groups. Disabling,
scaling to zero or destroying the last enabled group that has healthy capacity
is denied unless a replacement was created, waited healthy and enabled first.
Deliberate removal (``destroy`` under prune) is the exception: it warns.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from policies.base import Judgement, Policy, PolicyContext, allow, deny, warn
from reconciler import model
from reconciler.model import StepKind

NAME = "traffic-guard"


def evaluate(plan: model.Plan, ctx: PolicyContext) -> Iterator[Judgement]:
    by_cluster: dict[tuple[str, str, str, str], list[model.ServerGroup]] = defaultdict(list)
    for g in ctx.live:  # one index per plan: a scan per change would be quadratic
        by_cluster[(g.provider, g.account, g.region, g.cluster)].append(g)
    for change in plan.changes:
        if change.action is model.Action.DESTROY:
            yield warn(NAME, change, f"removes every server group of {change.cluster} in {change.region}: "
                                     "the cluster stops serving there")
            continue
        live = by_cluster[(change.provider, change.account, change.region, change.cluster)]
        serving = {g.name: g.healthy > 0 for g in live if g.enabled}
        proven: set[str] = set()
        problem = ""
        for step in change.steps:
            name = step.server_group
            if step.kind is StepKind.WAIT_HEALTHY:
                proven.add(name)
            elif step.kind is StepKind.ENABLE:
                serving[name] = name in proven or serving.get(name, False)
            elif step.kind is StepKind.DISABLE or step.kind is StepKind.DESTROY or (
                    step.kind is StepKind.RESIZE and step.capacity is not None and step.capacity.desired == 0):
                had = serving.pop(name, None)
                if had and not any(serving.values()):
                    problem = (f"{step.kind.value} {name} would leave {change.cluster} in {change.region} "
                               "without healthy enabled capacity")
                    break
        if problem:
            yield deny(NAME, change, problem)
        else:
            yield allow(NAME, change, "serving capacity is kept at every step")


POLICY = Policy(NAME, evaluate)

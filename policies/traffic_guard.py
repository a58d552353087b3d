"""Traffic guard: no step sequence may leave a serving cluster without healthy enabled capacity.

Each change's steps are simulated against the region's live groups. Disabling,
scaling to zero or destroying the last enabled group that has healthy capacity
is denied unless a replacement was created, waited healthy and enabled first.

Removing a cluster (``destroy`` under prune) is judged by why it goes:

* ``moved``: the application has other clusters in the region (a rename, a move
  to another stack, account or provider); the destroy is ordered after them and
  held until they serve, so it is allowed;
* ``app_removed``: the application's file was removed from Git; taking its last
  serving capacity is allowed, with a warning that says so in capitals;
* ``region_removed``: the application is still in Git but no cluster of it is
  left in the region; taking its last serving capacity there needs an approval.

A destroy of a cluster that serves nothing only warns.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from policies.base import Judgement, Policy, PolicyContext, allow, approve, deny, warn
from reconciler.core import model
from reconciler.core.model import StepKind

NAME = "traffic-guard"


def evaluate(plan: model.Plan, ctx: PolicyContext) -> Iterator[Judgement]:
    by_cluster: dict[tuple[str, str, str, str], list[model.ServerGroup]] = defaultdict(list)
    for g in ctx.live:  # one index per plan: a scan per change would be quadratic
        by_cluster[(g.provider, g.account, g.region, g.cluster)].append(g)
    for change in plan.changes:
        if change.action is model.Action.DESTROY:
            yield _judge_destroy(change, by_cluster[(change.provider, change.account, change.region,
                                                     change.cluster)])
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


def _judge_destroy(change: model.Change, live: list[model.ServerGroup]) -> Judgement:
    serving = any(g.managed and g.enabled and g.healthy > 0 for g in live)
    where = f"{change.cluster} in {change.region}"
    if change.removal is model.Removal.MOVED:
        others = ", ".join(model.split_key(k)[3] for k in change.after)
        return allow(NAME, change, f"{where} is destroyed only after {others} serve(s) {change.application} there")
    if not serving:
        return warn(NAME, change, f"removes every server group of {where}; none of them serves")
    if change.removal is model.Removal.REGION_REMOVED:
        return approve(NAME, change, f"LAST SERVING CAPACITY: {change.application} is still in Git but has no "
                                     f"cluster in {change.region} any more; destroying {change.cluster} leaves it "
                                     f"nothing serving there (approve with `reconciler approve {change.change_id}`,"
                                     " or put the region back)")
    if change.removal is model.Removal.APP_REMOVED:
        return warn(NAME, change, f"LAST SERVING CAPACITY: application {change.application} was removed from "
                                  f"Git; {change.region} stops serving it")
    return warn(NAME, change, f"removes every server group of {where}: the cluster stops serving there")


def _names_id(change: model.Change) -> bool:
    """The last-serving-capacity approval quotes the change id (``reconciler approve ID``)."""
    return change.action is model.Action.DESTROY and change.removal is model.Removal.REGION_REMOVED


POLICY = Policy(NAME, evaluate, per_cluster=True, names_change=_names_id)

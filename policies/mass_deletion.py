"""Mass-deletion guard: a commit that would destroy too many clusters (an empty or broken tree) is denied."""

from __future__ import annotations

from collections.abc import Iterator

from policies.base import Judgement, Policy, PolicyContext, deny
from reconciler import model

NAME = "mass-deletion"


def evaluate(plan: model.Plan, ctx: PolicyContext) -> Iterator[Judgement]:
    destroys = [c for c in plan.changes if c.action is model.Action.DESTROY]
    if not destroys:
        return
    max_share = float(ctx.global_settings()["mass_deletion"]["max_share"])
    live = {(g.provider, g.account, g.region, g.cluster) for g in ctx.live if g.managed}
    total = max(len(live), 1)
    share = len(destroys) / total
    if ctx.desired is not None and ctx.desired.broken_files:
        message = (f"would destroy {len(destroys)} cluster(s) while {len(ctx.desired.broken_files)} spec file(s) "
                   "have errors; fix the specs first")
    elif share > max_share:
        message = (f"would destroy {len(destroys)} of {total} clusters ({share:.0%} > {max_share:.0%}); "
                   "an empty or broken tree? Raise mass_deletion.max_share in policies.yaml if intended")
    else:
        return
    for change in destroys:
        yield deny(NAME, change, message)


POLICY = Policy(NAME, evaluate)

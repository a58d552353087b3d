"""Blast radius: a pass that changes more clusters than ``blast_radius.max_clusters`` needs an approval.

An approval, not a denial: large planned migrations are legitimate, but a person should confirm them.
"""

from __future__ import annotations

from collections.abc import Iterator

from policies.base import Judgement, Policy, PolicyContext, approve
from reconciler.core import model

NAME = "blast-radius"


def evaluate(plan: model.Plan, ctx: PolicyContext) -> Iterator[Judgement]:
    clusters = {(c.provider, c.account, c.cluster) for c in plan.changes if c.action is not model.Action.ROLLBACK}
    limit = int(ctx.global_settings()["blast_radius"]["max_clusters"])
    if len(clusters) <= limit:
        return
    for change in plan.changes:
        if change.action is not model.Action.ROLLBACK:
            yield approve(NAME, change, f"this plan changes {len(clusters)} clusters (more than {limit}); "
                                        "approve the plan to proceed")


POLICY = Policy(NAME, evaluate)

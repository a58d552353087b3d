"""Resource guard: removing an ingress rule that serving traffic may depend on needs an approval.

An update of a security group that something uses now and that removes a rule no remaining rule covers
(same source, same or wider ports) can cut traffic to serving groups: it is held for a person's approval
(``reconciler approve ID``). Widening a rule, or changing a group nothing uses, runs as planned.
"""

from __future__ import annotations

from collections.abc import Iterator

from policies.base import Judgement, Policy, PolicyContext, approve
from reconciler.core import model

NAME = "resource-guard"


def evaluate(plan: model.Plan, ctx: PolicyContext) -> Iterator[Judgement]:
    for change in plan.resource_changes:
        if change.narrows:
            users = ", ".join(change.used_by[:5]) + (" ..." if len(change.used_by) > 5 else "")
            yield approve(NAME, change, f"narrows the ingress of {change.label} in {change.region}, which "
                          f"{users} use(s): removes {'; '.join(change.narrows)}")


POLICY = Policy(NAME, evaluate)

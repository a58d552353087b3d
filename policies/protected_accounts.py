"""Protected accounts: every change in a listed account (fnmatch patterns) waits for an approval.

Rollbacks only warn: blocking the way back during an incident would turn a
guardrail into a hazard.
"""

from __future__ import annotations

from collections.abc import Iterator

from policies import patterns
from policies.base import Judgement, Policy, PolicyContext, approve, warn
from reconciler.core import model

NAME = "protected-account"


def evaluate(plan: model.Plan, ctx: PolicyContext) -> Iterator[Judgement]:
    for change in plan.changes:
        if not patterns.matches(change.account, ctx.for_change(change).get("protected_accounts") or []):
            continue
        if change.action is model.Action.ROLLBACK:
            yield warn(NAME, change, f"account {change.account} is protected; a rollback proceeds without approval")
        else:
            yield approve(NAME, change, f"account {change.account} is protected: every change needs an approval")


POLICY = Policy(NAME, evaluate, per_cluster=True)

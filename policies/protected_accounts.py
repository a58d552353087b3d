"""Protected accounts, and approvals required by criticality (``require_approval``)."""

from __future__ import annotations

from collections.abc import Iterator

from policies import patterns
from policies.base import Judgement, Policy, PolicyContext, approve, warn
from reconciler import model

NAME = "protected-account"
CRITICALITY = "criticality"


def evaluate(plan: model.Plan, ctx: PolicyContext) -> Iterator[Judgement]:
    for change in plan.changes:
        settings = ctx.for_change(change)
        protected = patterns.matches(change.account, settings.get("protected_accounts") or [])
        if protected:
            if change.action is model.Action.ROLLBACK:
                yield warn(NAME, change, f"account {change.account} is protected; rollbacks need no approval")
            else:
                yield approve(NAME, change, f"account {change.account} is protected: every change needs an approval")
            continue
        mode = settings.get("require_approval", "never")
        production = patterns.matches(change.account, settings.get("production_accounts") or [])
        if change.action is not model.Action.ROLLBACK and (
                mode == "always" or (mode == "production" and production)):
            yield approve(CRITICALITY, change, f"{change.application} requires approval for "
                                               f"{'every change' if mode == 'always' else 'production accounts'} "
                                               f"({change.account})")


POLICY = Policy(NAME, evaluate)

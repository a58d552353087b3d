"""Freeze: a repository setting (``freeze:`` in policies.yaml) or the CLI/API switch stops every change
except rollbacks.

The switch (``PolicyContext.freeze_switch``, from ``reconciler freeze``) wins over
the file so an incident freeze needs no commit; rollbacks stay open because a
freeze exists to stop risk, not to block the way back.
"""

from __future__ import annotations

from collections.abc import Iterator

from policies.base import Judgement, Policy, PolicyContext, allow, deny
from reconciler.core import model

NAME = "freeze"


def evaluate(plan: model.Plan, ctx: PolicyContext) -> Iterator[Judgement]:
    switch = ctx.freeze_switch
    for change in plan.changes:
        if switch is not None:
            by, why, source = switch.by, switch.reason, "reconciler freeze"
        else:
            repo = ctx.for_change(change).get("freeze")
            if not repo:
                continue
            by, why, source = repo.get("by"), repo.get("reason"), "policies.yaml"
        who = f" by {by}" if by else ""
        if change.action is model.Action.ROLLBACK:
            yield allow(NAME, change, f"frozen{who} ({source}), but rollbacks may proceed")
        else:
            reason = f": {why}" if why else ""
            yield deny(NAME, change, f"changes are frozen{who} ({source}){reason}; rollbacks may still run")


POLICY = Policy(NAME, evaluate, per_cluster=True)

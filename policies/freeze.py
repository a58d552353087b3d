"""Freeze: a repository setting (``freeze:`` in policies.yaml) or the CLI/API switch stops every change
except rollbacks.

The switch (``settings["freeze_switch"]``, from ``reconciler freeze``) wins over
the file so an incident freeze needs no commit; rollbacks stay open because a
freeze exists to stop risk, not to block the way back.
"""

from __future__ import annotations

from collections.abc import Iterator

from policies.base import Judgement, Policy, PolicyContext, allow, deny
from reconciler.core import model

NAME = "freeze"


def evaluate(plan: model.Plan, ctx: PolicyContext) -> Iterator[Judgement]:
    switch = ctx.setting("freeze_switch", None)
    for change in plan.changes:
        repo = ctx.for_change(change).get("freeze")
        frozen = switch or repo
        if not frozen:
            continue
        source = "reconciler freeze" if switch else "policies.yaml"
        who = f" by {frozen.get('by')}" if frozen.get("by") else ""
        if change.action is model.Action.ROLLBACK:
            yield allow(NAME, change, f"frozen{who} ({source}), but rollbacks may proceed")
        else:
            reason = f": {frozen['reason']}" if frozen.get("reason") else ""
            yield deny(NAME, change, f"changes are frozen{who} ({source}){reason}; rollbacks may still run")


POLICY = Policy(NAME, evaluate)

"""Criticality: how much ceremony an application's ``criticality`` asks for before a change runs.

``require_approval`` (``never``, ``production`` or ``always``) comes from the
resolved policies.yaml layers; the built-in layer for ``critical`` applications
is ``production``, meaning accounts matching ``production_accounts`` (default
``prod*`` and ``production*``). The other criticality default, one region per
wave for ``critical`` and one wave for everything at ``low``, is enforced by the
``region-waves`` rule from the same resolved settings. Rollbacks never wait: the
way back must stay open when something is on fire.
"""

from __future__ import annotations

from collections.abc import Iterator

from policies import patterns
from policies.base import Judgement, Policy, PolicyContext, approve
from reconciler.core import model

NAME = "criticality"


def evaluate(plan: model.Plan, ctx: PolicyContext) -> Iterator[Judgement]:
    for change in plan.changes:
        if change.action is model.Action.ROLLBACK:
            continue
        settings = ctx.for_change(change)
        mode = settings.get("require_approval", "never")
        if mode == "always":
            yield approve(NAME, change, f"{change.application} requires an approval for every change")
        elif mode == "production" and patterns.matches(change.account, settings.get("production_accounts") or []):
            yield approve(NAME, change, f"{change.application} requires an approval in production accounts "
                                        f"({change.account} matches {', '.join(settings['production_accounts'])})")


POLICY = Policy(NAME, evaluate, per_cluster=True)

"""Resource guard: removing an ingress rule that serving traffic may depend on needs an approval.

An update of a security group that something uses now and that removes a rule no remaining rule covers
(same source, same or wider ports) can cut traffic to serving groups: it is held for a person's approval
(``reconciler approve ID``). Widening a rule, or changing a group nothing uses, runs as planned.
``resources.narrowed_ingress`` in policies.yaml (``approve``, the default; ``warn``; ``deny``) sets the
verdict per application. A freeze (``reconciler freeze`` or ``policies.yaml``) holds every resource change.
"""

from __future__ import annotations

from collections.abc import Iterator

from policies.base import Judgement, Policy, PolicyContext, approve, deny, warn
from reconciler.core import model

NAME = "resource-guard"


_VERDICTS = {"approve": approve, "warn": warn, "deny": deny}


def evaluate(plan: model.Plan, ctx: PolicyContext) -> Iterator[Judgement]:
    switch = ctx.freeze_switch
    for change in plan.resource_changes:
        settings = ctx.for_change(change)
        repo = settings.get("freeze")
        if switch is not None or repo:
            by = switch.by if switch is not None else (repo or {}).get("by")
            who = f" by {by}" if by else ""
            yield deny(NAME, change, f"changes are frozen{who}; {change.label} is not changed until it is lifted")
        if change.narrows:
            users = ", ".join(change.used_by[:5]) + (" ..." if len(change.used_by) > 5 else "")
            verdict = _VERDICTS[str(settings["resources"]["narrowed_ingress"])]
            yield verdict(NAME, change, f"narrows the ingress of {change.label} in {change.region}, which "
                          f"{users} use(s): removes {'; '.join(change.narrows)}")


POLICY = Policy(NAME, evaluate)

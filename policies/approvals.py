"""Approvals: a change held at ``approve`` runs once a person approved exactly this plan or change.

``PolicyContext.approvals`` maps an id (a plan id or a change id) to the latest
decision recorded for it, a mapping with ``plan_id``, ``change_id``,
``decision`` (``approved`` or ``rejected``), ``by``, ``at`` and
``expires_at`` (epoch seconds). Both ids hash content that includes the commit,
so an approval is bound to the exact plan it was given for: a new commit, or a
live change that alters the steps, needs a new approval. An expired approval,
or one whose recorded id does not match the plan in hand, counts for nothing.

The ``approval`` policy only reports (``allow`` "approved by X at T"); the
stricter ``approve`` verdict of the rule that asked stays on the change, and the
engine decides to run it when ``is_approved`` says so.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from policies.base import AnyChange, Judgement, Policy, PolicyContext, allow
from reconciler.core import model

NAME = "approval"


def approval_for(change: AnyChange, plan: model.Plan, ctx: PolicyContext) -> Mapping[str, Any] | None:
    """The valid approval covering ``change`` (its own id first, then the whole plan's), or None.

    A rejection recorded for the change wins over an approval of the plan: the
    person who looked at this one change said no.
    """
    for ident, field in ((change.change_id, "change_id"), (plan.plan_id, "plan_id")):
        decision: Mapping[str, Any] | None = ctx.approvals.get(ident)
        if decision is None or decision.get(field) != ident:
            continue  # recorded for another id: not bound to this plan
        if float(decision.get("expires_at", 0.0)) <= ctx.now:
            continue
        if decision.get("decision") == "approved":
            return decision
        return None  # a valid rejection
    return None


def is_approved(change: AnyChange, plan: model.Plan, ctx: PolicyContext) -> bool:
    """True when a valid, unexpired approval is bound to this change's id or this plan's id."""
    return approval_for(change, plan, ctx) is not None


def evaluate(plan: model.Plan, ctx: PolicyContext) -> Iterator[Judgement]:
    if not ctx.approvals:
        return
    for change in (*plan.changes, *plan.resource_changes):
        decision = approval_for(change, plan, ctx)
        if decision is None:
            continue
        at = datetime.fromtimestamp(float(decision.get("at", 0.0)), UTC).isoformat(timespec="seconds")
        scope = "this change" if decision.get("change_id") == change.change_id else f"plan {plan.plan_id}"
        comment = f": {decision['comment']}" if decision.get("comment") else ""
        yield allow(NAME, change, f"approved by {decision.get('by') or 'someone'} at {at} ({scope}){comment}")


POLICY = Policy(NAME, evaluate)

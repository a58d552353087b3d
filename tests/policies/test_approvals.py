"""Approvals are bound to the exact plan or change they were given for, and expire."""

from __future__ import annotations

import dataclasses

import pytest

from policies import approvals, base
from reconciler.core import model
from reconciler.core.model import Verdict
from tests.policies.builders import REDBLACK, change, group, judge, messages, spec, verdicts

NOW = 1_800_000_000.0


def _decision(*, plan_id="", change_id="", decision="approved", expires_in=3600.0, by="ann", comment=""):
    return {"plan_id": plan_id, "change_id": change_id, "decision": decision, "by": by, "comment": comment,
            "at": NOW - 60, "expires_at": NOW + expires_in}


def _ctx(*rows) -> base.PolicyContext:
    index = {}
    for row in rows:  # as the engine builds it: the latest decision per id
        for ident in (row["plan_id"], row["change_id"]):
            if ident:
                index[ident] = row
    return base.PolicyContext(now=NOW, approvals=index)


C = change(steps=REDBLACK, current=group("v000"))
PLAN = model.Plan("c" * 40, (C,))
OTHER_COMMIT = model.Plan("d" * 40, (dataclasses.replace(C, commit="d" * 40),))


@pytest.mark.parametrize(("rows", "plan", "expected"), [
    ((), PLAN, False),
    ((_decision(change_id=C.change_id),), PLAN, True),
    ((_decision(plan_id=PLAN.plan_id),), PLAN, True),
    ((_decision(change_id=C.change_id, expires_in=0),), PLAN, False),           # expired exactly now
    ((_decision(plan_id=PLAN.plan_id, expires_in=-1),), PLAN, False),
    ((_decision(change_id=C.change_id, decision="rejected"),), PLAN, False),
    # the change was rejected on its own even though the plan as a whole was approved
    ((_decision(plan_id=PLAN.plan_id), _decision(change_id=C.change_id, decision="rejected")), PLAN, False),
    # a new commit: new change and plan ids, the old approval does not carry over
    ((_decision(change_id=C.change_id), _decision(plan_id=PLAN.plan_id)), OTHER_COMMIT, False),
])
def test_an_approval_counts_only_for_its_own_plan_or_change_until_it_expires(rows, plan, expected) -> None:
    target = plan.changes[0]
    assert approvals.is_approved(target, plan, _ctx(*rows)) is expected


def test_an_approval_recorded_under_another_id_is_not_bound_to_this_plan() -> None:
    forged = {PLAN.plan_id: _decision(plan_id="0123456789abcdef")}
    assert not approvals.is_approved(C, PLAN, base.PolicyContext(now=NOW, approvals=forged))


def test_the_approval_policy_reports_who_approved_and_when_but_leaves_the_verdict_to_the_engine() -> None:
    c = change(steps=REDBLACK, current=group("v000"))
    pending = judge([c], live=[group("v000")], criticality="critical", now=NOW)
    assert pending.changes[0].verdict is Verdict.APPROVE and verdicts(pending, "approval") == []
    row = _decision(change_id=c.change_id, by="ann", comment="canary is fine")
    approved = judge([c], live=[group("v000")], criticality="critical", now=NOW, approvals={c.change_id: row})
    assert verdicts(approved, "approval") == [Verdict.ALLOW]
    assert messages(approved, "approval") == [
        "approved by ann at 2027-01-15T07:59:00+00:00 (this change): canary is fine"]
    assert approved.changes[0].verdict is Verdict.APPROVE, "the engine decides with is_approved"
    later = judge([c], live=[group("v000")], criticality="critical", now=NOW + 7200, approvals={c.change_id: row})
    assert verdicts(later, "approval") == []


def test_a_plan_approval_covers_every_change_of_that_plan() -> None:
    a = change(steps=REDBLACK, region="r1")
    b = change(s=spec(image="img-2"), steps=REDBLACK, region="r2")
    plan = model.Plan("c" * 40, (a, b))
    ctx = _ctx(_decision(plan_id=plan.plan_id))
    assert [approvals.is_approved(x, plan, ctx) for x in plan.changes] == [True, True]
    smaller = model.Plan("c" * 40, (a,))
    assert not approvals.is_approved(a, smaller, ctx), "a different set of changes is a different plan"

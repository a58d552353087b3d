"""Manual judgment: a canary with ``pause_for_approval`` waits, once its analysis passed, for a person; so
does a rolling deployment after a step with ``pause_for_approval``, once that step is done.

The planner starts the rest of such a deployment with a ``judgment`` step; this rule asks for an approval
of that change (``reconciler approve CHANGE_ID``, as any approval), so the canary grows only once someone
looked at its readings (``reconciler history``).
"""

from __future__ import annotations

from collections.abc import Iterator

from policies.base import Judgement, Policy, PolicyContext, approve
from reconciler.core import model

NAME = "manual-judgment"


def evaluate(plan: model.Plan, ctx: PolicyContext) -> Iterator[Judgement]:
    for change in plan.changes:
        step = next((s for s in change.steps if s.kind is model.StepKind.JUDGMENT), None)
        if step is not None and step.percent:  # a rolling step's
            yield approve(NAME, change, f"{step.server_group} is healthy at the {step.percent}% step and waits "
                                        f"for a person's go-ahead (pause_for_approval): reconciler approve "
                                        f"{change.change_id}")
        elif step is not None:
            yield approve(NAME, change, f"canary {step.server_group} passed its analysis and waits for a "
                                        f"person's go-ahead (pause_for_approval): reconciler approve "
                                        f"{change.change_id}")


def _names_id(change: model.Change) -> bool:
    return any(s.kind is model.StepKind.JUDGMENT for s in change.steps)


POLICY = Policy(NAME, evaluate, per_cluster=True, names_change=_names_id)

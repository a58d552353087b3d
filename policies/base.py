"""The policy interface and the judge that applies every policy to a plan.

A policy is a module (or object) with a ``NAME`` and an ``evaluate(plan, ctx)``
function returning ``Judgement`` values. A judgement names a change (by id) or,
with ``change_id=None``, the plan as a whole. Policies are pure: the context
carries the time, the live state and the settings they need.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.core import model
from reconciler.core.resources import LiveResource, ResourceChange


@dataclass(frozen=True, slots=True)
class Judgement:
    change_id: str | None
    verdict: model.PolicyVerdict


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """Everything a policy may look at besides the plan itself."""

    now: float
    live: Sequence[model.ServerGroup] = ()
    desired: model.DesiredState | None = None
    prune: bool = False
    settings: Mapping[str, Any] = field(default_factory=dict)
    approvals: Mapping[str, Any] = field(default_factory=dict)
    paused: frozenset[str] = frozenset()
    resources: Sequence[LiveResource] = ()
    """Live load balancers and security groups (where providers report them)."""

    def setting(self, key: str, default: Any) -> Any:
        return self.settings.get(key, default)

    def for_change(self, change: model.Change | ResourceChange) -> dict[str, Any]:
        """Guardrail settings for one change: policies.yaml layers resolved for its application and cluster."""
        file = self.settings.get("policies")
        criticality = "normal"
        if self.desired is not None and change.application in self.desired.applications:
            criticality = self.desired.applications[change.application].criticality.value
        if file is None or not hasattr(file, "for_cluster"):
            from specs import policy_file  # noqa: PLC0415 - the built-in defaults, only without a file

            file = policy_file.PolicySettings()
        resolved: dict[str, Any] = file.for_cluster(change.application, change.cluster, criticality)
        return resolved

    def global_settings(self) -> dict[str, Any]:
        file = self.settings.get("policies")
        if file is None or not hasattr(file, "global_settings"):
            from specs import policy_file  # noqa: PLC0415

            file = policy_file.PolicySettings()
        resolved: dict[str, Any] = file.global_settings()
        return resolved


Evaluate = Callable[[model.Plan, PolicyContext], Iterable[Judgement]]


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    evaluate: Evaluate


def judge(plan: model.Plan, ctx: PolicyContext, policies: Sequence[Policy]) -> model.Plan:
    """The plan with every policy's verdicts attached to its changes (and plan-wide ones)."""
    per_change: dict[str, list[model.PolicyVerdict]] = {}
    plan_wide: list[model.PolicyVerdict] = []
    for policy in policies:
        for j in policy.evaluate(plan, ctx):
            if j.change_id is None:
                plan_wide.append(j.verdict)
            else:
                per_change.setdefault(j.change_id, []).append(j.verdict)
    changes = tuple(
        dataclasses.replace(c, verdicts=c.verdicts + tuple(per_change.get(c.change_id, ())))
        for c in plan.changes
    )
    resources = tuple(
        dataclasses.replace(r, verdicts=r.verdicts + tuple(per_change.get(r.change_id, ())))
        for r in plan.resource_changes
    )
    return dataclasses.replace(plan, changes=changes, resource_changes=resources,
                               plan_verdicts=plan.plan_verdicts + tuple(plan_wide))


AnyChange = model.Change | ResourceChange
"""What a judgement may name: a cluster change or a resource change (both have a ``change_id``)."""


def allow(policy: str, change: AnyChange | None, message: str) -> Judgement:
    return _j(policy, change, model.Verdict.ALLOW, message)


def warn(policy: str, change: AnyChange | None, message: str) -> Judgement:
    return _j(policy, change, model.Verdict.WARN, message)


def approve(policy: str, change: AnyChange | None, message: str) -> Judgement:
    return _j(policy, change, model.Verdict.APPROVE, message)


def deny(policy: str, change: AnyChange | None, message: str) -> Judgement:
    return _j(policy, change, model.Verdict.DENY, message)


def _j(policy: str, change: AnyChange | None, v: model.Verdict, message: str) -> Judgement:
    return Judgement(
        change.change_id if change is not None else None, model.PolicyVerdict(policy, v, message)
    )

"""The policy interface and the judge that applies every policy to a plan.

A policy is a module (or object) with a ``NAME`` and an ``evaluate(plan, ctx)``
function returning ``Judgement`` values. A judgement names a change (by id) or,
with ``change_id=None``, the plan as a whole. Policies are pure: the context
carries the time, the live state and the settings they need, each as a typed field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.core import model
from reconciler.core.resources import LiveResource, ResourceChange
from specs import policy_file as policy_file_mod


@dataclass(frozen=True, slots=True)
class Judgement:
    change_id: str | None
    verdict: model.PolicyVerdict


@dataclass(frozen=True, slots=True)
class Freeze:
    """The fleet-wide freeze set by ``reconciler freeze`` (or the API)."""

    by: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Signature:
    """What the git source found about the commit's signature (checked only when policies.yaml requires it)."""

    verified: bool
    key: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """Everything a policy may look at besides the plan itself."""

    now: float
    live: Sequence[model.ServerGroup] = ()
    desired: model.DesiredState | None = None
    prune: bool = False
    policy_file: policy_file_mod.PolicySettings = field(default_factory=policy_file_mod.PolicySettings)
    """The commit's policies.yaml (built-in defaults without one); read through ``for_change``/``global_settings``."""
    freeze_switch: Freeze | None = None
    commit_signature: Signature | None = None  # None: signatures are not required
    approvals: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # plan or change id -> approval row
    paused: frozenset[str] = frozenset()
    resources: Sequence[LiveResource] = ()
    """Live load balancers and security groups (where providers report them)."""

    def for_change(self, change: model.Change | ResourceChange) -> dict[str, Any]:
        """Guardrail settings for one change: policies.yaml layers resolved for its application and cluster."""
        criticality = "normal"
        if self.desired is not None and change.application in self.desired.applications:
            criticality = self.desired.applications[change.application].criticality.value
        return self.policy_file.for_cluster(change.application, change.cluster, criticality)

    def global_settings(self) -> dict[str, Any]:
        return self.policy_file.global_settings()


Evaluate = Callable[[model.Plan, PolicyContext], Iterable[Judgement]]


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    evaluate: Evaluate
    per_cluster: bool = False
    """Its verdicts for a change depend only on the changes of the same cluster (provider, account, name; every
    region), their live groups, their resolved settings, the policy file, the freeze switch and the clock's
    window verdicts: never on other clusters, ``plan.commit``, ``plan.plan_id`` or resource changes. Such a
    rule is judged per cluster (``policies.per_cluster``), so a one-file commit judges that file's clusters."""
    names_change: Callable[[model.Change], bool] | None = None
    """For a per-cluster rule whose messages quote a change's id: which changes it quotes (ids name the commit,
    so those changes are judged again on a new commit)."""


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
    changes = tuple(model.with_verdicts(c, c.verdicts + tuple(per_change.get(c.change_id, ())))
                    for c in plan.changes)
    resources = tuple(model.with_verdicts(r, r.verdicts + tuple(per_change.get(r.change_id, ())))
                      for r in plan.resource_changes)
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


_SHARED: dict[tuple[str, model.Verdict, str], model.PolicyVerdict] = {}
"""Verdicts given lately, each once: a rule that says the same to 20,000 changes (a freeze, the blast radius)
holds one verdict and one message for all of them, not 20,000 copies of each."""
_SHARED_MAX = 4096


def _j(policy: str, change: AnyChange | None, v: model.Verdict, message: str) -> Judgement:
    verdict = _SHARED.get((policy, v, message))
    if verdict is None:
        if len(_SHARED) >= _SHARED_MAX:  # messages that name their change: no use keeping them
            _SHARED.clear()
        verdict = _SHARED[(policy, v, message)] = model.PolicyVerdict(policy, v, message)
    return Judgement(change.change_id if change is not None else None, verdict)

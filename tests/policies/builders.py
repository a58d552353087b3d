"""The guardrail tests' data: ``checkout-main`` on aws/prod in r1 and r2, capacity 1..4, and the policy run.

The model values come from ``tests.builders`` (the one set of builders); these presets only fix the
defaults the rule tests read.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from policies import base, registry
from reconciler.core import model
from reconciler.core.model import Action, Capacity, Step
from specs import policy_file
from tests import builders

ts = builders.ts
verdicts = builders.verdicts_of
messages = builders.messages_of
REDBLACK = builders.REDBLACK

DEFAULT_CAP = Capacity(1, 2, 4)


def spec(*, regions: tuple[str, ...] = ("r1", "r2"), waves: tuple[tuple[str, ...], ...] = (),
         lbs: tuple[str, ...] = (), cap: Capacity = DEFAULT_CAP, image: str = "img-1", itype: str = "m5.large",
         app: str = "checkout", pause: float = 0.0) -> model.ClusterSpec:
    return builders.spec(app, provider="aws", account="prod", regions=regions, image=image, instance_type=itype,
                         load_balancers=lbs, capacity=cap, rollout=model.Rollout(waves=waves, pause_s=pause))


def group(name: str, *, enabled: bool = True, desired: int = 2, healthy: int = 2, s: model.ClusterSpec | None = None,
          region: str = "r1", managed: bool = True) -> model.ServerGroup:
    """A group named ``name`` (no version, no provenance: the rules read names, capacity and health)."""
    return builders.group(s or spec(), region, name=name, enabled=enabled, capacity=Capacity(1, desired, 4),
                          healthy=healthy, managed=managed, spec_hash="", commit="", created_at=0.0)


def change(action: Action = Action.REPLACE, *, s: model.ClusterSpec | None = None, steps: Iterable[Step] = (),
           current: model.ServerGroup | None = None, account: str = "prod", region: str = "r1") -> model.Change:
    return builders.change(action, s or spec(), region=region, steps=steps, current=current,
                           target="checkout-main-v001", account=account, spec_hash="h")


def judge(changes: Any, *, yaml_text: str = "", live: Any = (), now: float = 0.0, criticality: str = "normal",
          broken: frozenset[str] = frozenset(), approvals: Any = None, broken_policy_file: bool = False,
          **settings: Any) -> model.Plan:
    """The plan of ``changes`` as every default policy judges it, with ``policies.yaml`` from ``yaml_text``."""
    pol, problems = policy_file.load_policy_file(yaml_text, file="apps/policies.yaml")
    assert bool(problems) is broken_policy_file, problems
    apps = {"checkout": model.Application("checkout", "o", model.Criticality(criticality), (),
                                          model.SourceRef("apps/checkout.yaml"))}
    desired = model.DesiredState("c" * 40, apps, broken_files=broken)
    switch, sig = settings.get("freeze_switch"), settings.get("commit_signature")
    freeze = base.Freeze(switch.get("by", ""), switch.get("reason", "")) if switch else None
    ctx = base.PolicyContext(now=now, live=tuple(live), desired=desired, approvals=approvals or {}, policy_file=pol,
                             freeze_switch=freeze, commit_signature=base.Signature(**sig) if sig is not None else None)
    plan = model.Plan("c" * 40, tuple(changes))
    return base.judge(plan, ctx, registry.default_policies())

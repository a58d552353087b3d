"""Plans, changes and live groups built by hand from reconciler.model values, for the rule tests."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from policies import base, registry
from reconciler.core import model
from reconciler.core.model import Action, Capacity, Step, StepKind, Verdict
from specs import policy_file


def ts(text: str, zone: str = "UTC") -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


DEFAULT_CAP = Capacity(1, 2, 4)


def spec(*, regions=("r1", "r2"), waves=(), lbs=(), cap=DEFAULT_CAP, image="img-1", itype="m5.large",
         app="checkout", pause=0.0) -> model.ClusterSpec:
    return model.ClusterSpec(
        application=app, provider="aws", account="prod", regions=regions, stack="main",
        launch=model.LaunchSpec(image=image, instance_type=itype, load_balancers=lbs), capacity=cap,
        rollout=model.Rollout(waves=waves, pause_s=pause),
    )


def group(name: str, *, enabled=True, desired=2, healthy=2, s: model.ClusterSpec | None = None,
          region="r1", managed=True) -> model.ServerGroup:
    s = s or spec()
    return model.ServerGroup(name=name, provider="aws", account="prod", region=region, cluster=s.name,
                             application=s.application, managed=managed, launch=s.launch,
                             capacity=Capacity(1, desired, 4), enabled=enabled, healthy=healthy, instances=desired)


def change(action=Action.REPLACE, *, s: model.ClusterSpec | None = None, steps=(), current=None,
           account="prod", region="r1") -> model.Change:
    s = s or spec()
    return model.Change(application=s.application, cluster=s.name, provider="aws", account=account, region=region,
                        action=action, steps=tuple(steps), current=current, desired_server_group="checkout-main-v001",
                        desired=s if action is not Action.DESTROY else None, spec_hash="h", commit="c" * 40)


def judge(changes, *, yaml_text="", live=(), now=0.0, criticality="normal", broken=frozenset(), approvals=None,
          broken_policy_file=False, **settings):
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


def verdicts(plan: model.Plan, policy: str) -> list[Verdict]:
    return [v.verdict for c in plan.changes for v in c.verdicts if v.policy == policy]


def messages(plan: model.Plan, policy: str) -> list[str]:
    return [v.message for c in plan.changes for v in c.verdicts if v.policy == policy]


REDBLACK = [Step(StepKind.CREATE, "v001", Capacity(1, 2, 4)), Step(StepKind.WAIT_HEALTHY, "v001"),
            Step(StepKind.ENABLE, "v001"), Step(StepKind.DISABLE, "v000"),
            Step(StepKind.RESIZE, "v000", Capacity(0, 0, 0))]

"""Plans built by hand, shaped like the planner's, so renderings are reviewed in isolation: the render goldens' data.

The model values come from ``tests.builders`` (the one set of builders); ``spec`` and ``group`` fix the defaults
the golden files show (``checkout-main`` in us-east-1 then eu-west-1).
"""

from __future__ import annotations

from reconciler.core import errors, model
from reconciler.core.model import Action, Capacity, Change, PolicyVerdict, Step, StepKind, Verdict
from tests import builders

HEAD = "5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f"
BASE = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b"
ZERO = Capacity(0, 0, 0)
DEFAULT_CAPACITY = Capacity(2, 3, 6)
TRAFFIC = PolicyVerdict("traffic-guard", Verdict.ALLOW, "serving capacity is kept at every step")


def spec(
    app: str = "checkout",
    *,
    stack: str = "main",
    regions: tuple[str, ...] = ("us-east-1", "eu-west-1"),
    image: str = "checkout-1.0",
    instance_type: str = "m5.large",
    capacity: Capacity = DEFAULT_CAPACITY,
    load_balancers: tuple[str, ...] = ("checkout-web",),
    security_groups: tuple[str, ...] = ("checkout",),
    user_data: str = "",
    tags: tuple[tuple[str, str], ...] = (("team", "payments"),),
    provider: str = "aws",
    account: str = "prod",
    autoscaling: bool = False,
) -> model.ClusterSpec:
    return builders.spec(
        app, stack=stack, provider=provider, account=account, regions=regions, image=image,
        instance_type=instance_type, capacity=capacity, user_data=user_data, security_groups=security_groups,
        load_balancers=load_balancers, tags=tags, autoscaling=autoscaling, health=model.HealthSpec(100, 600.0),
        strategy=model.Strategy(keep_disabled=1, delay_before_disable_s=30),
        rollout=model.Rollout(waves=((regions[0],), regions[1:])) if len(regions) > 1 else model.Rollout(),
        source=model.SourceRef(f"apps/{app}.yaml", 3),
    )


def group(s: model.ClusterSpec, region: str, version: int, *, enabled: bool = True, healthy: int | None = None,
          capacity: Capacity | None = None) -> model.ServerGroup:
    return builders.group(s, region, version, enabled=enabled, capacity=capacity, healthy=healthy, commit=BASE,
                          created_at=1_700_000_000.5, extra=(("launch-template", f"lt-{version:03d}"),))


def _change(action: Action, s: model.ClusterSpec | None, region: str, steps: list[Step], *,
            current: model.ServerGroup | None, target: str | None, wave: int, reason: str,
            verdicts: tuple[PolicyVerdict, ...]) -> Change:
    return builders.change(action, s, region=region, steps=steps, current=current, target=target, wave=wave,
                           reason=reason, verdicts=verdicts, commit=HEAD)


def _wait(s: model.ClusterSpec, name: str) -> Step:
    return Step(StepKind.WAIT_HEALTHY, name, seconds=s.health.timeout_s, healthy_percent=s.health.healthy_percent)


def create(s: model.ClusterSpec, region: str, *, wave: int = 0,
           verdicts: tuple[PolicyVerdict, ...] = (TRAFFIC,)) -> Change:
    name = model.server_group_name(s.name, 0)
    steps = [Step(StepKind.CREATE, name, capacity=s.capacity), _wait(s, name), Step(StepKind.ENABLE, name)]
    return _change(Action.CREATE, s, region, steps, current=None, target=name, wave=wave, reason="first deploy",
                   verdicts=verdicts)


def replace(s: model.ClusterSpec, current: model.ServerGroup, *, wave: int = 0,
            verdicts: tuple[PolicyVerdict, ...] = (TRAFFIC,)) -> Change:
    new = model.server_group_name(s.name, current.version + 1)
    steps = [
        Step(StepKind.CREATE, new, capacity=s.capacity), _wait(s, new), Step(StepKind.ENABLE, new),
        Step(StepKind.DELAY, new, seconds=s.strategy.delay_before_disable_s, reason="delay before disable"),
        Step(StepKind.DISABLE, current.name),
        Step(StepKind.RESIZE, current.name, capacity=ZERO, reason="scale down disabled group"),
    ]
    return _change(Action.REPLACE, s, current.region, steps, current=current, target=new, wave=wave,
                   reason="immutable fields changed", verdicts=verdicts)


def resize(s: model.ClusterSpec, current: model.ServerGroup, *, wave: int = 0,
           verdicts: tuple[PolicyVerdict, ...] = (TRAFFIC,)) -> Change:
    steps = [Step(StepKind.RESIZE, current.name, capacity=s.capacity), _wait(s, current.name)]
    return _change(Action.RESIZE, s, current.region, steps, current=current, target=current.name, wave=wave,
                   reason="capacity changed", verdicts=verdicts)


def rollback(s: model.ClusterSpec, current: model.ServerGroup, retained: model.ServerGroup, *, wave: int = 0,
             verdicts: tuple[PolicyVerdict, ...] = (TRAFFIC,)) -> Change:
    steps = [
        Step(StepKind.RESIZE, retained.name, capacity=s.capacity), _wait(s, retained.name),
        Step(StepKind.ENABLE, retained.name), Step(StepKind.DISABLE, current.name),
    ]
    return _change(Action.ROLLBACK, s, current.region, steps, current=current, target=retained.name, wave=wave,
                   reason=f"desired spec matches retained {retained.name}", verdicts=verdicts)


def destroy(current: model.ServerGroup, *, verdicts: tuple[PolicyVerdict, ...] = ()) -> Change:
    steps = [Step(StepKind.DISABLE, current.name),
             Step(StepKind.DESTROY, current.name, reason="cluster removed from Git")]
    return _change(Action.DESTROY, None, current.region, steps, current=current, target=None, wave=0,
                   reason="cluster removed from Git and prune is on", verdicts=verdicts)


def plan(*changes: Change, base: str = BASE, problems: tuple[errors.SpecProblem, ...] = (),
         plan_verdicts: tuple[PolicyVerdict, ...] = ()) -> model.Plan:
    return model.Plan(commit=HEAD, changes=changes, problems=problems, base_commit=base,
                      live_fingerprint="f0e1d2c3b4a59687", plan_verdicts=plan_verdicts)


# ---------------------------------------------------------------------------- the reviewed scenarios


def first_deploy() -> model.Plan:
    s = spec()
    waves = PolicyVerdict("region-waves", Verdict.ALLOW, "2 waves: us-east-1 then eu-west-1")
    return plan(create(s, "us-east-1", verdicts=(TRAFFIC, waves)), create(s, "eu-west-1", wave=1), base="")


def image_change() -> model.Plan:
    """New image and user data in two regions; one tag holds a secret."""
    old = spec(user_data="#!/bin/sh\nexport DB_PASSWORD=hunter2\n", tags=(("team", "payments"), ("db_token", "s3cr3t")))
    new = spec(image="checkout-2.0", user_data="#!/bin/sh\nexport DB_PASSWORD=hunter3\n",
               tags=(("team", "payments"), ("db_token", "t0p-s3cr3t")))
    return plan(replace(new, group(old, "us-east-1", 4)), replace(new, group(old, "eu-west-1", 4), wave=1))


def capacity_only() -> model.Plan:
    old, new = spec(), spec(capacity=Capacity(2, 5, 8))
    return plan(resize(new, group(old, "us-east-1", 1)), resize(new, group(old, "eu-west-1", 1), wave=1))


def deny_and_approve() -> model.Plan:
    checkout_old = spec(account="payments-prod")
    checkout = spec(image="checkout-2.0", account="payments-prod")
    search_old = spec("search", regions=("us-east-1",), image="search-7", load_balancers=(),
                      security_groups=("search",))
    search = spec("search", regions=("us-east-1",), image="search-7", instance_type="x2iedn.32xlarge",
                  load_balancers=(), security_groups=("search",))
    approve = PolicyVerdict("protected-account", Verdict.APPROVE,
                            "account payments-prod is protected: run `reconciler approve` after review")
    deny = PolicyVerdict("instance-types", Verdict.DENY,
                         "x2iedn.32xlarge is not in the allowed instance types for account prod (m5.*, c6i.*)")
    warn = PolicyVerdict("change-window", Verdict.WARN, "Friday 16:00 UTC: late in the week | be ready to roll back")
    return plan(
        replace(checkout, group(checkout_old, "us-east-1", 7), verdicts=(TRAFFIC, approve)),
        replace(checkout, group(checkout_old, "eu-west-1", 7), wave=1, verdicts=(TRAFFIC, approve)),
        replace(search, group(search_old, "us-east-1", 12), verdicts=(TRAFFIC, deny)),
        plan_verdicts=(warn,),
    )


def destroy_under_prune() -> model.Plan:
    s = spec("search", regions=("us-east-1",), image="search-7")
    prune = PolicyVerdict("prune", Verdict.WARN, "search-main was removed from Git; prune is on")
    guard = PolicyVerdict("mass-deletion", Verdict.ALLOW, "1 of 3 clusters (33%) is under the 50% limit")
    return plan(destroy(group(s, "us-east-1", 3), verdicts=(prune, guard)),
                destroy(group(s, "us-east-1", 2, enabled=False, capacity=ZERO), verdicts=(prune, guard)))


def revert() -> model.Plan:
    good, bad = spec(), spec(image="checkout-2.0")
    cur, kept = group(bad, "us-east-1", 1), group(good, "us-east-1", 0, enabled=False, capacity=ZERO)
    return plan(rollback(good, cur, kept))


def broken_spec() -> model.Plan:
    problems = (
        errors.SpecProblem("apps/cart.yaml", 11, "clusters[0].capacity",
                           "needs min <= desired <= max, got min 9, desired 2, max 6"),
        errors.SpecProblem("apps/billing.yaml", 4, "clusters[0].image", "'{{ values.billing_image }}' is undefined"),
    )
    return plan(create(spec(regions=("us-east-1",)), "us-east-1"), problems=problems)


def no_changes() -> model.Plan:
    return plan()


def large(clusters: int = 30) -> model.Plan:
    changes = []
    for i in range(clusters):
        s = spec(f"app{i:02d}", image=f"app{i:02d}-1.0")
        changes += [create(s, "us-east-1"), create(s, "eu-west-1", wave=1)]
    return plan(*changes, problems=broken_spec().problems)


SCENARIOS = {
    "first_deploy": first_deploy,
    "image_change": image_change,
    "capacity_only": capacity_only,
    "deny_and_approve": deny_and_approve,
    "destroy_under_prune": destroy_under_prune,
    "revert": revert,
    "broken_spec": broken_spec,
    "no_changes": no_changes,
}

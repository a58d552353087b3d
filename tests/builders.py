"""The one set of test builders and Hypothesis strategies: model values made by hand, and generated.

Every test that needs a ``ClusterSpec``, a live ``ServerGroup``, a ``Change``, a ``DesiredState`` or a
planner outcome builds it here, so a field added to the model is filled in one place. Test modules keep
their own *data* (the defaults their assertions read, such as the render goldens' ``checkout`` in two
regions or the guardrail tests' ``aws/prod``) as short presets that call these builders; they do not
build model values themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from reconciler.core import model, planner
from reconciler.core.model import Action, Capacity, Step, StepKind

# ---------------------------------------------------------------------------- model values by hand

CAPACITY = Capacity(1, 2, 6)


def spec(app: str = "app", *, stack: str = "main", detail: str = "", provider: str = "local",
         account: str = "default", regions: tuple[str, ...] = ("r1",), image: str = "img-1",
         instance_type: str = "m5.large", capacity: Capacity = CAPACITY, user_data: str = "",
         security_groups: tuple[str, ...] = (), load_balancers: tuple[str, ...] = (),
         tags: tuple[tuple[str, str], ...] = (), autoscaling: bool = False,
         health: model.HealthSpec | None = None, strategy: model.Strategy | None = None,
         rollout: model.Rollout | None = None, source: model.SourceRef | None = None) -> model.ClusterSpec:
    """A cluster spec as the loader would make it; unset blocks get the model's defaults."""
    return model.ClusterSpec(
        application=app, provider=provider, account=account, regions=regions, stack=stack, detail=detail,
        launch=model.LaunchSpec(image, instance_type, user_data, security_groups, load_balancers, tags),
        capacity=capacity, autoscaling=autoscaling, health=health or model.HealthSpec(),
        strategy=strategy or model.Strategy(), rollout=rollout or model.Rollout(),
        source=source or model.SourceRef(""),
    )


def group(s: model.ClusterSpec, region: str = "r1", version: int = 0, *, name: str | None = None,
          enabled: bool = True, capacity: Capacity | None = None, healthy: int | None = None,
          managed: bool = True, spec_hash: str | None = None, commit: str = "c0", created_at: float | None = None,
          extra: tuple[tuple[str, str], ...] = ()) -> model.ServerGroup:
    """The live group version ``version`` of ``s`` in ``region``, made from ``s``'s launch settings.

    Capacity defaults to the spec's, healthy and instances to its desired count, the creation time to the
    version (so newer versions are newer).
    """
    cap = capacity or s.capacity
    return model.ServerGroup(
        name=name or model.server_group_name(s.name, version), provider=s.provider, account=s.account,
        region=region, cluster=s.name, application=s.application, managed=managed, launch=s.launch, capacity=cap,
        enabled=enabled, healthy=cap.desired if healthy is None else healthy, instances=cap.desired,
        spec_hash=s.launch.spec_hash() if spec_hash is None else spec_hash, commit=commit,
        created_at=float(version) if created_at is None else created_at, extra=extra,
    )


def desired(*specs: model.ClusterSpec, commit: str = "c1", owner: str = "o@example.com",
            criticality: model.Criticality = model.Criticality.NORMAL, **kw: Any) -> model.DesiredState:
    """Git's state with the specs grouped into their applications (each from ``apps/APP.yaml`` unless the
    spec names its file); ``kw`` are the other ``DesiredState`` fields (``broken_files`` and so on)."""
    apps: dict[str, model.Application] = {}
    for s in specs:
        old = apps.get(s.application)
        source = s.source if s.source.file else model.SourceRef(f"apps/{s.application}.yaml")
        apps[s.application] = model.Application(s.application, owner, criticality,
                                                (old.clusters if old else ()) + (s,), source)
    return model.DesiredState(commit, apps, **kw)


def outcome(d: model.DesiredState, *groups: model.ServerGroup, **opts: Any) -> planner.Outcome:
    """What the planner makes of ``d`` against these live groups; ``opts`` are ``planner.Options`` fields."""
    return planner.plan(d, planner.LiveState(tuple(groups)), planner.Options(**opts))


def change(action: Action, s: model.ClusterSpec | None, *, region: str = "r1", steps: Iterable[Step] = (),
           current: model.ServerGroup | None = None, target: str | None = None, account: str | None = None,
           wave: int = 0, reason: str = "", verdicts: tuple[model.PolicyVerdict, ...] = (),
           spec_hash: str | None = None, commit: str = "c" * 40) -> model.Change:
    """A change as the planner shapes it: of ``s`` (or, for a destroy, of ``current``'s cluster)."""
    source = s or current
    assert source is not None, "a change needs a spec or a current group"
    cluster = s.name if s is not None else current.cluster if current is not None else ""
    return model.Change(
        application=source.application, cluster=cluster, provider=source.provider,
        account=account or source.account, region=region, action=action, steps=tuple(steps), current=current,
        desired_server_group=target, desired=s if action is not Action.DESTROY else None,
        spec_hash=(s.launch.spec_hash() if s is not None else "") if spec_hash is None else spec_hash,
        wave=wave, reason=reason, verdicts=verdicts, commit=commit,
    )


def kinds(change: model.Change) -> list[tuple[str, str]]:
    """A change's steps as (kind, server group) pairs: what most planner assertions compare."""
    return [(s.kind.value, s.server_group) for s in change.steps]


def ts(text: str, zone: str = "UTC") -> float:
    """An ISO time in a zone as the epoch seconds the injected clock speaks."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


REDBLACK = [Step(StepKind.CREATE, "v001", Capacity(1, 2, 4)), Step(StepKind.WAIT_HEALTHY, "v001"),
            Step(StepKind.ENABLE, "v001"), Step(StepKind.DISABLE, "v000"),
            Step(StepKind.RESIZE, "v000", Capacity(0, 0, 0))]
"""The steps of a red/black replacement of v000 by v001, for rules that read steps."""


def verdicts_of(plan: model.Plan, policy: str) -> list[model.Verdict]:
    return [v.verdict for c in plan.changes for v in c.verdicts if v.policy == policy]


def messages_of(plan: model.Plan, policy: str) -> list[str]:
    return [v.message for c in plan.changes for v in c.verdicts if v.policy == policy]


# ---------------------------------------------------------------------------- model values generated

lower = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
app_names = st.builds(lambda head, tail: head + tail, st.sampled_from("abcxyz"), st.text("abc123", max_size=10))
details = st.lists(lower, min_size=1, max_size=3).map("-".join)
regions = st.lists(st.sampled_from(["us-east-1", "us-west-2", "eu-west-1", "europe-west1", "asia-1"]),
                   min_size=1, max_size=5, unique=True)
seconds = st.sampled_from([0.0, 1.0, 30.0, 90.0, 600.0, 3600.0])
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20)
printable = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"),
                                  include_characters=" "), max_size=20)
"""What a tag value may hold: text that prints as itself on one line."""
images = st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=8)
"""A history of deploys: the image of each commit in turn (repeats are reverts)."""


@st.composite
def clusters(draw: st.DrawFn, app: str, stack: str) -> model.ClusterSpec:
    """A valid cluster of ``app``: every field the spec language has, within what validation accepts."""
    rs = tuple(draw(regions))
    lo = draw(st.integers(0, 5))
    want = draw(st.integers(lo, lo + 5))
    hi = draw(st.integers(want, want + 5))
    percent = draw(st.integers(1, 100))
    if want and want * percent < 100:  # less than one instance: refused by a cross-field rule
        percent = 100
    waves: tuple[tuple[str, ...], ...] = ()
    if draw(st.booleans()):
        cut = draw(st.integers(1, len(rs)))
        waves = tuple(w for w in (rs[:cut], rs[cut:]) if w)
    return model.ClusterSpec(
        application=app,
        stack=stack,
        detail=draw(st.one_of(st.just(""), details)),
        provider=draw(st.sampled_from(["local", "aws", "gcp", "my_cloud"])),
        account=draw(lower),
        regions=rs,
        launch=model.LaunchSpec(
            image="from-values",
            instance_type=draw(st.sampled_from(["m5.large", "e2-small", "small"])),
            user_data=draw(text),
            security_groups=tuple(draw(st.lists(lower, max_size=3))),
            load_balancers=tuple(draw(st.lists(lower, max_size=3))),
            tags=tuple(sorted(draw(st.dictionaries(lower, printable, max_size=4)).items())),
        ),
        capacity=model.Capacity(lo, want, hi),
        autoscaling=draw(st.booleans()),
        health=model.HealthSpec(healthy_percent=percent, timeout_s=draw(seconds)),
        strategy=model.Strategy(
            keep_disabled=draw(st.integers(0, 5)),
            scale_down=draw(st.booleans()),
            delay_before_disable_s=draw(seconds),
            delay_before_scale_down_s=draw(seconds),
            rollback_on_failure=draw(st.booleans()),
        ),
        rollout=model.Rollout(waves=waves, pause_s=draw(seconds)),
    )


@st.composite
def applications(draw: st.DrawFn) -> model.Application:
    """A valid application with one to three clusters (distinct stacks)."""
    name = draw(app_names)
    stacks = draw(st.lists(st.one_of(st.just(""), lower), min_size=1, max_size=3, unique=True))
    return model.Application(
        name=name,
        owner=draw(st.emails()),
        criticality=draw(st.sampled_from(list(model.Criticality))),
        clusters=tuple(draw(clusters(name, stack)) for stack in stacks),
        source=model.SourceRef("apps/spec.yaml", 1),
    )

"""Round trip on generated valid specs: model values -> YAML template -> render -> validate -> the same values."""

from __future__ import annotations

import json
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.core import model
from tests.specs.spec_helpers import Tree

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


def to_duration(s: float) -> str | int:
    """Alternate the spellings a person would use."""
    if s and s % 3600 == 0:
        return f"{int(s // 3600)}h"
    if s and s % 60 == 0:
        return f"{int(s // 60)}m"
    return int(s) if s % 2 else f"{int(s)}s"


@st.composite
def clusters(draw: st.DrawFn, app: str, stack: str) -> model.ClusterSpec:
    rs = tuple(draw(regions))
    lo = draw(st.integers(0, 5))
    desired = draw(st.integers(lo, lo + 5))
    hi = draw(st.integers(desired, desired + 5))
    percent = draw(st.integers(1, 100))
    if desired and desired * percent < 100:  # less than one instance: refused by a cross-field rule
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
        capacity=model.Capacity(lo, desired, hi),
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
    name = draw(app_names)
    stacks = draw(st.lists(st.one_of(st.just(""), lower), min_size=1, max_size=3, unique=True))
    return model.Application(
        name=name,
        owner=draw(st.emails()),
        criticality=draw(st.sampled_from(list(model.Criticality))),
        clusters=tuple(draw(clusters(name, stack)) for stack in stacks),
        source=model.SourceRef("apps/spec.yaml", 1),
    )


def to_document(app: model.Application) -> dict[str, Any]:
    return {
        "application": app.name,
        "owner": app.owner,
        "criticality": app.criticality.value,
        "clusters": [{
            "stack": c.stack,
            "detail": c.detail,
            "provider": c.provider,
            "account": c.account,
            "regions": list(c.regions),
            "image": "{{ values.image }}",
            "instance_type": c.launch.instance_type,
            "capacity": c.capacity.as_dict(),
            "autoscaling": c.autoscaling,
            "load_balancers": list(c.launch.load_balancers),
            "security_groups": list(c.launch.security_groups),
            "user_data": c.launch.user_data,
            "tags": dict(c.launch.tags),
            "health": {"healthy_percent": c.health.healthy_percent, "timeout": to_duration(c.health.timeout_s)},
            "strategy": {
                "type": "red_black",
                "keep_disabled": c.strategy.keep_disabled,
                "scale_down": c.strategy.scale_down,
                "delay_before_disable": to_duration(c.strategy.delay_before_disable_s),
                "delay_before_scale_down": to_duration(c.strategy.delay_before_scale_down_s),
                "rollback_on_failure": c.strategy.rollback_on_failure,
            },
            "rollout": {"waves": [list(w) for w in c.rollout.waves], "pause": to_duration(c.rollout.pause_s)},
        } for c in app.clusters],
    }


def as_template(doc: dict[str, Any]) -> str:
    """YAML with every string JSON-quoted (valid YAML) and wrapped in a raw block, except the image template."""
    dumped = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, default_style=None, width=1_000_000)
    return "{% raw %}" + dumped.replace("'{{ values.image }}'", "{% endraw %}'{{ values.image }}'{% raw %}") + \
        "{% endraw %}"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(applications())
def test_generated_valid_specs_round_trip_to_the_same_model(app: model.Application) -> None:
    template = as_template(to_document(app))
    tree = Tree({"spec.yaml": template, "values.yaml": f"image: {json.dumps('ami-' + app.name)}\n"})

    state = tree.load()

    assert state.problems == ()
    loaded = state.applications[app.name]
    assert (loaded.name, loaded.owner, loaded.criticality) == (app.name, app.owner, app.criticality)
    expected = tuple(
        model.ClusterSpec(
            application=c.application, stack=c.stack, detail=c.detail, provider=c.provider, account=c.account,
            regions=c.regions,
            launch=model.LaunchSpec(
                image=f"ami-{app.name}", instance_type=c.launch.instance_type, user_data=c.launch.user_data,
                security_groups=c.launch.security_groups, load_balancers=c.launch.load_balancers,
                tags=c.launch.tags),
            capacity=c.capacity, autoscaling=c.autoscaling, health=c.health, strategy=c.strategy,
            rollout=c.rollout, source=lc.source,
        )
        for c, lc in zip(app.clusters, loaded.clusters, strict=True)
    )
    assert loaded.clusters == expected
    assert [lc.source.file for lc in loaded.clusters] == ["apps/spec.yaml"] * len(app.clusters)
    assert sorted({lc.source.line for lc in loaded.clusters}) == [lc.source.line for lc in loaded.clusters]

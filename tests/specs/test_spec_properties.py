"""Round trip on generated valid specs: model values -> YAML template -> render -> validate -> the same values."""

from __future__ import annotations

import json
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings

from reconciler.core import model
from tests import builders
from tests.specs.spec_helpers import Tree


def to_duration(s: float) -> str | int:
    """Alternate the spellings a person would use."""
    if s and s % 3600 == 0:
        return f"{int(s // 3600)}h"
    if s and s % 60 == 0:
        return f"{int(s // 60)}m"
    return int(s) if s % 2 else f"{int(s)}s"


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
@given(builders.applications())
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

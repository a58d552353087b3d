"""max_concurrent: an environment takes a new version in at most N regions at a time."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from reconciler.core import environments as envs
from reconciler.core import model
from tests.conftest import DesiredRepo, run_cli
from tests.environments.test_promotion_flow import Pipeline

REGIONS = ("us-east-1", "eu-west-1", "ap-south-1")


def spec(limit: int = 1) -> str:
    return textwrap.dedent(f"""\
        application: checkout
        owner: team@example.com
        version_from: checkout.version
        environments:
          - name: prod
            max_concurrent: {limit}
            clusters:
              - stack: prod
                provider: local
                account: default
                regions: [{", ".join(REGIONS)}]
                image: "checkout-{{version}}"
                instance_type: m5.large
                capacity: {{min: 1, desired: 1, max: 2}}
                rollout: {{waves: [[us-east-1], [eu-west-1, ap-south-1]]}}
        """)


@pytest.fixture
def pipe(tmp_path: Path) -> Any:
    p = Pipeline(tmp_path)
    yield p
    p.close()


def _regions(pipe: Pipeline, image: str) -> set[str]:
    return {g["region"] for g in pipe.engine.status()["server_groups"] if g["image"] == image and g["enabled"]}


def test_regions_take_the_version_one_at_a_time(pipe: Pipeline) -> None:
    pipe.commit("1.0", spec(limit=1))
    pipe.reconcile()
    assert _regions(pipe, "checkout-1.0") == {"us-east-1"}, "one region; the others wait their turn"
    held = [h for h in pipe.engine.status()["held"] if h["kind"] == "max_concurrent"]
    assert [h["key"] for h in held] == ["local/default/eu-west-1/checkout-prod"], "the second wave: one of two"
    assert held[0]["why"] == ("prod takes a new version in at most 1 region(s) at a time; deploying now: "
                              "ap-south-1")
    pipe.reconcile()
    assert _regions(pipe, "checkout-1.0") == {"us-east-1", "ap-south-1"}
    pipe.reconcile()
    assert _regions(pipe, "checkout-1.0") == set(REGIONS)

    pipe.commit("1.1", spec(limit=2))
    pipe.reconcile()
    assert _regions(pipe, "checkout-1.1") == {"us-east-1", "ap-south-1"}, "its first wave and one of the second"
    pipe.reconcile()
    assert _regions(pipe, "checkout-1.1") == set(REGIONS)


def _change(region: str, *, create: bool = True, env: str = "prod") -> model.Change:
    spec = model.ClusterSpec("a", "local", "default", (region,), model.LaunchSpec("i", "t"),
                             model.Capacity(1, 1, 1), environment=env)
    kinds = [model.StepKind.CREATE, model.StepKind.ENABLE] if create else [model.StepKind.ENABLE]
    return model.Change("a", "a", "local", "default", region, model.Action.REPLACE,
                        tuple(model.Step(k, "a-v001") for k in kinds), desired=spec)


def test_a_started_region_goes_first_and_running_ones_count() -> None:
    fresh, started, other = _change("r1"), _change("r2", create=False), _change("r3")
    ok, held = envs.limit_regions([fresh, started, other], {("a", "prod"): 1}, {})
    assert ok == [started] and [c for c, _ in held] == [fresh, other]
    ok, held = envs.limit_regions([fresh], {("a", "prod"): 1}, {("a", "prod"): {"local/default/r9"}})
    assert ok == [] and "deploying now: r9" in held[0][1].message
    ok, _ = envs.limit_regions([fresh, other], {("a", "prod"): 2}, {})
    assert ok == [fresh, other]


def test_max_concurrent_is_checked_and_shown_in_the_delivery_path(tmp_path: Path) -> None:
    repo = DesiredRepo(tmp_path / "desired")
    repo.write("apps/values.yaml", 'checkout:\n  version: "1.0"\n').write("apps/checkout.yaml", spec()).commit()
    repo.write("apps/values.yaml", 'checkout:\n  version: "1.1"\n').commit()
    res = run_cli("plan", "--repo", str(repo.path), "--base", "HEAD~1", "--format", "markdown")
    assert "1. `prod` runs `1.1` in at most 1 region(s) at a time" in res.out, res.out + res.err
    repo.write("apps/checkout.yaml", spec(limit=0)).commit()
    res = run_cli("validate", str(repo.path))
    assert res.code == 1 and "environments[0].max_concurrent: min value is 1" in res.out, res.out

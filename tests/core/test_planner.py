"""The planner is pure and convergent: same inputs, same plan; any interrupted state finishes."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.core import model, planner
from reconciler.core.model import Action, Capacity, StepKind
from tests import builders


def spec(image: str = "img-1", *, desired: int = 2, regions: tuple[str, ...] = ("r1",),
         autoscaling: bool = False, keep: int = 1, scale_down: bool = True) -> model.ClusterSpec:
    """``app-main`` on the local provider, capacity 1..6."""
    return builders.spec(image=image, regions=regions, capacity=Capacity(1, desired, 6), autoscaling=autoscaling,
                         strategy=model.Strategy(keep_disabled=keep, scale_down=scale_down))


def group(version: int, s: model.ClusterSpec, *, enabled: bool = True, desired: int | None = None,
          region: str = "r1", managed: bool = True) -> model.ServerGroup:
    """Version ``version`` of ``s``; ``desired=0`` is a group scaled down to nothing."""
    cap = s.capacity if desired is None else Capacity(s.capacity.min if desired else 0, desired,
                                                      s.capacity.max if desired else 0)
    return builders.group(s, region, version, enabled=enabled, capacity=cap, managed=managed)


def desired(*specs: model.ClusterSpec, commit: str = "c1") -> model.DesiredState:
    return builders.desired(*specs, commit=commit)


def plan(d: model.DesiredState, *groups: model.ServerGroup, **opts: Any) -> model.Plan:
    return builders.outcome(d, *groups, **opts).plan


kinds = builders.kinds


def test_first_deploy_creates_v000_per_region_in_waves() -> None:
    p = plan(desired(spec(regions=("r1", "r2", "r3"))))
    assert [(c.region, c.action, c.wave) for c in p.changes] == [
        ("r1", Action.CREATE, 0), ("r2", Action.CREATE, 1), ("r3", Action.CREATE, 1)]
    assert kinds(p.changes[0]) == [("create", "app-main-v000"), ("wait_healthy", "app-main-v000"),
                                   ("enable", "app-main-v000")]


def test_same_inputs_give_the_same_plan_id() -> None:
    d = desired(spec(image="img-2"))
    live = (group(0, spec()),)
    assert plan(d, *live).plan_id == plan(d, *live).plan_id
    assert plan(d, *live).plan_id != plan(desired(spec(image="img-3")), *live).plan_id


def test_matching_live_state_plans_nothing() -> None:
    s = spec()
    assert plan(desired(s), group(0, s)).changes == ()


def test_replace_creates_next_version_and_retires_the_old_group() -> None:
    old, new = spec(), spec(image="img-2")
    (c,) = plan(desired(new), group(0, old)).changes
    assert c.action is Action.REPLACE and c.current is not None and c.current.name == "app-main-v000"
    assert kinds(c) == [("create", "app-main-v001"), ("wait_healthy", "app-main-v001"),
                        ("enable", "app-main-v001"), ("disable", "app-main-v000"), ("resize", "app-main-v000")]
    assert c.steps[-1].capacity == Capacity(0, 0, 0)


def test_groups_beyond_keep_disabled_are_destroyed_oldest_first() -> None:
    s0, s1, s2 = spec("a"), spec("b"), spec("c")
    live = (group(0, s0, enabled=False, desired=0), group(1, s1))
    (c,) = plan(desired(s2), *live).changes
    assert ("destroy", "app-main-v000") in kinds(c)
    assert ("resize", "app-main-v001") in kinds(c)


def test_capacity_only_is_a_resize_in_place() -> None:
    s = spec()
    (c,) = plan(desired(spec(desired=4)), group(0, s)).changes
    assert c.action is Action.RESIZE and kinds(c) == [("resize", "app-main-v000")]


def test_autoscaled_desired_capacity_is_not_a_diff_and_new_groups_inherit_it() -> None:
    s = spec(autoscaling=True)
    assert plan(desired(s), group(0, s, desired=5)).changes == ()
    (c,) = plan(desired(spec("img-2", autoscaling=True)), group(0, s, desired=5)).changes
    assert c.steps[0].capacity == Capacity(1, 5, 6), "a deploy under load never shrinks the fleet"


def test_a_revert_to_a_retained_group_is_a_rollback_without_a_new_group() -> None:
    s0, s1 = spec("img-1"), spec("img-2")
    live = (group(0, s0, enabled=False, desired=0), group(1, s1))
    (c,) = plan(desired(s0), *live).changes
    assert c.action is Action.ROLLBACK
    assert kinds(c) == [("resize", "app-main-v000"), ("wait_healthy", "app-main-v000"),
                        ("enable", "app-main-v000"), ("disable", "app-main-v001"), ("resize", "app-main-v001")]
    assert all(s.kind is not StepKind.CREATE for s in c.steps)


def test_an_interrupted_deploy_resumes_from_live_state() -> None:
    old, new = spec("img-1"), spec("img-2")
    # crash after create: v001 exists, out of traffic
    (c,) = plan(desired(new), group(0, old), group(1, new, enabled=False)).changes
    assert kinds(c)[:2] == [("wait_healthy", "app-main-v001"), ("enable", "app-main-v001")]
    # crash after enable: both serve
    (c,) = plan(desired(new), group(0, old), group(1, new)).changes
    assert kinds(c) == [("wait_healthy", "app-main-v001"), ("disable", "app-main-v000"),
                        ("resize", "app-main-v000")]
    # crash after disable: old still has capacity
    (c,) = plan(desired(new), group(0, old, enabled=False), group(1, new)).changes
    assert kinds(c) == [("wait_healthy", "app-main-v001"), ("resize", "app-main-v000")]


def test_unmanaged_groups_are_never_touched_but_their_versions_are_skipped() -> None:
    s = spec()
    foreign = dataclasses.replace(group(0, s), managed=False, spec_hash="")
    (c,) = plan(desired(s), foreign).changes
    assert c.action is Action.CREATE and c.desired_server_group == "app-main-v001"
    assert all(step.server_group != "app-main-v000" for step in c.steps)


def test_version_numbers_wrap_at_1000_and_skip_taken_slots() -> None:
    s = spec()
    live = [group(999, s), dataclasses.replace(group(0, s), created_at=1.0)]
    assert planner.next_name("app-main", live) == "app-main-v001"


def test_clusters_gone_from_git_are_destroyed_only_with_prune() -> None:
    s = spec()
    empty = model.DesiredState("c2", {})
    out = planner.plan(empty, planner.LiveState((group(0, s),)), planner.Options(prune=False))
    assert out.plan.changes == () and "prune is off" in out.skipped[0].reason
    p = plan(empty, group(0, s), prune=True)
    assert [(c.action, kinds(c)) for c in p.changes] == [
        (Action.DESTROY, [("disable", "app-main-v000"), ("destroy", "app-main-v000")])]


def test_prune_is_suspended_while_any_spec_file_is_broken() -> None:
    s = spec()
    broken = model.DesiredState("c2", {}, broken_files=frozenset({"apps/app.yaml"}))
    out = planner.plan(broken, planner.LiveState((group(0, s),)), planner.Options(prune=True))
    assert out.plan.changes == () and "have errors" in out.skipped[0].reason


@pytest.mark.parametrize("prune", [False, True])
def test_a_cluster_whose_own_spec_file_is_broken_is_kept_and_the_reason_names_that_file(prune: bool) -> None:
    s = spec()
    broken = model.DesiredState("c2", {}, broken_files=frozenset({"apps/app.yaml"}))
    out = planner.plan(broken, planner.LiveState((group(0, s),)),
                       planner.Options(prune=prune, app_files={"app": "apps/app.yaml"}))
    assert out.plan.changes == ()
    assert [(x.kind, x.reason) for x in out.skipped] == [
        (model.SkipKind.BROKEN_SPECS, "kept: apps/app.yaml has errors; fix it to reconcile app")]


def test_unreadable_regions_and_paused_clusters_are_skipped() -> None:
    s = spec(image="img-2", regions=("r1", "r2"))
    live = planner.LiveState((group(0, spec(regions=("r1", "r2"))),), {("local", "default", "r2"): "boom"})
    out = planner.plan(desired(s), live, planner.Options(paused=frozenset({"app"})))
    assert out.plan.changes == ()
    assert sorted(x.reason.split(":")[0] for x in out.skipped) == ["live state unreadable", "paused"]


@given(
    images=builders.images,
    keep=st.integers(min_value=0, max_value=3),
    scale_down=st.booleans(),
)
def test_applying_any_plan_then_planning_again_is_empty(images: list[str], keep: int, scale_down: bool) -> None:
    """Simulate each plan's steps on live values; the next plan must be empty and capacity must never hit zero."""
    live: dict[str, model.ServerGroup] = {}
    t = 0.0
    for image in images:
        s = spec(image, keep=keep, scale_down=scale_down)
        p = plan(desired(s), *live.values())
        for c in p.changes:
            for step in c.steps:
                t += 1
                name = step.server_group
                if step.kind is StepKind.CREATE:
                    assert step.capacity is not None
                    live[name] = dataclasses.replace(
                        group(0, s, enabled=False), name=name, capacity=step.capacity, healthy=step.capacity.desired,
                        created_at=t)
                elif step.kind is StepKind.ENABLE:
                    live[name] = dataclasses.replace(live[name], enabled=True)
                elif step.kind is StepKind.DISABLE:
                    live[name] = dataclasses.replace(live[name], enabled=False)
                elif step.kind is StepKind.RESIZE:
                    assert step.capacity is not None
                    live[name] = dataclasses.replace(live[name], capacity=step.capacity, healthy=step.capacity.desired)
                elif step.kind is StepKind.DESTROY:
                    del live[name]
                serving = [g for g in live.values() if g.enabled and g.healthy > 0]
                assert serving or t <= 3, f"no healthy enabled capacity after {step.describe()}"
        assert plan(desired(s), *live.values()).changes == ()
        assert sum(1 for g in live.values() if not g.enabled) <= keep

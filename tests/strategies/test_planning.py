"""Strategies as steps: highlander keeps nothing, rolling grows and shrinks in shares, both converge from any
interrupted state."""

from __future__ import annotations

import dataclasses

import pytest

from reconciler.core import model, planner
from reconciler.core.model import Action, Capacity, StepKind, StrategyType
from reconciler.core.strategies import rolling
from tests.core.test_planner import desired, group, kinds, plan, spec


def with_strategy(s: model.ClusterSpec, kind: StrategyType, steps: tuple[int, ...] = (100,),
                  pause_s: float = 0.0, keep: int = 1) -> model.ClusterSpec:
    return dataclasses.replace(s, strategy=model.Strategy(type=kind, steps=steps, pause_s=pause_s,
                                                          keep_disabled=keep))


def test_highlander_destroys_every_older_group_once_the_new_one_serves() -> None:
    old = spec()
    new = with_strategy(spec(image="img-2"), StrategyType.HIGHLANDER, keep=0)
    (c,) = plan(desired(new), group(0, old), group(1, old, enabled=False, desired=0)).changes
    assert kinds(c) == [("create", "app-main-v002"), ("wait_healthy", "app-main-v002"), ("enable", "app-main-v002"),
                        ("disable", "app-main-v000"), ("destroy", "app-main-v001"), ("destroy", "app-main-v000")]


def test_rolling_grows_the_new_group_and_shrinks_the_old_by_the_same_share() -> None:
    old = spec(desired=4)
    new = with_strategy(spec(image="img-2", desired=4), StrategyType.ROLLING_RED_BLACK, steps=(25, 50, 100),
                        pause_s=60)
    (c,) = plan(desired(new), group(0, old)).changes
    v0, v1 = "app-main-v000", "app-main-v001"
    got = [(s.kind.value, s.server_group, s.capacity.desired if s.capacity else None, s.percent) for s in c.steps]
    assert got == [
        ("create", v1, 1, 25), ("wait_healthy", v1, None, 25), ("enable", v1, None, 25),
        ("resize", v0, 3, 25), ("delay", v1, None, 25),
        ("resize", v1, 2, 50), ("wait_healthy", v1, None, 50), ("resize", v0, 2, 50), ("delay", v1, None, 50),
        ("resize", v1, 4, 100), ("wait_healthy", v1, None, 100),
        ("disable", v0, None, 0), ("resize", v0, 0, 0),
    ]
    assert c.restore == ((v0, Capacity(1, 4, 6)),)
    assert c.steps[0].describe() == "create app-main-v001 (min 1, desired 1, max 6) [rolling step 25%]"


def _serving_after_each_step(c: model.Change, start: dict[str, int]) -> list[int]:
    """Serving capacity (enabled groups' desired) after each step, assuming every group is healthy."""
    size, enabled = dict(start), {n: True for n in start}
    out = []
    for s in c.steps:
        if s.kind in (StepKind.CREATE, StepKind.RESIZE) and s.capacity is not None:
            size[s.server_group] = s.capacity.desired
            enabled.setdefault(s.server_group, False)
        elif s.kind is StepKind.ENABLE:
            enabled[s.server_group] = True
        elif s.kind is StepKind.DISABLE:
            enabled[s.server_group] = False
        out.append(sum(n for g, n in size.items() if enabled[g]))
    return out


@pytest.mark.parametrize("desired_n", [1, 2, 3, 5, 10])
@pytest.mark.parametrize("steps", [(25, 50, 100), (10, 100), (100,), (33, 66, 100)])
def test_rolling_never_serves_less_than_the_target_capacity(desired_n: int, steps: tuple[int, ...]) -> None:
    old = spec(desired=desired_n)
    new = with_strategy(spec(image="img-2", desired=desired_n), StrategyType.ROLLING_RED_BLACK, steps=steps)
    (c,) = plan(desired(new), group(0, old)).changes
    served = _serving_after_each_step(c, {"app-main-v000": desired_n})
    assert min(served) >= desired_n, served


def test_an_interrupted_rolling_deployment_continues_from_the_step_it_reached() -> None:
    old = spec(desired=4)
    new = with_strategy(spec(image="img-2", desired=4), StrategyType.ROLLING_RED_BLACK, steps=(25, 50, 100))
    key = "local/default/r1/app-main"
    origins = {rolling.origin_key(key, "app-main-v001", "app-main-v000"): Capacity(1, 4, 6)}
    # crashed after growing to 50%, before the old group shrank for that step
    live = (group(0, old, desired=3), dataclasses.replace(group(1, new, desired=2), created_at=1.0))
    (c,) = plan(desired(new), *live, rolling_origins=origins).changes
    got = [(s.kind.value, s.server_group, s.capacity.desired if s.capacity else None) for s in c.steps]
    assert got == [("wait_healthy", "app-main-v001", None), ("resize", "app-main-v000", 2),
                   ("resize", "app-main-v001", 4), ("wait_healthy", "app-main-v001", None),
                   ("disable", "app-main-v000", None), ("resize", "app-main-v000", 0)]
    assert c.restore == (("app-main-v000", Capacity(1, 4, 6)),)
    assert c.reason == "resume: rolling deployment of app-main-v001"


def test_every_state_of_a_rolling_deployment_plans_to_the_same_end() -> None:
    """Apply the steps one by one to a simulated live state; from every prefix, planning again converges."""
    old = spec(desired=4)
    new = with_strategy(spec(image="img-2", desired=4), StrategyType.ROLLING_RED_BLACK, steps=(25, 50, 100))
    first = plan(desired(new), group(0, old)).changes[0]
    key = first.key
    origins = {rolling.origin_key(key, first.desired_server_group or "", n): cap for n, cap in first.restore}
    for k in range(len(first.steps) + 1):
        live = _apply(first.steps[:k], [group(0, old)], new)
        for _ in range(3):  # at most a resume and a finish
            p = plan(desired(new), *live, rolling_origins=origins)
            if not p.changes:
                break
            live = _apply(p.changes[0].steps, live, new)
        assert not plan(desired(new), *live, rolling_origins=origins).changes, k
        names = {g.name: g for g in live}
        assert names["app-main-v001"].enabled and names["app-main-v001"].capacity.desired == 4
        assert not names["app-main-v000"].enabled and names["app-main-v000"].capacity.desired == 0


def _apply(steps: tuple[model.Step, ...], live: list[model.ServerGroup] | tuple[model.ServerGroup, ...],
           new: model.ClusterSpec) -> list[model.ServerGroup]:
    groups = {g.name: g for g in live}
    for s in steps:
        g = groups.get(s.server_group)
        if s.kind is StepKind.CREATE and s.capacity is not None:
            groups[s.server_group] = dataclasses.replace(group(1, new), capacity=s.capacity, enabled=False,
                                                         healthy=s.capacity.desired, created_at=1.0)
        elif g is not None and s.kind is StepKind.RESIZE and s.capacity is not None:
            groups[g.name] = dataclasses.replace(g, capacity=s.capacity, healthy=s.capacity.desired)
        elif g is not None and s.kind in (StepKind.ENABLE, StepKind.DISABLE):
            groups[g.name] = dataclasses.replace(g, enabled=s.kind is StepKind.ENABLE)
        elif s.kind is StepKind.DESTROY:
            groups.pop(s.server_group, None)
    return list(groups.values())


def test_rolling_first_deploy_creates_at_full_capacity() -> None:
    new = with_strategy(spec(desired=4), StrategyType.ROLLING_RED_BLACK, steps=(25, 50, 100))
    (c,) = plan(desired(new)).changes
    assert c.action is Action.CREATE and c.steps[0].capacity == Capacity(1, 4, 6) and c.restore == ()


def test_the_undo_of_a_rolling_step_restores_the_old_groups_before_removing_the_new_one() -> None:
    old = spec(desired=4)
    new = with_strategy(spec(image="img-2", desired=4), StrategyType.ROLLING_RED_BLACK, steps=(25, 50, 100))
    (c,) = plan(desired(new), group(0, old)).changes
    undo = rolling.undo_steps(c, 60, 100)
    assert [(s.kind.value, s.server_group) for s in undo] == [
        ("resize", "app-main-v000"), ("wait_healthy", "app-main-v000"), ("disable", "app-main-v001"),
        ("destroy", "app-main-v001")]
    assert undo[0].capacity == Capacity(1, 4, 6)


def test_hooks_run_before_the_old_groups_leave_traffic_and_before_a_first_group_is_enabled() -> None:
    hooked = dataclasses.replace(spec(image="img-2"), strategy=model.Strategy(verify=("smoke", "errors")))
    (first,) = plan(desired(hooked)).changes
    assert [s.kind.value for s in first.steps] == ["create", "wait_healthy", "verify", "verify", "enable"]
    (c,) = plan(desired(hooked), group(0, spec())).changes
    assert [(s.kind.value, s.reason) for s in c.steps][2:5] == [("enable", ""), ("verify", "smoke"),
                                                               ("verify", "errors")]
    assert [s.kind.value for s in c.steps][5:] == ["disable", "resize"]
    rolling_spec = dataclasses.replace(hooked, strategy=model.Strategy(
        type=StrategyType.ROLLING_RED_BLACK, steps=(50, 100), verify=("smoke",)))
    (r,) = plan(desired(rolling_spec), group(0, spec())).changes
    assert [(s.kind.value, s.percent) for s in r.steps if s.kind is StepKind.VERIFY] == [("verify", 50),
                                                                                         ("verify", 100)]


def test_malformed_origin_records_are_ignored() -> None:
    assert rolling.parse_origins({"a": {"min": 1, "desired": 2, "max": 3}, "b": {"min": "x"}, "c": 4}) == {
        "a": Capacity(1, 2, 3)}


def test_red_black_plans_are_unchanged_by_the_strategies() -> None:
    old, new = spec(), spec(image="img-2")
    (c,) = planner.plan(desired(new), planner.LiveState((group(0, old),))).plan.changes
    assert c.restore == () and not any(s.percent for s in c.steps)


def _judged(steps: tuple[int, ...], approve: tuple[int, ...]) -> model.ClusterSpec:
    s = with_strategy(spec(image="img-2", desired=4), StrategyType.ROLLING_RED_BLACK, steps=steps)
    return dataclasses.replace(s, strategy=dataclasses.replace(s.strategy, approval_steps=approve))


@pytest.mark.parametrize("approve", [(50,), (25, 100), (100,)])
def test_a_step_with_pause_for_approval_ends_the_change_and_the_next_starts_with_the_judgment(
        approve: tuple[int, ...]) -> None:
    """Walk the deployment as the executor would (a change that stops records the step it reached, a judgment
    step records its approval), crashing after every prefix of every change: it always converges, every
    approval step is judged exactly once, and no step past a waiting one ever runs before its approval."""
    old, new = spec(desired=4), _judged((25, 50, 100), approve)
    first = plan(desired(new), group(0, old)).changes[0]
    origins = {rolling.origin_key(first.key, first.desired_server_group or "", n): c for n, c in first.restore}
    jkey = rolling.judgment_key(first.key)
    assert not any(s.kind is StepKind.JUDGMENT for s in first.steps)
    assert rolling.stops_at(first) == approve[0]
    assert max(s.percent for s in first.steps) == approve[0]  # nothing of a later step before the judgment
    for crash_at in range(8):
        crash = crash_at
        live: list[model.ServerGroup] = [group(0, old)]
        record: rolling.Judgment | None = None
        judged: list[int] = []
        for _ in range(12):
            p = plan(desired(new), *live, rolling_origins=origins,
                     rolling_judgments={jkey: record} if record else {})
            if not p.changes:
                break
            (c,) = p.changes
            if StepKind.JUDGMENT in [s.kind for s in c.steps]:  # the manual-judgment policy holds all of it:
                assert [s.kind for s in c.steps][:2] == [StepKind.WAIT_HEALTHY, StepKind.JUDGMENT]  # none first
                assert c.steps[1].percent not in (record.approved if record else ())
            prefix = c.steps if crash >= len(c.steps) else c.steps[:crash]
            for s in prefix:
                if s.kind is StepKind.JUDGMENT:
                    judged.append(s.percent)
                    record = rolling.Judgment(c.desired_server_group or "", 0,
                                              tuple(sorted({*(record.approved if record else ()), s.percent})))
            live = _apply(prefix, live, new)
            if prefix == c.steps and (at := rolling.stops_at(c)) is not None:
                record = rolling.Judgment(c.desired_server_group or "", at, record.approved if record else ())
            crash = 99  # one crash per walk, then every change runs to its end
        names = {g.name: g for g in live}
        assert names["app-main-v001"].enabled and names["app-main-v001"].capacity.desired == 4, crash_at
        assert not names["app-main-v000"].enabled
        assert sorted(set(judged)) == sorted(approve) and len(judged) == len(approve), judged


def test_the_judgment_of_a_rolling_step_reads_as_such_and_the_plan_json_lists_the_steps_that_wait() -> None:
    from reconciler.core import strategies

    new = _judged((25, 50, 100), (50,))
    step = model.Step(StepKind.JUDGMENT, "app-main-v001", percent=50)
    assert step.describe() == ("manual judgment: app-main-v001 is healthy at the 50% step; continues once approved "
                               "[rolling step 50%]")
    view = strategies.view(new.strategy)
    assert view["steps"] == [25, 50, 100] and view["approval_steps"] == [50]
    assert view["summary"].endswith("after the 50% step(s) it waits for `reconciler approve`")
    assert rolling.parse_judgments({"a": {"server_group": "g", "reached": 50, "approved": [25]},
                                    "b": {"server_group": "g", "reached": "x", "approved": []}}) == {
        "a": rolling.Judgment("g", 50, (25,))}

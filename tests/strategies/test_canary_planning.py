"""The canary as steps, convergent from live state and its progress record: from any interrupted state the
plan continues where the deployment stands, never judges a passed canary again, never touches the serving
group before the analysis passed."""

from __future__ import annotations

import dataclasses

from reconciler.core import canary as canary_mod
from reconciler.core import model, strategies
from reconciler.core.model import Action, Capacity, StrategyType
from reconciler.core.strategies import canary, rolling
from tests.core.test_planner import desired, group, kinds, plan, spec

KEY = canary.progress_key("local/default/r1/app-main")
V0, V1, V2 = "app-main-v000", "app-main-v001", "app-main-v002"
METRIC = canary_mod.Metric("errors", "max(errors)", fail_if=(">", 0.01))


def with_canary(s: model.ClusterSpec, **kw: object) -> model.ClusterSpec:
    c = canary_mod.Canary(metrics=(METRIC,), duration_s=600, interval_s=60, **kw)  # type: ignore[arg-type]
    return dataclasses.replace(s, strategy=model.Strategy(type=StrategyType.CANARY, canary=c))


OLD, NEW = spec(desired=4), with_canary(spec(image="img-2", desired=4))


def _small(version: int, s: model.ClusterSpec, **kw: object) -> model.ServerGroup:
    g = group(version, s, **kw)  # type: ignore[arg-type]
    return dataclasses.replace(g, capacity=Capacity(1, 1, 1), healthy=1, instances=1)


def test_the_canary_and_its_baseline_serve_beside_the_untouched_group_until_the_analysis_passes() -> None:
    (c,) = plan(desired(NEW), group(0, OLD)).changes
    assert c.action is Action.REPLACE and c.desired_server_group == V1
    assert kinds(c) == [
        ("create", V1), ("wait_healthy", V1), ("enable", V1), ("baseline", V2), ("wait_healthy", V2),
        ("enable", V2), ("analyze", V1), ("disable", V2), ("destroy", V2), ("resize", V1), ("wait_healthy", V1),
        ("disable", V0), ("resize", V0)]
    analyze = c.steps[6]
    assert (analyze.seconds, analyze.reason) == (600, V2)
    assert c.steps[3].reason == V0 and c.steps[3].capacity == Capacity(1, 1, 1)
    before = c.steps[:7]
    assert not [s for s in before if s.server_group == V0], "the serving group is not touched before the verdict"
    assert canary.baseline_of(c) == V2


def test_after_a_crash_before_the_analysis_the_plan_resumes_it_with_the_recorded_baseline() -> None:
    rec = canary.Progress(V1, V2, NEW.launch.spec_hash(), started=1000.0)
    live = (group(0, OLD), _small(1, NEW), _small(2, OLD))
    (c,) = plan(desired(NEW), *live, canaries={KEY: rec}).changes
    assert c.reason == f"resume: canary deployment of {V1}"
    assert kinds(c)[:3] == [("wait_healthy", V1), ("wait_healthy", V2), ("analyze", V1)]
    assert c.current is not None and c.current.name == V0


def test_a_passed_canary_is_never_judged_again_and_its_leftover_baseline_goes_first() -> None:
    rec = canary.Progress(V1, V2, NEW.launch.spec_hash(), started=1000.0, passed=True)
    (c,) = plan(desired(NEW), group(0, OLD), _small(1, NEW), _small(2, OLD), canaries={KEY: rec}).changes
    assert kinds(c) == [("wait_healthy", V1), ("disable", V2), ("destroy", V2), ("resize", V1),
                        ("wait_healthy", V1), ("disable", V0), ("resize", V0)]
    (c,) = plan(desired(NEW), group(0, OLD), _small(1, NEW), canaries={KEY: rec}).changes
    assert kinds(c)[:2] == [("wait_healthy", V1), ("resize", V1)]


def test_pause_for_approval_ends_the_first_change_at_the_baseline_and_starts_the_next_with_the_judgment() -> None:
    paused = with_canary(spec(image="img-2", desired=4), pause_for_approval=True)
    (c,) = plan(desired(paused), group(0, OLD)).changes
    assert kinds(c)[-3:] == [("analyze", V1), ("disable", V2), ("destroy", V2)]
    rec = canary.Progress(V1, V2, paused.launch.spec_hash(), started=1000.0, passed=True)
    (c,) = plan(desired(paused), group(0, OLD), _small(1, paused), canaries={KEY: rec}).changes
    assert kinds(c)[:3] == [("wait_healthy", V1), ("judgment", V1), ("resize", V1)]
    approved = dataclasses.replace(rec, approved=True)
    (c,) = plan(desired(paused), group(0, OLD), _small(1, paused), canaries={KEY: approved}).changes
    assert "judgment" not in [k for k, _ in kinds(c)]


def test_a_new_cluster_skips_the_baseline_and_enables_the_canary_only_once_it_passed() -> None:
    (c,) = plan(desired(NEW)).changes
    assert c.action is Action.CREATE and c.reason == "first deploy: canary without a baseline (nothing serves yet)"
    assert kinds(c) == [("create", V0), ("wait_healthy", V0), ("analyze", V0), ("resize", V0),
                        ("wait_healthy", V0), ("enable", V0)]
    assert c.steps[2].reason == ""


def test_a_stale_record_of_another_spec_starts_a_new_canary_and_removes_the_old_baseline() -> None:
    rec = canary.Progress(V1, V2, "another-spec", started=1000.0)
    newer = with_canary(spec(image="img-3", desired=4))
    (c,) = plan(desired(newer), group(0, OLD), _small(1, NEW), _small(2, OLD), canaries={KEY: rec}).changes
    assert kinds(c)[:3] == [("disable", V2), ("destroy", V2), ("create", "app-main-v003")]


def test_progress_records_round_trip_and_malformed_ones_are_ignored() -> None:
    rec = canary.Progress(V1, V2, "h", started=5.0, passed=True, approved=False)
    assert canary.parse({KEY: rec.as_dict(), "canary/x": {"canary": 1}, "canary/y": "junk"}) == {KEY: rec}


def _then_rolling(steps: tuple[int, ...], approve: tuple[int, ...] = ()) -> model.ClusterSpec:
    c = canary_mod.Canary(metrics=(METRIC,), duration_s=600, interval_s=60, then="rolling_red_black")
    return dataclasses.replace(spec(image="img-2", desired=4), strategy=model.Strategy(
        type=StrategyType.CANARY, canary=c, steps=steps, approval_steps=approve))


def test_then_rolling_red_black_grows_the_passed_canary_in_steps_while_the_serving_group_shrinks() -> None:
    rolls = _then_rolling((25, 50, 100))
    (c,) = plan(desired(rolls), group(0, OLD)).changes
    got = [(s.kind.value, s.server_group, s.capacity.desired if s.capacity else None, s.percent) for s in c.steps]
    assert got == [
        ("create", V1, 1, 0), ("wait_healthy", V1, None, 0), ("enable", V1, None, 0), ("baseline", V2, 1, 0),
        ("wait_healthy", V2, None, 0), ("enable", V2, None, 0), ("analyze", V1, None, 0),
        ("disable", V2, None, 0), ("destroy", V2, None, 0),
        ("resize", V1, 1, 25), ("wait_healthy", V1, None, 25), ("resize", V0, 3, 25),  # the canary is the
        # 25% step already (its max grows to the spec's)
        ("resize", V1, 2, 50), ("wait_healthy", V1, None, 50), ("resize", V0, 2, 50),
        ("resize", V1, 4, 100), ("wait_healthy", V1, None, 100), ("disable", V0, None, 0), ("resize", V0, 0, 0)]
    assert c.restore == ((V0, Capacity(1, 4, 6)),), "the serving group's capacity to return to on failure"
    assert rolling_undo(c) == [("resize", V0), ("wait_healthy", V0), ("disable", V1),
                                               ("destroy", V1)]
    # after a crash at the 50% step the passed canary resumes from its live size, with the recorded origin
    key = "local/default/r1/app-main"
    rec = canary.Progress(V1, V2, rolls.launch.spec_hash(), started=1000.0, passed=True)
    origins = {rolling.origin_key(key, V1, V0): Capacity(1, 4, 6)}
    live = (group(0, OLD, desired=3), dataclasses.replace(group(1, rolls, desired=2), created_at=1.0))
    (r,) = plan(desired(rolls), *live, canaries={KEY: rec}, rolling_origins=origins).changes
    assert "analyze" not in [k for k, _ in kinds(r)] and r.restore == ((V0, Capacity(1, 4, 6)),)
    assert [(k, n) for k, n in kinds(r)][-5:] == [("resize", V0), ("resize", V1), ("wait_healthy", V1),
                                                  ("disable", V0), ("resize", V0)]
    assert "on pass rolling_red_black in steps of 25%, 50%, 100%" in strategies.describe(rolls.strategy)
    assert strategies.view(rolls.strategy)["steps"] == [25, 50, 100]


def test_then_rolling_red_black_stops_at_a_step_with_pause_for_approval_and_keeps_the_canary_record() -> None:
    rolls = _then_rolling((25, 50, 100), approve=(50,))
    (c,) = plan(desired(rolls), group(0, OLD)).changes
    assert rolling.stops_at(c) == 50 and kinds(c)[-1] == ("resize", V0)
    rec = canary.Progress(V1, V2, rolls.launch.spec_hash(), started=1000.0, passed=True)
    live = (group(0, OLD, desired=2), dataclasses.replace(group(1, rolls, desired=2), created_at=1.0))
    (j,) = plan(desired(rolls), *live, canaries={KEY: rec},
                rolling_judgments={rolling.judgment_key("local/default/r1/app-main"): rolling.Judgment(V1, 50)},
                rolling_origins={rolling.origin_key("local/default/r1/app-main", V1, V0): Capacity(1, 4, 6)}
                ).changes
    assert [k for k, _ in kinds(j)][:3] == ["wait_healthy", "wait_healthy", "judgment"]


def rolling_undo(c: model.Change) -> list[tuple[str, str]]:
    return [(s.kind.value, s.server_group) for s in rolling.undo_steps(c, 60, 100)]

"""Planning and judging per cluster: a commit that changes one file plans and judges that file's clusters
only, and the plan is byte for byte the one planning and judging every cluster anew gives."""

from __future__ import annotations

from datetime import UTC, datetime

from reconciler import planfile
from reconciler.config import settings as config_mod
from reconciler.core import clock as clock_mod
from reconciler.core import memo
from reconciler.runtime import engine as engine_mod
from reconciler.state import keys
from tests.conftest import Env, app_spec

CLOSED = """
defaults:
  windows:
    timezone: UTC
    allow: [{days: [mon], from: "09:00", to: "10:00"}]
"""


def _saved(eng: engine_mod.Engine, *, fresh: bool) -> str:
    """The saved plan of the commit in force, from the engine's memos or (``fresh``) planned anew."""
    pipeline = eng.pipeline
    want = eng.desired.at(eng.store.get(keys.LAST_GOOD))
    saved = pipeline.evaluations, pipeline.clusters, pipeline.verdicts
    if fresh:
        pipeline.evaluations, pipeline.clusters, pipeline.verdicts = memo.LastResult(), memo.PerKey(), memo.PerKey()
    try:
        ev = pipeline.evaluate(want)
    finally:
        pipeline.evaluations, pipeline.clusters, pipeline.verdicts = saved
    return planfile.dump_plan(ev.plan, held=ev.held, skipped=ev.outcome.skipped)


def test_a_one_file_commit_plans_only_its_clusters_and_the_same_plan(env: Env) -> None:
    for i in range(4):
        env.repo.write(f"apps/app{i}.yaml", app_spec(f"app{i}", image=f"app{i}-1.0"))  # 2 regions each
    env.repo.write("apps/policies.yaml", CLOSED).commit("four apps; a window that is closed now")
    clock = clock_mod.FakeClock(datetime(2026, 11, 28, 10, 0, tzinfo=UTC).timestamp())  # Saturday: nothing runs
    eng = engine_mod.Engine(config_mod.load_config(str(env.config)), clock=clock, background=True)
    clusters = eng.pipeline.clusters
    try:
        eng.reconcile()
        assert (clusters.misses, clusters.hits) == (8, 0)
        eng.reconcile()  # the first pass's evaluation reused whole: nothing planned again
        assert (clusters.misses, clusters.hits) == (8, 0) and eng.pipeline.evaluations.hits == 1
        assert _saved(eng, fresh=False) == _saved(eng, fresh=True)

        env.repo.write("apps/app2.yaml", app_spec("app2", image="app2-2.0")).commit("one file")
        misses, hits = clusters.misses, clusters.hits
        judged = eng.pipeline.verdicts.misses, eng.pipeline.verdicts.hits
        result = eng.reconcile()
        assert (clusters.misses - misses, clusters.hits - hits) == (2, 6), "app2's two regions only"
        assert (eng.pipeline.verdicts.misses - judged[0], eng.pipeline.verdicts.hits - judged[1]) == (1, 3), \
            "app2's cluster only is judged again (both its regions at once)"
        assert result.changes == 8
        assert _saved(eng, fresh=False) == _saved(eng, fresh=True)  # every change carries the new commit

        env.repo.remove("apps/app3.yaml").commit("one application fewer")
        misses = clusters.misses
        eng.reconcile()
        assert clusters.misses == misses and eng.status()["changes"] and len(eng.status()["changes"]) == 6
        assert _saved(eng, fresh=False) == _saved(eng, fresh=True)
    finally:
        eng.close()


def test_the_verdicts_memo_keeps_the_policy_settings_the_evaluation_holds(env: Env) -> None:
    """A tree without policies.yaml: every load gives the same settings object, so the memo's inputs hold the
    evaluation's own settings (and their resolved layers), not an equal copy from the pass that made them."""
    for i in range(2):
        env.repo.write(f"apps/app{i}.yaml", app_spec(f"app{i}", image=f"app{i}-1.0"))
    env.repo.commit("two apps, no policies.yaml")
    eng = engine_mod.Engine(config_mod.load_config(str(env.config)), background=True)
    try:
        eng.freeze(by="test", reason="judge, run nothing")
        eng.reconcile()
        env.repo.write("apps/app1.yaml", app_spec("app1", image="app1-2.0")).commit("one file")
        result = eng.reconcile()
        assert result.evaluation is not None and eng.pipeline.verdicts.hits == 1  # app0's cluster reused
        held = result.evaluation.policy_file
        entries = list(eng.pipeline.verdicts._entries.values())
        assert len(entries) == 2 and all(inputs[0][0] is held for inputs, _ in entries)
    finally:
        eng.close()


def test_a_process_of_one_pass_keeps_nothing_and_plans_the_same(env: Env) -> None:
    """``plan`` and ``status`` evaluate once (``Engine(remember=False)``): the per-cluster memos keep no inputs
    of the fleet until the process exits, and the plan is the remembering engine's, byte for byte."""
    for i in range(3):
        env.repo.write(f"apps/app{i}.yaml", app_spec(f"app{i}", image=f"app{i}-1.0"))
    env.repo.write("apps/policies.yaml", CLOSED).commit("three apps; a window that is closed now")
    clock = clock_mod.FakeClock(datetime(2026, 11, 28, 10, 0, tzinfo=UTC).timestamp())
    cfg = config_mod.load_config(str(env.config))
    plans = []
    for remember in (True, False):
        eng = engine_mod.Engine(cfg, clock=clock, remember=remember)
        try:
            ev = eng.plan()
            plans.append(planfile.dump_plan(ev.plan, held=ev.held, skipped=ev.outcome.skipped))
            kept = len(eng.pipeline.clusters._entries), len(eng.pipeline.verdicts._entries)
            assert kept == ((6, 3) if remember else (0, 0)), (remember, kept)
            asked = eng.pipeline.clusters.misses, eng.pipeline.verdicts.misses
            assert asked == ((6, 3) if remember else (0, 0)), "a memo that keeps nothing is not even asked"
        finally:
            eng.close()
    assert plans[0] == plans[1]
    assert '"verdict": "deny"' in plans[0] or '"verdict":"deny"' in plans[0], "the closed window judged both"

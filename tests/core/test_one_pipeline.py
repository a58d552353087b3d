"""Every way of planning or acting goes through the one pipeline (``runtime.pipeline.Pipeline.run``).

The pipeline counts its passes by mode; each entry point must add exactly its own pass: a command
that re-implemented the chain (fetch -> load -> evaluate -> execute) would add none.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

from werkzeug.test import Client

from reconciler import daemon, http
from reconciler.config import settings as config_mod
from reconciler.console import backend
from reconciler.runtime import pipeline
from reconciler.runtime.pipeline import Mode
from reconciler.state import keys
from tests.conftest import Env, app_spec


def _runs(action: Callable[[], object]) -> collections.Counter[Mode]:
    before = pipeline.RUNS.copy()
    action()
    return pipeline.RUNS - before


def test_every_entry_point_runs_the_one_pipeline_once(env: Env, tmp_path: Path) -> None:
    env.repo.write("apps/checkout.yaml", app_spec()).commit("v1")
    assert _runs(lambda: env.cli("plan")) == {Mode.PREVIEW: 1}
    assert _runs(lambda: env.cli("apply", "--yes")) == {Mode.APPLY: 1}
    assert _runs(lambda: env.cli("status")) == {Mode.PREVIEW: 1}
    plan_id = json.loads(env.cli("plan", "--format", "json").out)["plan_id"]
    assert _runs(lambda: env.cli("approve", plan_id)) == {Mode.PREVIEW: 1}, "a decision binds to the plan in force"
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2")).commit("v2")
    assert _runs(lambda: env.cli("run", "--once")) == {Mode.APPLY: 1}

    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-3")).commit("v3")
    cfg = config_mod.load_config(str(env.config))
    d = daemon.Daemon(str(env.config), cfg, {})
    try:
        assert _runs(lambda: d._pass("poll")) == {Mode.BACKGROUND: 1}
        fetches = d.engine.desired.git.fetches
        assert _runs(lambda: d.engine.wait(timeout=60)) == {}, "a finished rollout causes no pass"
        assert d.engine.desired.git.fetches == fetches, "nor a read of Git"
        status = d.engine.store.get(keys.STATUS)
        assert [c["type"] for c in status["applications"]["checkout"]["conditions"]] == ["Ready"], \
            "status shows the rollout's regions as they are after it"

        preview = backend.EngineBackend(d.engine, d.trigger)
        assert _runs(lambda: preview.plan_preview(fresh=True)) == {Mode.PREVIEW: 1}

        token = tmp_path / "token"
        token.write_text("s3cret\n")
        client = Client(http.Api(d.engine, d.trigger, token_file=token, branch="main"))
        d.scheduler.start()
        before = pipeline.RUNS.copy()
        res = client.post("/api/v1/reconcile", headers={"Authorization": "Bearer s3cret"})
        assert res.status_code == 202
        deadline = time.monotonic() + 30
        while pipeline.RUNS - before != {Mode.BACKGROUND: 1} and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pipeline.RUNS - before == {Mode.BACKGROUND: 1}, "an HTTP-triggered pass is a daemon pass"
        # the scheduler removes a run job just after submitting it; a shutdown in between (STATE_STOPPED)
        # makes that removal look among pending jobs and fail in APScheduler's thread
        while d.scheduler.get_job("trigger-api") is not None and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        if d.scheduler.running:
            d.scheduler.shutdown(wait=True)
        d.engine.stop(10)
        d.engine.close()


def test_rollouts_that_end_while_the_pass_lock_is_held_are_settled_in_one_evaluation(env: Env) -> None:
    for name in ("a", "b", "c"):
        env.repo.write(f"apps/{name}.yaml", app_spec(name, regions=("us-east-1",)))
    env.repo.commit("three applications")
    cfg = config_mod.load_config(str(env.config))
    d = daemon.Daemon(str(env.config), cfg, {})
    try:
        ended = list(d.engine.plan().plan.changes)  # the three creates, as the rollouts' ``on_done`` passes them
        assert len(ended) == 3
        d._pass("poll")
        d.engine.wait(timeout=60)
        pipe = d.engine.pipeline
        before = pipe.evaluations.hits + pipe.evaluations.misses
        with pipe.lock:  # a pass in progress while three rollouts end
            threads = [threading.Thread(target=pipe.settle, args=([c],)) for c in ended]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 10
            while len(pipe._to_settle) < len(threads) and time.monotonic() < deadline:
                time.sleep(0.01)
        for t in threads:
            t.join(timeout=10)
        assert pipe.evaluations.hits + pipe.evaluations.misses - before == 1, "one evaluation for all three"
        assert pipe._to_settle == []
    finally:
        d.engine.close()

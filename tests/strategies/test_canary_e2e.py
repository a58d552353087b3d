"""Canary deployments end to end through the CLI on the local provider, judged by a real Prometheus.

The Prometheus is backfilled with per-server-group series named as the reconciler names its groups (the
serving group is ``checkout-main-v000``, the canary ``-v001``, its baseline ``-v002``), so each verdict is
exact. A sampler reads the simulated cloud throughout: the serving group is never touched by a failed
canary, and the canary never grows beyond its own size before its analysis passed.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from tests import prometheus_server
from tests.conftest import DesiredRepo, Env, app_spec, reconciler_subprocess, write_config

REGION = ("us-east-1",)
SERVING, CANARY, BASELINE = "checkout-main-v000", "checkout-main-v001", "checkout-main-v002"
STRATEGY = """\
strategy:
  type: canary
  canary:
    duration: 2s
    interval: 1s
    metrics:
      - name: errors
        query: 'avg(errors{server_group="${server_group}"})'
        fail_if: "> 0.01"
      - name: latency
        query: 'avg(latency{server_group="${server_group}"})'
        compare: {direction: increase, tolerance: 0.1}
"""
GOOD = {"errors": {CANARY: (0.002, 0.001)},
        "latency": {CANARY: (100.0, 5.0), BASELINE: (100.0, 5.0)}}
BAD = {"errors": {CANARY: (0.05, 0.01)},
       "latency": {CANARY: (150.0, 5.0), BASELINE: (100.0, 5.0)}}


class Watch(threading.Thread):
    """Samples the simulated cloud: the serving group's lowest desired size and whether it ever left traffic,
    the canary's largest size, and the lowest total serving capacity."""

    def __init__(self, db: Path) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.stop = threading.Event()
        self.samples = 0
        self.serving_min: int | None = None
        self.serving_always_enabled = True
        self.canary_max = 0
        self.total_min: int | None = None

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=1)
                rows = conn.execute("SELECT data FROM local_server_groups").fetchall()
                conn.close()
            except sqlite3.Error:
                continue
            docs = {d["name"]: d for d in (yaml.safe_load(r[0]) for r in rows)}
            if SERVING in docs:
                s = docs[SERVING]
                self.serving_min = min(self.serving_min if self.serving_min is not None else 99,
                                       int(s["capacity"]["desired"]))
                self.serving_always_enabled &= bool(s["enabled"])
            if CANARY in docs:
                self.canary_max = max(self.canary_max, int(docs[CANARY]["capacity"]["desired"]))
            total = sum(int(d["capacity"]["desired"]) for d in docs.values() if d["enabled"])
            self.total_min = total if self.total_min is None else min(self.total_min, total)
            self.samples += 1
            time.sleep(0.002)

    def __enter__(self) -> Watch:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join()


def _env(tmp_path: Path, url: str, **config: object) -> Env:
    repo = DesiredRepo(tmp_path / "desired")
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "config.yaml", repo.path, state, analysis={"prometheus": {"url": url}}, **config)
    env = Env(repo, cfg, state)
    env.repo.write("apps/checkout.yaml", app_spec(regions=REGION, desired=3)).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=REGION, desired=3,
                                                  extra=STRATEGY)).commit("v2, canary")
    return env


def _groups(env: Env) -> dict[str, dict[str, Any]]:
    return {g["server_group"]: g for g in env.groups("us-east-1")}


def _analysis_events(env: Env) -> list[dict[str, Any]]:
    conn = sqlite3.connect(env.state_dir / "state.db")
    rows = conn.execute("SELECT detail FROM events WHERE kind = 'canary_analysis' ORDER BY id").fetchall()
    conn.close()
    return [json.loads(d) for (d,) in rows]


def _progress_keys(env: Env) -> list[str]:
    conn = sqlite3.connect(env.state_dir / "state.db")
    keys = [k for (k,) in conn.execute("SELECT key FROM kv WHERE key LIKE 'canary/%'")]
    conn.close()
    return keys


def test_a_good_canary_passes_its_analysis_then_takes_over_by_red_black(tmp_path: Path) -> None:
    with prometheus_server.backfilled(tmp_path / "prom", GOOD) as url:
        env = _env(tmp_path, url)
        (change,) = json.loads(env.cli("plan", "--format", "json").out)["changes"]
        assert [(s["kind"], s["server_group"]) for s in change["steps"]][:7] == [
            ("create", CANARY), ("wait_healthy", CANARY), ("enable", CANARY), ("baseline", BASELINE),
            ("wait_healthy", BASELINE), ("enable", BASELINE), ("analyze", CANARY)]
        assert change["strategy"]["canary"]["duration_seconds"] == 2.0
        with Watch(env.state_dir / "state.db") as watch:
            res = env.cli("apply", "--yes")
        assert res.code == 0, res.out + res.err
    assert watch.samples > 0 and watch.total_min is not None and watch.total_min >= 3
    groups = _groups(env)
    assert sorted(groups) == [SERVING, CANARY]
    assert groups[CANARY]["enabled"] and groups[CANARY]["capacity"]["desired"] == 3
    assert not groups[SERVING]["enabled"] and groups[SERVING]["capacity"]["desired"] == 0
    readings = _analysis_events(env)
    assert [r["score"] for r in readings] == [100, 100] and readings[-1]["final"] is True
    assert readings[0]["baseline"] == BASELINE
    assert _progress_keys(env) == []
    assert env.cli("plan").code == 0


def test_a_bad_canary_fails_and_both_groups_go_while_the_serving_group_is_never_touched(tmp_path: Path) -> None:
    with prometheus_server.backfilled(tmp_path / "prom", BAD) as url:
        env = _env(tmp_path, url)
        with Watch(env.state_dir / "state.db") as watch:
            res = env.cli("apply", "--yes")
    assert res.code == 1
    out = res.out + res.err
    assert re.search(rf"analyze {CANARY} failed: canary analysis of {CANARY} failed after 1s: score 0 \(fail\); "
                     r"failing: errors: (\d+) of \1 samples > 0.01 \(worst 0.0", out), out
    assert "latency: canary mean 1" in out and "higher beyond the tolerance 10%" in out
    assert (f"rolled back (disable {BASELINE}, destroy {BASELINE}, disable {CANARY}, destroy {CANARY}); "
            f"{SERVING} keeps serving") in out
    assert watch.samples > 0 and watch.serving_min == 3 and watch.serving_always_enabled
    assert watch.canary_max == 1  # the failed canary never reached more than its own instance
    groups = _groups(env)
    assert list(groups) == [SERVING] and groups[SERVING]["enabled"]
    assert _progress_keys(env) == []
    history = env.cli("history").out
    assert f"canary {CANARY} after 1s: score 0 (fail); failing: errors: " in history
    doc = json.loads(env.cli("status", "checkout", "--format", "json").out)
    (reading,) = doc["canaries"]["readings"]
    assert (reading["server_group"], reading["baseline"], reading["score"], reading["verdict"]) == (
        CANARY, BASELINE, 0, "fail")
    assert [f["metric"] for f in reading["failing"]] == ["errors", "latency"] and doc["canaries"]["in_progress"] == []
    text = env.cli("status").out
    assert f"us-east-1      canary {CANARY} after 1s: score 0 (fail); failing: errors: " in text


def test_a_canary_without_data_fails_and_a_promql_error_is_reported_with_the_query(tmp_path: Path) -> None:
    with prometheus_server.backfilled(tmp_path / "prom", {"latency": {BASELINE: (100.0, 5.0)}}) as url:
        env = _env(tmp_path, url)
        res = env.cli("apply", "--yes")
        assert res.code == 1
        assert "errors: no data for the canary (counted as fail)" in res.out
        assert "latency: no data for the canary (counted as fail)" in res.out
        broken = STRATEGY.replace('avg(errors{server_group="${server_group}"})', "avg(errors{")
        env.repo.write("apps/checkout.yaml", app_spec(image="checkout-3.0", regions=REGION, desired=3,
                                                      extra=broken)).commit("v3, broken query")
        res = env.cli("apply", "--yes")
    assert res.code == 1
    assert (f"errors: prometheus {url}: query 'avg(errors{{': HTTP 400: bad_data: 1:12: parse error: unexpected "
            f"end of input inside braces") in res.out
    assert list(_groups(env)) == [SERVING]


def test_an_unreachable_prometheus_fails_the_canary_and_names_the_server(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{prometheus_server._free_port()}"
    env = _env(tmp_path, url)
    res = env.cli("apply", "--yes")
    assert res.code == 1
    assert f"errors: prometheus {url}: query 'avg(errors{{server_group=\"{CANARY}\"}})': no answer: " in res.out
    assert list(_groups(env)) == [SERVING]


def test_a_new_cluster_runs_its_canary_without_a_baseline_and_says_so(tmp_path: Path) -> None:
    with prometheus_server.backfilled(tmp_path / "prom", {"errors": {"checkout-main-v000": (0.0, 0.001)}}) as url:
        repo = DesiredRepo(tmp_path / "desired")
        cfg = write_config(tmp_path / "config.yaml", repo.path, tmp_path / "state",
                           analysis={"prometheus": {"url": url}})
        env = Env(repo, cfg, tmp_path / "state")
        env.repo.write("apps/checkout.yaml", app_spec(regions=REGION, desired=3, extra=STRATEGY)).commit("v1")
        text = env.cli("plan").out
        assert "why: first deploy: canary without a baseline (nothing serves yet)" in text
        assert ("analyze canary checkout-main-v000 without a baseline, out of traffic (nothing served before: "
                "comparisons skipped) for 2s") in text
        res = env.cli("apply", "--yes")
        assert res.code == 0, res.out + res.err
    assert _groups(env)["checkout-main-v000"]["capacity"]["desired"] == 3
    skipped = _analysis_events(env)[-1]["results"][1]
    assert skipped["outcome"] == "skipped" and skipped["counted"] is False


def test_kill_9_during_and_after_the_analysis_resumes_without_judging_a_passed_canary_again(
        tmp_path: Path) -> None:
    with prometheus_server.backfilled(tmp_path / "prom", GOOD) as url:
        # a short lease: the third process takes over from the second dead one, which took over from the first
        env = _env(tmp_path, url, execution={"poll_health": "20ms", "retry_backoff": "0s", "step_backoff": "10ms",
                                             "lease_ttl": "1s"})
        # steps: create, wait, enable, baseline, wait, enable, analyze: killed right after the baseline's enable
        crash = reconciler_subprocess(["6", "apply", "--config", str(env.config), "--yes"],
                                      module="tests.crashing_cli")
        crash.communicate(timeout=120)
        assert crash.returncode == -9
        text = env.cli("plan").out
        assert f"why: resume: canary deployment of {CANARY}" in text
        assert f"analyze canary {CANARY} against baseline {BASELINE}" in text
        # resumed: wait, wait, analyze; killed once the analysis passed: the next plan does not judge again
        crash = reconciler_subprocess(["3", "apply", "--config", str(env.config), "--yes"],
                                      module="tests.crashing_cli")
        crash.communicate(timeout=120)
        assert crash.returncode == -9
        text = env.cli("plan").out
        assert f"why: analysis passed; finish: canary deployment of {CANARY}" in text
        assert "analyze canary" not in text
        res = env.cli("apply", "--yes")
        assert res.code == 0, res.out + res.err
    groups = _groups(env)
    assert sorted(groups) == [SERVING, CANARY] and groups[CANARY]["capacity"]["desired"] == 3
    assert _progress_keys(env) == []


def test_a_canary_spec_without_a_configured_prometheus_is_a_spec_problem_that_holds_its_application(
        env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec(regions=REGION, extra=STRATEGY)).commit("canary, no Prometheus")
    res = env.cli("plan")
    assert res.code == 1
    assert ("apps/checkout.yaml:13: clusters[0].strategy.canary: a canary is judged on Prometheus metrics, and "
            f"analysis.prometheus is not configured in {env.config}") in res.out + res.err
    assert env.groups("us-east-1") == []


def test_pause_for_approval_holds_a_passed_canary_until_reconciler_approve(tmp_path: Path) -> None:
    with prometheus_server.backfilled(tmp_path / "prom", GOOD) as url:
        env = _env(tmp_path, url)
        env.repo.write("apps/checkout.yaml", app_spec(
            image="checkout-2.0", regions=REGION, desired=3,
            extra=STRATEGY.replace("    interval: 1s\n", "    interval: 1s\n    pause_for_approval: true\n"))
        ).commit("v2, canary with manual judgment")
        (change,) = json.loads(env.cli("plan", "--format", "json").out)["changes"]
        last = change["steps"][-1]
        assert (last["kind"], last["server_group"], last["reason"]) == (
            "destroy", BASELINE, "canary baseline no longer needed")
        assert change["strategy"]["canary"]["pause_for_approval"] is True
        res = env.cli("apply", "--yes")
        assert res.code == 0, res.out + res.err
        groups = _groups(env)
        assert sorted(groups) == [SERVING, CANARY] and groups[CANARY]["capacity"]["desired"] == 1
        assert groups[SERVING]["enabled"] and groups[SERVING]["capacity"]["desired"] == 3

        plan = env.cli("plan", "--format", "json")
        (waiting,) = json.loads(plan.out)["changes"]
        kinds = [s["kind"] for s in waiting["steps"]]
        assert kinds[:3] == ["wait_healthy", "judgment", "resize"] and "analyze" not in kinds
        judgment = next(v for v in waiting["verdicts"] if v["policy"] == "manual-judgment")
        assert judgment["verdict"] == "approve" and f"reconciler approve {waiting['change_id']}" in judgment["message"]
        held = env.cli("apply", "--yes")
        assert f"waiting for approval (reconciler approve {waiting['change_id']})" in held.out + held.err
        assert _groups(env)[CANARY]["capacity"]["desired"] == 1  # nothing moved without the approval

        assert env.cli("approve", waiting["change_id"]).code == 0
        res = env.cli("apply", "--yes")
        assert res.code == 0, res.out + res.err
    groups = _groups(env)
    assert groups[CANARY]["enabled"] and groups[CANARY]["capacity"]["desired"] == 3
    assert not groups[SERVING]["enabled"]
    assert _progress_keys(env) == []
    assert env.cli("plan").code == 0


def test_a_passed_canary_then_rolling_red_black_grows_in_steps_and_serving_never_drops_below_the_floor(
        tmp_path: Path) -> None:
    with prometheus_server.backfilled(tmp_path / "prom", GOOD) as url:
        env = _env(tmp_path, url)
        env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=REGION, desired=3, extra=(
            STRATEGY.replace("    interval: 1s\n", "    interval: 1s\n    then: rolling_red_black\n")
            + "  steps: [50, 100]\n"))).commit("v2, canary then rolling")
        (change,) = json.loads(env.cli("plan", "--format", "json").out)["changes"]
        assert change["strategy"]["steps"] == [50, 100] and change["strategy"]["canary"]["then"] == "rolling_red_black"
        assert change["restore"] == [{"server_group": SERVING, "capacity": {"min": 1, "desired": 3, "max": 6}}]
        assert "on pass rolling_red_black in steps of 50%, 100%" in env.cli("plan").out
        with Watch(env.state_dir / "state.db") as watch:
            res = env.cli("apply", "--yes")
        assert res.code == 0, res.out + res.err
    assert res.out.index(f"analyze canary {CANARY}") < res.out.index(
        f"resize {SERVING} to min 1, desired 2, max 6 [rolling step 50%]") < res.out.index("[rolling step 100%]")
    assert watch.samples > 0 and watch.total_min is not None and watch.total_min >= 3, watch.total_min
    assert watch.serving_min == 0 and watch.canary_max == 3
    groups = _groups(env)
    assert groups[CANARY]["enabled"] and groups[CANARY]["capacity"]["desired"] == 3
    assert not groups[SERVING]["enabled"]
    assert _progress_keys(env) == []
    conn = sqlite3.connect(env.state_dir / "state.db")
    assert conn.execute("SELECT count(*) FROM kv WHERE key LIKE 'rolling-%'").fetchone() == (0,)
    conn.close()
    assert env.cli("plan").code == 0


def test_a_bad_canary_then_rolling_red_black_rolls_back_by_rolling_rule_after_its_baseline(tmp_path: Path) -> None:
    with prometheus_server.backfilled(tmp_path / "prom", BAD) as url:
        env = _env(tmp_path, url)
        env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=REGION, desired=3, extra=(
            STRATEGY.replace("    interval: 1s\n", "    interval: 1s\n    then: rolling_red_black\n")
            + "  steps: [50, 100]\n"))).commit("v2, bad canary then rolling")
        with Watch(env.state_dir / "state.db") as watch:
            res = env.cli("apply", "--yes")
    assert res.code == 1
    assert (f"rolled back (disable {BASELINE}, destroy {BASELINE}, resize {SERVING} to min 1, desired 3, max 6, "
            f"wait until 100% of {SERVING} is healthy (timeout 5s), disable {CANARY}, destroy {CANARY}); "
            f"{SERVING} keeps serving") in res.err, res.err
    assert watch.samples > 0 and watch.serving_min == 3 and watch.serving_always_enabled and watch.canary_max == 1
    assert list(_groups(env)) == [SERVING] and _progress_keys(env) == []
    conn = sqlite3.connect(env.state_dir / "state.db")
    assert conn.execute("SELECT count(*) FROM kv WHERE key LIKE 'rolling-%'").fetchone() == (0,)
    conn.close()

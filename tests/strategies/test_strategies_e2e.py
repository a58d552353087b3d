"""Highlander and rolling red/black end to end through the CLI, on the local provider and real Git.

A sampler reads the simulated cloud's table throughout each apply: serving capacity (desired instances of
enabled, healthy-image groups) never drops below the cluster's desired capacity.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import Env, app_spec, reconciler_subprocess, write_config
from tests.strategies import test_docs

REGION = ("us-east-1",)
ROLLING = "strategy: {type: rolling_red_black, steps: [25, 50, 100]}\n"
HIGHLANDER = "strategy: {type: highlander}\n"


class Floor(threading.Thread):
    """Samples the local provider's table; records the lowest serving capacity seen and the largest new group."""

    def __init__(self, db: Path, bad: str = "-bad") -> None:
        super().__init__(daemon=True)
        self.db, self.bad = db, bad
        self.stop = threading.Event()
        self.lowest: int | None = None
        self.samples = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=1)
                rows = conn.execute("SELECT data FROM local_server_groups").fetchall()
                conn.close()
            except sqlite3.Error:
                continue
            serving = 0
            for (data,) in rows:
                doc = yaml.safe_load(data)
                if doc["enabled"] and not doc["launch"]["image"].endswith(self.bad):
                    serving += int(doc["capacity"]["desired"])
            if rows:
                self.lowest = serving if self.lowest is None else min(self.lowest, serving)
                self.samples += 1
            time.sleep(0.002)

    def __enter__(self) -> Floor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join()


def _groups(env: Env) -> dict[str, dict[str, Any]]:
    return {g["server_group"]: g for g in env.groups("us-east-1") if g["cluster"] == "checkout-main"}


def _progress_records(env: Env) -> list[str]:
    conn = sqlite3.connect(env.state_dir / "state.db")
    keys = [k for (k,) in conn.execute("SELECT key FROM kv WHERE key LIKE 'rolling-origin/%'")]
    conn.close()
    return keys


def _deploy_v1(env: Env, desired: int = 4) -> None:
    env.repo.write("apps/checkout.yaml", app_spec(regions=REGION, desired=desired)).commit("v1")
    assert env.cli("apply", "--yes").code == 0


def test_highlander_destroys_every_older_group_and_the_plan_says_no_rollback_target_is_kept(env: Env) -> None:
    _deploy_v1(env, desired=2)
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=REGION)).commit("v2")
    assert env.cli("apply", "--yes").code == 0  # red/black: v000 retained
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-3.0", regions=REGION, extra=HIGHLANDER)
                   ).commit("v3, highlander")

    text = env.cli("plan")
    assert text.code == 2, text.err
    assert ("strategy: highlander: once the new group serves, every older group is destroyed; no rollback "
            "target is kept") in text.out
    md = env.cli("plan", "--format", "markdown").out
    assert "_strategy: highlander: once the new group serves, every older group is destroyed; no rollback " in md
    (change,) = json.loads(env.cli("plan", "--format", "json").out)["changes"]
    assert change["strategy"]["type"] == "highlander" and change["strategy"]["rollback_target_kept"] is False
    assert [(s["kind"], s["server_group"]) for s in change["steps"]] == [
        ("create", "checkout-main-v002"), ("wait_healthy", "checkout-main-v002"), ("enable", "checkout-main-v002"),
        ("disable", "checkout-main-v001"), ("destroy", "checkout-main-v001"), ("destroy", "checkout-main-v000")]

    with Floor(env.state_dir / "state.db") as floor:
        res = env.cli("apply", "--yes")
    assert res.code == 0, res.out + res.err
    assert floor.samples > 0 and floor.lowest is not None and floor.lowest >= 2, floor.lowest
    groups = _groups(env)
    assert list(groups) == ["checkout-main-v002"] and groups["checkout-main-v002"]["enabled"]
    assert env.cli("plan").code == 0


def test_rolling_red_black_grows_in_steps_and_never_serves_below_the_desired_capacity(env: Env) -> None:
    _deploy_v1(env)
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=REGION, desired=4, extra=ROLLING)
                   ).commit("v2, rolling")

    text = env.cli("plan").out
    assert "strategy: rolling_red_black in steps of 25%, 50%, 100%" in text
    assert "resize checkout-main-v000 to min 1, desired 3, max 6 [rolling step 25%]" in text
    (change,) = json.loads(env.cli("plan", "--format", "json").out)["changes"]
    assert change["strategy"] == {
        "type": "rolling_red_black", "steps": [25, 50, 100], "pause_seconds": 0.0, "approval_steps": [],
        "keep_disabled": 1,
        "rollback_target_kept": True, "verify": [], "summary": change["strategy"]["summary"]}
    assert change["restore"] == [{"server_group": "checkout-main-v000", "capacity": {"min": 1, "desired": 4,
                                                                                      "max": 6}}]
    assert [s.get("percent") for s in change["steps"] if s["kind"] == "wait_healthy"] == [25, 50, 100]

    with Floor(env.state_dir / "state.db") as floor:
        res = env.cli("apply", "--yes")
    assert res.code == 0, res.out + res.err
    assert floor.samples > 0 and floor.lowest is not None and floor.lowest >= 4, floor.lowest
    assert res.out.index("[rolling step 25%]") < res.out.index("[rolling step 50%]") < res.out.index(
        "[rolling step 100%]")
    groups = _groups(env)
    assert groups["checkout-main-v001"]["enabled"] and groups["checkout-main-v001"]["capacity"]["desired"] == 4
    assert not groups["checkout-main-v000"]["enabled"] and groups["checkout-main-v000"]["capacity"]["desired"] == 0
    assert env.cli("plan").code == 0
    assert _progress_records(env) == [], "the old group's origin is forgotten once the deployment ends"


def test_a_rolling_deployment_that_fails_its_first_step_leaves_the_old_group_untouched(env: Env) -> None:
    _deploy_v1(env)
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0-bad", regions=REGION, desired=4,
                                                  extra=ROLLING, timeout="1s")).commit("bad, rolling")
    res = env.cli("apply", "--yes")
    assert res.code == 1
    assert "0 of 1 instances healthy after 1s" in res.err
    groups = _groups(env)
    assert set(groups) == {"checkout-main-v000"}
    assert groups["checkout-main-v000"]["enabled"] and groups["checkout-main-v000"]["capacity"]["desired"] == 4


def test_a_rolling_step_that_fails_later_returns_the_old_group_to_full_capacity_before_removing_the_new(
        env: Env) -> None:
    """Killed after the 25% step; instances then take 30s to boot: the resumed deployment's 50% step fails
    its health wait (1 of 2 healthy, 75% needed), the old group goes back to 4 and is healthy again first,
    and only then is the new group removed."""
    _deploy_v1(env)
    spec = app_spec(image="checkout-2.0", regions=REGION, desired=4, extra=ROLLING, timeout="1s")
    env.repo.write("apps/checkout.yaml", spec.replace("healthy_percent: 100", "healthy_percent: 75")
                   ).commit("v2, rolling")
    crashed = reconciler_subprocess(["4", "apply", "--config", str(env.config), "--yes"],  # create, wait, enable,
                                    module="tests.crashing_cli")  # shrink; then SIGKILL
    crashed.communicate(timeout=120)
    assert crashed.returncode == -9
    groups = _groups(env)
    assert groups["checkout-main-v000"]["capacity"]["desired"] == 3 and groups["checkout-main-v001"]["enabled"]
    assert _progress_records(env) == ["rolling-origin/local/default/us-east-1/checkout-main/checkout-main-v001/"
                                      "checkout-main-v000"]
    write_config(env.config, env.repo.path, env.state_dir, providers={"local": {"accounts": {"default": {
        "boot_seconds": 30, "unhealthy_images": ["*-bad"]}}}})

    with Floor(env.state_dir / "state.db") as floor:
        res = env.cli("apply", "--yes")
    assert res.code == 1, res.out + res.err
    assert "checkout-main-v001 in us-east-1: 1 of 2 instances healthy after 1s" in res.err
    assert ("rolled back (resize checkout-main-v000 to min 1, desired 4, max 6, wait until 75% of "
            "checkout-main-v000 is healthy (timeout 1s), disable checkout-main-v001, destroy checkout-main-v001)"
            ) in res.err
    assert floor.lowest is not None and floor.lowest >= 4, floor.lowest
    assert test_docs.documented_failure() in res.err.splitlines(), res.err
    groups = _groups(env)
    assert set(groups) == {"checkout-main-v000"}
    assert groups["checkout-main-v000"]["enabled"] and groups["checkout-main-v000"]["capacity"]["desired"] == 4
    hist = json.loads(env.cli("history", "--format", "json").out)["events"]
    assert any(e["kind"] == "execution_rolled_back" for e in hist)
    assert _progress_records(env) == []


def test_a_saved_rolling_plan_round_trips_and_applies(env: Env, tmp_path: Path) -> None:
    _deploy_v1(env)
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=REGION, desired=4,
                                                  extra="strategy: {type: rolling_red_black, steps: [50, 100], "
                                                        "pause: 1ms}\n")).commit("v2, rolling")
    saved = tmp_path / "plan.json"
    assert env.cli("plan", "--out", str(saved)).code == 2
    res = env.cli("apply", "--plan", str(saved), "--yes")
    assert res.code == 0, res.out + res.err
    assert "wait 0s (pause after the 50% step) [rolling step 50%]" in res.out
    assert _groups(env)["checkout-main-v001"]["capacity"]["desired"] == 4


JUDGED = "strategy: {type: rolling_red_black, steps: [25, {percent: 50, pause_for_approval: true}, 100]}\n"


def test_a_rolling_step_with_pause_for_approval_waits_for_reconciler_approve_and_a_crash_after_it_does_not_ask_again(
        env: Env) -> None:
    _deploy_v1(env)
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=REGION, desired=4, extra=JUDGED)
                   ).commit("v2, rolling with a manual judgment at 50%")
    (change,) = json.loads(env.cli("plan", "--format", "json").out)["changes"]
    assert change["strategy"]["steps"] == [25, 50, 100] and change["strategy"]["approval_steps"] == [50]
    assert max(s.get("percent", 0) for s in change["steps"]) == 50 and "disable" not in [
        s["kind"] for s in change["steps"]]
    assert "after the 50% step(s) it waits for `reconciler approve`" in env.cli("plan").out

    with Floor(env.state_dir / "state.db") as floor:
        res = env.cli("apply", "--yes")
        assert res.code == 0, res.out + res.err
        sizes = {n: (g["enabled"], g["capacity"]["desired"]) for n, g in _groups(env).items()}
        assert sizes == {"checkout-main-v000": (True, 2), "checkout-main-v001": (True, 2)}

        (waiting,) = json.loads(env.cli("plan", "--format", "json").out)["changes"]
        assert [s["kind"] for s in waiting["steps"]][:3] == ["wait_healthy", "judgment", "resize"]
        assert waiting["steps"][1]["percent"] == 50
        judgment = next(v for v in waiting["verdicts"] if v["policy"] == "manual-judgment")
        assert judgment["message"] == (
            "checkout-main-v001 is healthy at the 50% step and waits for a person's go-ahead (pause_for_approval): "
            f"reconciler approve {waiting['change_id']}")
        md = env.cli("plan", "--format", "markdown").out
        assert "manual judgment: checkout-main-v001 is healthy at the 50% step; continues once approved" in md
        hold = f"waiting for approval (reconciler approve {waiting['change_id']})"
        assert hold in env.cli("status").out
        held = env.cli("apply", "--yes")
        assert hold in held.out + held.err
        assert {n: g["capacity"]["desired"] for n, g in _groups(env).items()} == {
            "checkout-main-v000": 2, "checkout-main-v001": 2}, "nothing moved without the approval"

        assert env.cli("approve", waiting["change_id"]).code == 0
        crashed = reconciler_subprocess(["2", "apply", "--config", str(env.config), "--yes"],  # wait, judgment;
                                        module="tests.crashing_cli")  # then SIGKILL
        crashed.communicate(timeout=120)
        assert crashed.returncode == -9
        (resumed,) = json.loads(env.cli("plan", "--format", "json").out)["changes"]
        assert "judgment" not in [s["kind"] for s in resumed["steps"]]
        assert not any(v["policy"] == "manual-judgment" for v in resumed["verdicts"])
        res = env.cli("apply", "--yes")
        assert res.code == 0, res.out + res.err
    assert floor.samples > 0 and floor.lowest is not None and floor.lowest >= 4, floor.lowest
    groups = _groups(env)
    assert groups["checkout-main-v001"]["enabled"] and groups["checkout-main-v001"]["capacity"]["desired"] == 4
    assert not groups["checkout-main-v000"]["enabled"]
    assert env.cli("plan").code == 0
    assert _progress_records(env) == []

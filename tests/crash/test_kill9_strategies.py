"""Kill -9 after every step of a highlander, a rolling red/black and a canary deployment, restart, check the
promises.

For every strategy and crash point k: the deployment ends in the new version as the strategy says (highlander:
the old group is gone; rolling and canary: the old group is disabled and scaled down, and a canary's baseline
is gone), no duplicate group exists, no progress record is left, and a sampler reading the simulated cloud
throughout never sees the serving capacity below the cluster's desired capacity (rolling, canary: the serving
group is never touched before the canary passed) or at zero (highlander). The canary is judged by a real
Prometheus, backfilled with a good canary and its baseline for the whole module.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests import prometheus_server
from tests.conftest import DesiredRepo, app_spec, reconciler_subprocess, run_cli, write_config

REGIONS = ("us-east-1",)
STRATEGIES = {
    # create, wait, enable, disable, destroy
    "highlander": ("strategy: {type: highlander}\n", 5, 1),
    # create 1, wait, enable, old to 1, new to 2, wait, disable old, old to 0
    "rolling_red_black": ("strategy: {type: rolling_red_black, steps: [50, 100]}\n", 8, 2),
    # create canary, wait, enable, baseline, wait, enable, analyze, disable and destroy the baseline,
    # canary to 2, wait, disable old, old to 0
    "canary": ("strategy:\n  type: canary\n  canary:\n    duration: 1s\n    interval: 1s\n    metrics:\n"
               "      - {name: errors, query: 'avg(errors{server_group=\"${server_group}\"})', fail_if: '> 0.01'}\n"
               "      - name: latency\n        query: 'avg(latency{server_group=\"${server_group}\"})'\n"
               "        compare: {direction: increase, tolerance: 0.1}\n", 13, 2),
}
GOOD = {"errors": {"checkout-main-v001": (0.002, 0.001)},
        "latency": {"checkout-main-v001": (100.0, 5.0), "checkout-main-v002": (100.0, 5.0)}}


class Sampler(threading.Thread):
    """Records the lowest serving capacity (desired instances of enabled groups) seen in the simulated cloud."""

    def __init__(self, db: Path) -> None:
        super().__init__(daemon=True)
        self.db = db
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
            serving = sum(int(d["capacity"]["desired"]) for d in (yaml.safe_load(r[0]) for r in rows) if d["enabled"])
            self.lowest = serving if self.lowest is None else min(self.lowest, serving)
            self.samples += 1
            time.sleep(0.002)


@pytest.fixture(scope="module")
def prometheus_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Prometheus for every canary crash point (its series span the module's run)."""
    with prometheus_server.backfilled(tmp_path_factory.mktemp("prom"), GOOD, after=1800.0) as url:
        yield url


@pytest.fixture(scope="module")
def deployed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, DesiredRepo]:
    """v1 applied, v2 committed with the strategy: the template every crash point starts from."""
    name = request.param
    base = tmp_path_factory.mktemp(name)
    repo = DesiredRepo(base / "desired")
    repo.write("apps/checkout.yaml", app_spec(regions=REGIONS)).commit("v1")
    cfg = write_config(base / "config.yaml", repo.path, base / "state")
    res = run_cli("apply", "--config", str(cfg), "--yes", config_first=True)
    assert res.code == 0, res.out + res.err
    repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=REGIONS, extra=STRATEGIES[name][0])
               ).commit("v2")
    return name, base / "state", repo


@pytest.mark.parametrize(("deployed", "k"), [(name, k) for name, (_, n, _) in sorted(STRATEGIES.items())
                                             for k in range(1, n + 1)], indirect=["deployed"])
def test_kill_9_after_step_k_of_each_strategy_then_restart_finishes_it(
    k: int, deployed: tuple[str, Path, DesiredRepo], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    name, template, repo = deployed
    _, steps, floor = STRATEGIES[name]
    state = tmp_path / "state"
    shutil.copytree(template, state)
    analysis = {"prometheus": {"url": request.getfixturevalue("prometheus_url")}} if name == "canary" else None
    cfg = write_config(tmp_path / "config.yaml", repo.path, state, **({"analysis": analysis} if analysis else {}))
    sampler = Sampler(state / "state.db")
    sampler.start()
    try:
        crashed = reconciler_subprocess([str(k), "apply", "--config", str(cfg), "--yes"], module="tests.crashing_cli")
        out, err = crashed.communicate(timeout=120)
        assert crashed.returncode == -9, f"expected SIGKILL after step {k}: {out}\n{err}"
        again = run_cli("apply", "--config", str(cfg), "--yes", config_first=True)  # a new engine on the same
        assert again.code == 0, again.out + again.err  # state, in this process (a process start less per point)
    finally:
        sampler.stop.set()
        sampler.join()
    assert sampler.samples > 0
    assert sampler.lowest is not None and sampler.lowest >= floor, (name, k, sampler.lowest)
    conn = sqlite3.connect(state / "state.db")
    groups = {n: yaml.safe_load(d) for n, d in conn.execute("SELECT name, data FROM local_server_groups")}
    left = [key for (key,) in conn.execute("SELECT key FROM kv WHERE key LIKE 'rolling-origin/%' "
                                           "OR key LIKE 'canary/%'")]
    conn.close()
    new = groups["checkout-main-v001"]
    assert new["enabled"] and new["launch"]["image"] == "checkout-2.0" and new["capacity"]["desired"] == 2
    if name == "highlander":
        assert sorted(groups) == ["checkout-main-v001"]
    else:
        assert sorted(groups) == ["checkout-main-v000", "checkout-main-v001"]
        assert not groups["checkout-main-v000"]["enabled"] and groups["checkout-main-v000"]["capacity"]["desired"] == 0
    # a kill after the last step leaves the old group's origin (the canary's record) until the cluster's next
    # execution ends
    assert left == [] if k < steps else len(left) <= 1, left
    plan = run_cli("plan", "--config", str(cfg), config_first=True)
    assert plan.code == 0, plan.out

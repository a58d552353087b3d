"""Kill -9 after every step of a highlander and of a rolling red/black deployment, restart, check the promises.

For every strategy and crash point k: the deployment ends in the new version as the strategy says (highlander:
the old group is gone; rolling: the old group is disabled and scaled down), no duplicate group exists, and a
sampler reading the simulated cloud throughout never sees the serving capacity below the cluster's desired
capacity (rolling) or at zero (highlander).
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import DesiredRepo, app_spec, reconciler_subprocess, run_cli, write_config

REGIONS = ("us-east-1",)
STRATEGIES = {
    # create, wait, enable, disable, destroy
    "highlander": ("strategy: {type: highlander}\n", 5, 1),
    # create 1, wait, enable, old to 1, new to 2, wait, disable old, old to 0
    "rolling_red_black": ("strategy: {type: rolling_red_black, steps: [50, 100]}\n", 8, 2),
}


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
    k: int, deployed: tuple[str, Path, DesiredRepo], tmp_path: Path
) -> None:
    name, template, repo = deployed
    _, steps, floor = STRATEGIES[name]
    state = tmp_path / "state"
    shutil.copytree(template, state)
    cfg = write_config(tmp_path / "config.yaml", repo.path, state)
    sampler = Sampler(state / "state.db")
    sampler.start()
    try:
        crashed = reconciler_subprocess([str(k), "apply", "--config", str(cfg), "--yes"], module="tests.crashing_cli")
        out, err = crashed.communicate(timeout=120)
        assert crashed.returncode == -9, f"expected SIGKILL after step {k}: {out}\n{err}"
        again = reconciler_subprocess(["apply", "--config", str(cfg), "--yes"])
        out, err = again.communicate(timeout=120)
        assert again.returncode == 0, out + err
    finally:
        sampler.stop.set()
        sampler.join()
    assert sampler.samples > 0
    assert sampler.lowest is not None and sampler.lowest >= floor, (name, k, sampler.lowest)
    conn = sqlite3.connect(state / "state.db")
    groups = {n: yaml.safe_load(d) for n, d in conn.execute("SELECT name, data FROM local_server_groups")}
    left = [key for (key,) in conn.execute("SELECT key FROM kv WHERE key LIKE 'rolling-origin/%'")]
    conn.close()
    new = groups["checkout-main-v001"]
    assert new["enabled"] and new["launch"]["image"] == "checkout-2.0" and new["capacity"]["desired"] == 2
    if name == "highlander":
        assert sorted(groups) == ["checkout-main-v001"]
    else:
        assert sorted(groups) == ["checkout-main-v000", "checkout-main-v001"]
        assert not groups["checkout-main-v000"]["enabled"] and groups["checkout-main-v000"]["capacity"]["desired"] == 0
    # a kill after the last step leaves the old group's origin until the cluster's next execution ends
    assert left == [] if k < steps else len(left) <= 1, left
    plan = run_cli("plan", "--config", str(cfg), config_first=True)
    assert plan.code == 0, plan.out

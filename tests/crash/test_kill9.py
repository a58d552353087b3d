"""Kill -9 at every step boundary of a 3-region red/black, restart, and check the promises.

For every crash point k: the deployment ends in the new version; no duplicate
groups exist; and a sampler reading the simulated cloud throughout never sees a
region of the serving cluster without healthy enabled capacity. The crash is a real SIGKILL of a real
``reconciler apply`` process; the restart is a new engine on the same state, in this process.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import DesiredRepo, app_spec, reconciler_subprocess, run_cli, write_config

REGIONS = ("us-east-1", "eu-west-1", "ap-south-1")
STEPS = 5 * len(REGIONS)  # create, wait, enable, disable, scale down per region


class Sampler(threading.Thread):
    """Reads the local provider's table continuously and records any instant without serving capacity."""

    def __init__(self, db: Path) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.stop = threading.Event()
        self.violations: list[str] = []
        self.samples = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=1)
                rows = conn.execute("SELECT region, data FROM local_server_groups").fetchall()
                conn.close()
            except sqlite3.Error:
                continue
            serving: dict[str, int] = {r: 0 for r in REGIONS}
            for region, data in rows:
                doc = yaml.safe_load(data)
                if doc["enabled"] and not doc["launch"]["image"].endswith("-bad"):
                    serving[region] += int(doc["capacity"]["desired"])
            for region, n in serving.items():
                if n == 0:
                    self.violations.append(f"{region}: no healthy enabled capacity ({len(rows)} groups)")
            self.samples += 1
            time.sleep(0.002)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DesiredRepo]:
    """v1 applied in three regions, v2 committed: the template every crash point starts from."""
    base = tmp_path_factory.mktemp("template")
    repo = DesiredRepo(base / "desired")
    repo.write("apps/checkout.yaml", app_spec(regions=REGIONS)).commit("v1")
    cfg = write_config(base / "config.yaml", repo.path, base / "state")
    res = run_cli("apply", "--config", str(cfg), "--yes", config_first=True)
    assert res.code == 0, res.out + res.err
    repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=REGIONS)).commit("v2")
    return base / "state", repo


def _groups(db: Path) -> dict[str, list[dict[str, Any]]]:
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT region, name, data FROM local_server_groups").fetchall()
    conn.close()
    out: dict[str, list[dict[str, Any]]] = {}
    for region, _name, data in rows:
        out.setdefault(region, []).append(yaml.safe_load(data))
    return out


@pytest.mark.parametrize("k", range(1, STEPS + 1))
def test_kill_9_after_step_k_then_restart_finishes_the_deployment(
    k: int, deployed: tuple[Path, DesiredRepo], tmp_path: Path
) -> None:
    template, repo = deployed
    state = tmp_path / "state"
    shutil.copytree(template, state)
    cfg = write_config(tmp_path / "config.yaml", repo.path, state)
    db = state / "state.db"
    sampler = Sampler(db)
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
    assert not sampler.violations, sampler.violations[:3]
    for region, groups in _groups(db).items():
        names = sorted(g["name"] for g in groups)
        assert names == ["checkout-main-v000", "checkout-main-v001"], (region, names)
        new = next(g for g in groups if g["name"].endswith("v001"))
        old = next(g for g in groups if g["name"].endswith("v000"))
        assert new["enabled"] and new["launch"]["image"] == "checkout-2.0"
        assert not old["enabled"] and old["capacity"]["desired"] == 0
    plan = run_cli("plan", "--config", str(cfg), config_first=True)
    assert plan.code == 0, plan.out

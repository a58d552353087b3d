"""Kill -9 after each resource step of a first deploy that creates a balancer and a security group, restart
(in this process, a new engine on the same state): the deploy finishes, each resource exists once, and no group
was created before what it names."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.conftest import DesiredRepo, app_spec, reconciler_subprocess, run_cli, write_config

SPEC = app_spec(regions=("us-east-1",), extra="load_balancers: [web]\nsecurity_groups: [web]\n") + """\
load_balancers:
  - name: web
security_groups:
  - name: web
    ingress:
      - {protocol: tcp, ports: 443, cidr: 0.0.0.0/0}
"""


@pytest.mark.parametrize("k", [1, 2, 3])
def test_kill_9_after_a_resource_step_then_restart_finishes(k: int, tmp_path: Path) -> None:
    repo = DesiredRepo(tmp_path / "desired")
    repo.write("apps/checkout.yaml", SPEC).commit("v1")
    cfg = write_config(tmp_path / "config.yaml", repo.path, tmp_path / "state")
    crashed = reconciler_subprocess([str(k), "apply", "--config", str(cfg), "--yes"], module="tests.crashing_cli")
    out, err = crashed.communicate(timeout=120)
    assert crashed.returncode == -9, f"expected SIGKILL after step {k}: {out}\n{err}"
    db = sqlite3.connect(tmp_path / "state" / "state.db")
    made = db.execute("SELECT kind, name FROM local_resources").fetchall()
    groups = db.execute("SELECT name FROM local_server_groups").fetchall()
    db.close()
    assert len(made) == min(k, 2) and (groups == [] or len(made) == 2), "resources first, then the group"
    again = run_cli("apply", "--config", str(cfg), "--yes", config_first=True)  # a new engine on the same state
    assert again.code == 0, again.out + again.err
    db = sqlite3.connect(tmp_path / "state" / "state.db")
    assert sorted(db.execute("SELECT kind, name FROM local_resources").fetchall()) == [
        ("load_balancer", "web"), ("security_group", "web")]
    assert db.execute("SELECT name FROM local_server_groups").fetchall() == [("checkout-main-v000",)]
    db.close()
    assert run_cli("plan", "--config", str(cfg), config_first=True).code == 0

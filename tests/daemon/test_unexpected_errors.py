"""An exception nobody planned for (here: the simulated cloud returns a record without its capacity) ends the
execution as failed with the error, is logged with its context and traceback, and the daemon keeps going."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path

import yaml

from tests.conftest import app_spec
from tests.daemon.conftest import DaemonFactory


def _corrupt(db: Path, group: str) -> None:
    """The cloud answers with a record that lacks a field the provider relies on."""
    with sqlite3.connect(db) as conn:
        (data,) = conn.execute("SELECT data FROM local_server_groups WHERE name = ?", (group,)).fetchone()
        doc = json.loads(data)
        del doc["capacity"]
        conn.execute("UPDATE local_server_groups SET data = ? WHERE name = ?", (json.dumps(doc), group))


def test_an_unexpected_exception_in_a_rollout_fails_the_execution_and_the_loop_goes_on(
        daemon_factory: DaemonFactory, tmp_path: Path) -> None:
    apps = {"checkout": app_spec(regions=("us-east-1",)), "cart": app_spec("cart", regions=("eu-west-1",))}
    d = daemon_factory(interval="1s", apps=apps).start(log_to=tmp_path / "daemon.log")
    d.wait_for(lambda: d.serving() == ["checkout-main-v000"] and d.serving("eu-west-1") == ["cart-main-v000"],
               "the first deploys")
    cfg = yaml.safe_load(d.config.read_text())
    cfg["providers"]["local"]["accounts"]["default"]["boot_seconds"] = 60  # the next health wait lasts
    d.config.write_text(yaml.safe_dump(cfg))
    assert d.proc is not None
    d.proc.send_signal(signal.SIGHUP)
    d.wait_log("config reloaded")
    d.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=("us-east-1",),
                                                timeout="120s")).commit("v2")
    d.wait_log("checkout/checkout-main us-east-1: wait until 100% of checkout-main-v001 is healthy")
    _corrupt(d.state / "state.db", "checkout-main-v001")

    def ended() -> bool:
        ex = next(e for e in d.status()["executions"] if e["cluster"] == "checkout-main" and e["state"] != "succeeded")
        return ex["state"] == "failed" and "unexpected KeyError in step wait_healthy checkout-main-v001" in ex["error"]

    d.wait_for(ended, "the execution to end as failed", timeout=30)
    [logged] = [x for x in d.log_lines() if "raised KeyError" in x["message"] and "wait_healthy" in x["message"]]
    assert logged["cluster"] == "checkout-main" and logged["region"] == "us-east-1" and logged["level"] == "error"
    assert "Traceback" in logged["error"] and "KeyError: 'capacity'" in logged["error"]
    # the loop goes on: the broken region is reported, the other application still deploys
    d.repo.write("apps/cart.yaml", app_spec("cart", image="cart-2.0", regions=("eu-west-1",))).commit("cart v2")
    cfg["providers"]["local"]["accounts"]["default"]["boot_seconds"] = 0
    d.config.write_text(yaml.safe_dump(cfg))
    d.proc.send_signal(signal.SIGHUP)
    d.wait_for(lambda: d.serving("eu-west-1") == ["cart-main-v001"], "the other application's deploy", timeout=30)
    unreadable = d.status()["unreadable"]
    assert "unexpected KeyError while listing local/default/us-east-1" in unreadable["local/default/us-east-1"]
    assert not [e for e in d.status()["executions"] if e["state"] == "running"]
    assert d.get("/healthz")[0] == 200
    assert d.stop() == 0

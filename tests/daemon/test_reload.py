"""SIGHUP on a real daemon: a bad config changes nothing and says why; a good one reaches every part."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import app_spec, reconciler_subprocess, write_config
from tests.daemon.conftest import DaemonFactory, free_port

ONE = ("us-east-1",)


def _config(d: Any) -> dict[str, Any]:
    return dict(yaml.safe_load(d.config.read_text()))


def _set(cfg: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``cfg`` with one field replaced."""
    out: dict[str, Any] = json.loads(json.dumps(cfg))
    *parents, leaf = dotted.split(".")
    node = out
    for p in parents:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[leaf] = value
    return out


def test_sighup_with_a_bad_value_keeps_the_daemon_and_the_whole_old_config(daemon_factory: DaemonFactory,
                                                                          tmp_path: Path) -> None:
    d = daemon_factory(interval="1s").start(log_to=tmp_path / "daemon.log")
    d.wait_for(lambda: d.serving() == ["checkout-main-v000"], "the first deploy")
    good = _config(d)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    taken = busy.getsockname()[1]
    (tmp_path / "a-file").write_text("not a directory")
    bad: list[tuple[dict[str, Any] | bytes, str]] = [
        (_set(good, "execution.max_attempts", "lots"), "execution.max_attempts: expected a whole number"),
        (_set(good, "execution.max_parallel", 0), "execution.max_parallel: must be from 1 to 256"),
        (_set(good, "providers.local.accounts.default.faults", {"rate": "high"}),
         "providers.local.accounts.default.faults.rate: expected a number"),
        (_set(good, "providers.local.accounts.default.regions", 5),
         "providers.local.accounts.default.regions: expected a list"),
        (_set(good, "providers.local.accounts.default.boot_second", 5), "did you mean boot_seconds?"),
        (yaml.safe_dump(good).encode() + b"log: {level: \xff}\n", "not UTF-8 text"),
        (_set(good, "state_dir", str(tmp_path / "a-file")), "state_dir: "),
        (_set(good, "http.listen", "localhost:http"), "http.listen: 'localhost:http': the port must be a number"),
        (_set(good, "http.listen", "127.0.0.1:99999"), "port 99999 is out of range"),
        (_set(good, "http.listen", f"127.0.0.1:{taken}"), f"http.listen 127.0.0.1:{taken}: cannot listen there"),
        (_set(good, "poll.interval", "100000d"), "poll.interval: '100000d' is longer than the maximum"),
        (_set(good, "daemon", 5), "daemon: expected a mapping, got a number"),
        (_set(good, "daemon.shutdown_deadline", "whenever"), "daemon.shutdown_deadline: 'whenever' is not a duration"),
        (_set(good, "repo.path", "../../etc"), "repo.path: '../../etc' must be a directory inside the repository"),
        (_set(good, "schedules", [{"cron": "0 25 * * *"}]), "schedules[0].cron"),
        (_set(good, "log.level", "loud"), "log.level: 'loud' is not a log level"),
    ]
    assert d.proc is not None
    for i, (text, why) in enumerate(bad, 1):
        data = text if isinstance(text, bytes) else yaml.safe_dump(text).encode()
        d.config.write_bytes(data)
        d.proc.send_signal(signal.SIGHUP)
        [*_, last] = d.wait_log("config reload failed, keeping the previous config", count=i)
        assert why in last["message"], (why, last["message"])
        assert d.get("/healthz")[0] == 200
    busy.close()
    # the old config is still whole: same port and token, same interval, same provider
    auth = {"Authorization": f"Bearer {d.token}"}
    assert d.post("/api/v1/reconcile", b"", auth)[0] == 202
    d.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=ONE)).commit("v2")
    d.wait_for(lambda: d.serving() == ["checkout-main-v001"], "a deploy on the old 1s interval", timeout=10)
    assert d.stop() == 0
    assert "stopped cleanly" in d.log and "Traceback" not in d.log
    assert "config reloaded" not in d.log


def test_sighup_applies_a_good_config_to_the_executor_providers_http_and_log_level(
        daemon_factory: DaemonFactory, tmp_path: Path) -> None:
    d = daemon_factory(interval="1s").start(log_to=tmp_path / "daemon.log")
    d.wait_for(lambda: d.serving() == ["checkout-main-v000"], "the first deploy")
    new_port = free_port()
    (tmp_path / "token2").write_text("second-t0ken\n")
    cfg = _config(d)
    cfg["http"] = {"listen": f"127.0.0.1:{new_port}", "token_file": "token2", "max_body": "2KiB"}
    cfg["execution"] = {**cfg["execution"], "max_attempts": 1, "step_retries": 2, "step_backoff": "10ms"}
    cfg["providers"]["local"]["accounts"]["default"]["faults"] = {"rate": 1.0, "calls": ["create"],
                                                                   "kinds": ["throttled"]}
    cfg["log"] = {"level": "debug"}
    d.config.write_text(yaml.safe_dump(cfg))
    assert d.proc is not None
    d.proc.send_signal(signal.SIGHUP)
    [line] = d.wait_log("config reloaded (")
    for part in ("providers.local.accounts.default", "execution", "http.listen", "http.token_file",
                 "http.max_body", "log.level"):
        assert part in line["message"]
    old_port, d.port = d.port, new_port

    def old_closed() -> bool:  # the old server's loop lets go of its socket within its 1s select timeout
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", old_port)) != 0

    d.wait_for(old_closed, "the old address to close", timeout=5)
    assert d.get("/healthz")[0] == 200
    assert d.post("/api/v1/reconcile", b"", {"Authorization": f"Bearer {d.token}"})[0] == 401
    assert d.post("/api/v1/reconcile", b"", {"Authorization": "Bearer second-t0ken"})[0] == 202
    assert d.post("/api/v1/reconcile", b"{}" + b" " * 3000, {"Authorization": "Bearer second-t0ken"})[0] == 413
    d.token = "second-t0ken"  # reads need the token too
    # the rebuilt provider injects the new faults; the executor retries as often as the new config says,
    # and the engine stalls the change after the new max_attempts
    d.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=ONE)).commit("v2")
    d.repo.write("apps/broken.yaml", "application: [unclosed\n").commit("a broken file")
    d.wait_for(lambda: any("stalled" in s["reason"] for s in d.status()["skipped"]), "the change to stall")
    retries = [x["message"] for x in d.log_lines() if "create failed" in x.get("message", "")]
    assert retries and all("retry 1/1 " in m for m in retries), retries
    assert any(x["level"] == "debug" for x in d.log_lines()), "log.level: debug applied"
    assert d.serving() == ["checkout-main-v000"]
    assert d.stop() == 0


def test_a_port_in_use_or_a_bad_daemon_section_stops_the_start_with_the_reason(tmp_path: Path,
                                                                              daemon_factory: DaemonFactory) -> None:
    d = daemon_factory()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", d.port))
        busy.listen(1)
        proc = reconciler_subprocess(["run", "--config", str(d.config)])
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert f"http.listen 127.0.0.1:{d.port}: cannot listen there: Address already in use" in err
    assert "Traceback" not in err
    write_config(d.config, d.repo.path, d.state, daemon=5)
    proc = reconciler_subprocess(["run", "--config", str(d.config)], stdin=subprocess.DEVNULL)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and f"{d.config}:" in err and "daemon: expected a mapping, got a number" in err

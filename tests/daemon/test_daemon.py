"""``reconciler run`` as a real process: polling, webhooks, reloads, signals, sd_notify, HTTP."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import signal
import socket
import tempfile
import time
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Env, app_spec, write_config
from tests.daemon.conftest import DaemonFactory


def test_a_commit_is_applied_within_one_poll_interval(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory(interval="1s").start()
    d.wait_for(lambda: d.serving() == ["checkout-main-v000"], "the first deploy")
    d.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=("us-east-1",))).commit("v2")
    took = d.wait_for(lambda: d.serving() == ["checkout-main-v001"], "the image change")
    assert took < 5, f"applied after {took:.1f}s with a 1s interval"
    assert d.stop() == 0


def test_a_webhook_triggers_a_pass_within_a_second(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory(interval="1h").start()
    d.wait_for(lambda: d.serving() == ["checkout-main-v000"], "the first pass (runs at start)")
    d.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=("us-east-1",))).commit("v2")
    body = json.dumps({"ref": "refs/heads/main"}).encode()
    bad = d.post("/webhook", body, {"X-Hub-Signature-256": "sha256=" + "0" * 64})
    assert bad[0] == 401
    sig = hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
    code, _ = d.post("/webhook", body, {"X-Hub-Signature-256": f"sha256={sig}",
                                         "Content-Type": "application/json"})
    assert code == 202
    took = d.wait_for(lambda: d.serving() == ["checkout-main-v001"], "the webhook pass", timeout=10)
    assert took < 2, f"webhook pass took {took:.1f}s"
    other = json.dumps({"ref": "refs/heads/feature"}).encode()
    sig = hmac.new(b"hook-secret", other, hashlib.sha256).hexdigest()
    assert "ignored" in d.post("/webhook", other, {"X-Hub-Signature-256": f"sha256={sig}"})[1]
    assert d.post("/webhook", body, {"X-Gitlab-Token": "hook-secret"})[0] == 202
    assert d.stop() == 0


def test_sighup_reloads_a_changed_interval_and_keeps_a_bad_config_out(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory(interval="1h").start()
    d.wait_for(lambda: d.serving() == ["checkout-main-v000"], "the first pass")
    cfg = yaml.safe_load(d.config.read_text())
    cfg["poll"]["interval"] = "1s"
    d.config.write_text(yaml.safe_dump(cfg))
    assert d.proc is not None
    d.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    d.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=("us-east-1",))).commit("v2")
    d.wait_for(lambda: d.serving() == ["checkout-main-v001"], "a poll on the reloaded 1s interval", timeout=10)
    d.config.write_text("poll: {interval: soon}\n")
    d.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert d.get("/healthz")[0] == 200
    assert d.stop() == 0
    assert "config reload failed, keeping the previous config" in d.log


def test_sigterm_during_a_health_wait_exits_0_and_a_restart_finishes(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory(interval="1s", boot_seconds=4).start()
    d.wait_for(lambda: d.serving() == ["checkout-main-v000"], "the first deploy", timeout=30)
    d.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=("us-east-1",),
                                                timeout="60s")).commit("v2")
    d.wait_for(lambda: any(e["state"] == "running" for e in d.status()["executions"]), "the deploy to start")
    t0 = time.monotonic()
    assert d.stop() == 0
    assert time.monotonic() - t0 < 10, "stopped within the deadline"
    assert "stopped cleanly" in d.log
    d.start()
    d.wait_for(lambda: d.serving() == ["checkout-main-v001"], "the restart to finish the deploy", timeout=30)
    states = [e["state"] for e in d.status()["executions"]]
    assert "interrupted" in states and states[0] == "succeeded"
    assert d.stop() == 0


def test_sd_notify_ready_watchdog_and_stopping(daemon_factory: DaemonFactory) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(0.2)
        d = daemon_factory(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"}).start()
        got: list[str] = []
        deadline = time.monotonic() + 10
        def seen_all() -> bool:
            statuses = [m for m in got if m.startswith("STATUS=")]
            return {"READY=1", "WATCHDOG=1"} <= set(got) and all(
                any(m.startswith(f"STATUS={doing}; last pass") for m in statuses)
                for doing in ("applying 1 change(s)", "idle"))

        while time.monotonic() < deadline and not seen_all():
            with contextlib.suppress(TimeoutError):
                got += sock.recv(4096).decode().split("\n")
        assert d.stop() == 0
        while True:
            try:
                got += sock.recv(4096).decode().split("\n")
            except (TimeoutError, BlockingIOError):
                break
        sock.close()
    assert seen_all() and "STOPPING=1" in got


def test_metrics_parse_and_state_changing_routes_need_the_token(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory().start()
    d.wait_for(lambda: d.serving() == ["checkout-main-v000"], "the first deploy")
    code, text = d.get("/metrics")
    names = {f.name for f in text_string_to_metric_families(text)}
    assert code == 200 and {"reconciler_pass_duration_seconds", "reconciler_changes",
                            "reconciler_last_successful_pass_timestamp_seconds"} <= names
    assert d.get("/readyz")[0] == 200
    for path in ("/api/v1/reconcile", "/api/v1/pause/checkout", "/api/v1/approve/abc"):
        assert d.post(path)[0] == 401
        assert d.post(path, headers={"Authorization": "Bearer wrong"})[0] == 401
    auth = {"Authorization": f"Bearer {d.token}"}
    assert d.post("/api/v1/pause/checkout", b'{"reason": "incident"}', auth)[0] == 200
    assert "checkout" in d.status()["paused"]
    assert d.post("/api/v1/resume/checkout", b"", auth)[0] == 200
    assert d.post("/api/v1/reconcile", b"", auth)[0] == 202
    assert d.stop() == 0
    assert "t0ken-for-tests" not in d.log


def test_a_broken_application_is_stalled_with_file_and_field_and_the_others_reconcile(
        daemon_factory: DaemonFactory) -> None:
    apps = {"checkout": app_spec(regions=("us-east-1",)), "cart": app_spec("cart", regions=("us-east-1",))}
    d = daemon_factory(apps=apps).start()
    d.wait_for(lambda: d.serving() == ["cart-main-v000", "checkout-main-v000"], "both deploys")
    d.repo.write("apps/cart.yaml", app_spec("cart", regions=("us-east-1",)).replace("instance_type", "instance_typo"))
    d.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=("us-east-1",))).commit("break cart")
    d.wait_for(lambda: "checkout-main-v001" in d.serving(), "checkout to deploy despite cart")
    cart = d.status()["applications"]["cart"]
    stalled = [c for c in cart["conditions"] if c["type"] == "Stalled"]
    assert stalled and "apps/cart.yaml:" in stalled[0]["message"] and "instance_typo" in stalled[0]["message"]
    assert "cart-main-v000" in d.serving(), "the broken application keeps serving"
    assert d.stop() == 0


def test_run_once_does_one_pass_and_exits_0(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec()).commit("v1")
    res = env.cli("run", "--once")
    assert res.code == 0
    assert len([g for g in env.groups() if g["enabled"]]) == 2


def test_run_once_exits_0_and_reports_a_failed_deployment(env: Env) -> None:
    """DESIGN §5: `run` exits 0 once a pass ran; the failure is in the log, status and history."""
    write_config(env.config, env.repo.path, env.state_dir,
                 execution={"max_attempts": 1, "poll_health": "20ms", "step_backoff": "0s"})
    one = ("us-east-1",)
    env.repo.write("apps/checkout.yaml", app_spec(regions=one)).commit("v1")
    assert env.cli("run", "--once").code == 0
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2-bad", regions=one, timeout="200ms")).commit("bad")
    res = env.cli("run", "--once")
    assert res.code == 0 and "1 failed" in res.err
    assert any(e["state"] == "rolled_back" for e in env.status()["executions"])


def test_json_logs_carry_context(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory().start()
    d.wait_for(lambda: d.serving() == ["checkout-main-v000"], "the first deploy")
    assert d.stop() == 0
    lines = [json.loads(line) for line in d.log.splitlines() if line.startswith("{")]
    step_lines = [x for x in lines if x["logger"] == "reconciler.executor"]
    assert step_lines and all(x.get("cluster") == "checkout-main" and x.get("region") for x in step_lines)
    assert os.environ.get("NOTIFY_SOCKET") is None

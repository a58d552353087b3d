"""In-process checks of the HTTP routes, sd_notify datagrams, log formatting and schedules.

The routes are driven through werkzeug's test client with a recording engine
(the real engine is exercised by the process tests in test_daemon.py); sd_notify
goes to a real datagram socket, including Linux's abstract namespace.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import os
import re
import socket
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

from reconciler import daemon, logs, sdnotify
from reconciler import http as http_api
from reconciler.config import settings as config_mod
from reconciler.console import backend
from reconciler.core import errors, model


class RecordingBackend:
    """Stands in for the engine behind the routes: records the calls the API makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def ready(self) -> tuple[bool, str]:
        return False, "repository not read yet"

    def status(self) -> dict[str, Any]:
        return {"commit": None, "applications": {}}

    def plan_preview(self, *, fresh: bool = False) -> backend.Preview:
        return backend.Preview(plan=model.Plan(commit="", changes=()), held=(), skipped=(), unreadable={},
                               commit="")

    def approve(self, ident: str, *, by: str, comment: str = "") -> dict[str, Any]:
        self.calls.append(("approve", ident, by))
        return {"id": ident, "state": "approved", "by": by}

    def reject(self, ident: str, *, by: str, comment: str = "") -> dict[str, Any]:
        raise errors.ConfigError(f"no pending approval {ident}")

    def promote(self, application: str, version: str, *, environment: str | None, message: str,
                by: str) -> dict[str, Any]:
        self.calls.append(("promote", f"{application}={version}", by))
        return {"application": application, "version": version, "by": by}

    def pause(self, target: str, *, by: str, reason: str = "", force: bool = False) -> None:
        self.calls.append(("pause", target, reason))

    def resume(self, target: str, *, by: str) -> None:
        self.calls.append(("resume", target, by))

    def trigger(self, reason: str) -> None:
        self.calls.append(("trigger", reason, ""))

    def history(self, *, limit: int, application: str | None) -> list[dict[str, Any]]:
        return []

    def executions(self, *, limit: int, application: str | None) -> list[dict[str, Any]]:
        return []

    def execution(self, ident: str) -> dict[str, Any] | None:
        return None

    def decide_environment(self, application: str, environment: str, version: str, decision: str, *, by: str,
                           comment: str) -> dict[str, Any]:
        self.calls.append((decision, f"{application}/{environment}/{version}", by))
        return {"id": f"{application}/{environment}/{version}", "state": decision, "by": by}

    def freeze(self, *, by: str, reason: str) -> None:
        self.calls.append(("freeze", reason, by))

    def unfreeze(self, *, by: str) -> None:
        self.calls.append(("unfreeze", "", by))

    def rollback(self, cluster: str, *, region: str | None, by: str) -> list[str]:
        self.calls.append(("rollback", cluster, by))
        return []

    def event_store(self) -> Any:
        raise AssertionError("these routes never open the event stream")


TOKEN = "s3cret"
HOOK_SECRET = "hook"


def make_api(tmp_path: Path, *, token: str | None = TOKEN, secret: str | None = HOOK_SECRET) -> tuple[
        Client, RecordingBackend, list[str]]:
    token_file = secret_file = None
    if token is not None:
        token_file = tmp_path / "token"
        token_file.write_text(token + "\n")
    if secret is not None:
        secret_file = tmp_path / "hook"
        secret_file.write_text(secret + "\n")
    engine = RecordingBackend()
    triggered: list[str] = []
    api = http_api.Api(None, triggered.append, token_file=token_file, webhook_secret_file=secret_file,
                      branch="main", backend=engine)
    return Client(api), engine, triggered


def test_bearer_routes_need_the_exact_token(tmp_path: Path) -> None:
    client, engine, triggered = make_api(tmp_path)
    assert client.post("/api/v1/pause/checkout").status_code == 401
    assert client.post("/api/v1/pause/checkout", headers={"Authorization": "Bearer s3cre"}).status_code == 401
    assert client.post("/api/v1/pause/checkout", headers={"Authorization": "s3cret"}).status_code == 401
    assert engine.calls == [] and triggered == []
    auth = {"Authorization": "Bearer s3cret"}
    assert client.post("/api/v1/pause/checkout", json={"reason": "incident"}, headers=auth).status_code == 200
    assert client.post("/api/v1/approve/a1", json={"by": "alice"}, headers=auth).json == {
        "id": "a1", "state": "approved", "by": "token-file"}, "the approver is the token's name, not the body's"
    rejected = client.post("/api/v1/reject/zz", headers=auth)
    assert rejected.status_code == 409 and "no pending approval zz" in json.loads(rejected.get_data())["error"]
    assert engine.calls == [("pause", "checkout", "incident"), ("approve", "a1", "token-file")]
    assert triggered == []


def test_without_any_token_api_routes_are_403_and_probes_stay_open(tmp_path: Path) -> None:
    client, engine, triggered = make_api(tmp_path, token=None)
    for path in ("/api/v1/reconcile", "/api/v1/resume/x", "/api/v1/approve/a1"):
        res = client.post(path)
        assert res.status_code == 403 and "http.token_file" in json.loads(res.get_data())["error"]
    assert engine.calls == [] and triggered == []
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503 and json.loads(ready.get_data())["reason"] == "repository not read yet"
    status = client.get("/api/v1/status")
    assert status.status_code == 403 and "http.public_read" in json.loads(status.get_data())["error"], \
        "reads need a token now"
    assert client.get("/api/v1/pause/x").status_code == 405
    assert client.get("/nowhere").status_code == 404


@pytest.mark.parametrize("forge", ["github", "gitea", "gitlab"])
def test_webhooks_are_verified_per_forge_and_only_branch_pushes_trigger(tmp_path: Path, forge: str) -> None:
    client, _engine, triggered = make_api(tmp_path)

    def send(payload: dict[str, Any], event: str = "push", secret: str = HOOK_SECRET) -> int:
        body = json.dumps(payload).encode()
        sig = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "github": {"X-Hub-Signature-256": f"sha256={sig}", "X-GitHub-Event": event},
            "gitea": {"X-Gitea-Signature": sig, "X-Gitea-Event": event},
            "gitlab": {"X-Gitlab-Token": secret, "X-Gitlab-Event": "Push Hook" if event == "push" else event},
        }[forge]
        return client.post("/webhook", data=body, headers=headers, content_type="application/json").status_code

    assert send({"ref": "refs/heads/main"}, secret="wrong") == 401
    assert client.post("/webhook", data=b"{}").status_code == 401  # unsigned
    assert triggered == []
    assert send({"ref": "refs/heads/feature"}) == 202
    assert send({"ref": "refs/tags/v1"}) == 202
    assert send({"zen": "hello"}, event="ping") == 202
    assert triggered == []
    assert send({"ref": "refs/heads/main"}) == 202
    assert triggered == ["webhook"]


def test_webhook_route_is_404_without_a_secret(tmp_path: Path) -> None:
    client, _engine, triggered = make_api(tmp_path, secret=None)
    assert client.post("/webhook", data=b"{}", headers={"X-Gitlab-Token": ""}).status_code == 404
    assert triggered == []


def test_metrics_are_served_in_the_prometheus_format(tmp_path: Path) -> None:
    client, _engine, _triggered = make_api(tmp_path)
    res = client.get("/metrics")
    assert res.status_code == 200 and res.headers["Content-Type"].startswith("text/plain; version=")


def _recv_all(sock: socket.socket) -> list[str]:
    got: list[str] = []
    while True:
        try:
            got.append(sock.recv(4096).decode())
        except BlockingIOError:
            return got


def test_notify_to_a_path_and_to_the_abstract_namespace(tmp_path: Path) -> None:
    path = str(tmp_path / "n.sock")
    abstract = f"reconciler-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as a, \
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as b:
        a.bind(path)
        b.bind("\0" + abstract)
        a.setblocking(False)
        b.setblocking(False)
        for address, sock in ((path, a), ("@" + abstract, b)):
            n = sdnotify.Notifier(address)
            n.ready("ready at abc1234")
            n.status("polling")
            n.watchdog()
            n.stopping()
            n.close()
            got = _recv_all(sock)
            assert got == [f"READY=1\nSTATUS=ready at abc1234\nMAINPID={os.getpid()}", "STATUS=polling",
                           "WATCHDOG=1", "STOPPING=1\nSTATUS=stopping"]


def test_notify_is_a_no_op_outside_systemd_and_survives_a_vanished_socket(tmp_path: Path) -> None:
    off = sdnotify.Notifier("")
    assert not off.enabled
    off.ready("x")
    gone = sdnotify.Notifier(str(tmp_path / "missing.sock"))
    gone.watchdog()  # logged, not raised: systemd going away must not kill the daemon
    gone.close()


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert sdnotify.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert sdnotify.watchdog_interval() is None


def _capture(fmt: str) -> tuple[io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter() if fmt == "json" else logs.TextFormatter())
    handler.addFilter(logs.RedactFilter())
    return stream, handler


def test_json_lines_carry_context_and_never_a_token() -> None:
    stream, handler = _capture("json")
    logger = logging.getLogger("tests.daemon.ctx")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        log = logs.context(logger, application="checkout", cluster="checkout-main", region="us-east-1",
                           commit="abc1234", execution_id="")
        log.warning("calling with Authorization: Bearer abc.def-123 and token=xyz, secret: hunter2")
        log.info("step %s done", "resize", extra={"execution_id": "e-1"})
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["application"] == "checkout" and first["region"] == "us-east-1" and "execution_id" not in first
    assert first["level"] == "warning" and first["logger"] == "tests.daemon.ctx"
    for leaked in ("abc.def-123", "xyz", "hunter2"):
        assert leaked not in first["message"]
    assert second["message"] == "step resize done" and second["execution_id"] == "e-1"


def test_text_lines_for_a_terminal_and_format_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    stream, handler = _capture("text")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "deployed %s", ("v001",), None)
    record.cluster = "checkout-main"
    handler.handle(record)
    assert stream.getvalue().rstrip().endswith("INFO    deployed v001  [cluster=checkout-main]")
    assert logs.choose_format("json") == "json"
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    assert logs.choose_format("auto") == "text"
    monkeypatch.setenv("INVOCATION_ID", "0123")
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a TTY, as under systemd
    assert logs.choose_format("auto") == "json"
    assert logs.parse_level("debug") == logging.DEBUG and logs.parse_level(30) == logging.WARNING
    with pytest.raises(ValueError, match="loud"):
        logs.parse_level("loud")


def _cfg(tmp_path: Path, body: str) -> config_mod.Config:
    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    path = tmp_path / "config.yaml"
    path.write_text(f"repo: {{url: {repo}}}\nstate_dir: {tmp_path / 'state'}\n{body}")
    return config_mod.load_config(str(path))


def test_schedules_and_daemon_settings_are_validated_with_their_field(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "schedules:\n  - {cron: '0 3 * * *', reason: nightly, timezone: Europe/Berlin}\n"
                         "daemon: {shutdown_deadline: 45s}\nlog: {level: debug}\n")
    _interval, [(trigger, reason)] = daemon._triggers(cfg)
    assert reason == "nightly" and str(trigger.timezone) == "Europe/Berlin"
    assert cfg.shutdown_deadline_s == 45.0 and cfg.log_level == logging.DEBUG
    for body, field in (("schedules: [{cron: '61 3 * * *'}]\n", ":3: schedules[0].cron"),
                        ("schedules: [{reason: x}]\n", ":3: schedules[0].cron: required"),
                        ("schedules: [{cron: '0 3 * * *', timezone: Nowhere/Land}]\n", ":3: schedules[0].timezone"),
                        ("schedules: {cron: '0 3 * * *'}\n", ":3: schedules: expected a list")):
        with pytest.raises(errors.ConfigError, match=re.escape(field)):
            _cfg(tmp_path, body)
    with pytest.raises(errors.ConfigError, match=r":3: log\.level"):
        _cfg(tmp_path, "log: {level: loud}\n")

"""``reconciler run`` as a real process with notification targets on 127.0.0.1: restarts, hung targets, the stream."""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import app_spec, reconciler_subprocess
from tests.daemon.conftest import Daemon, DaemonFactory
from tests.notifications.endpoints import Answer, Endpoint, Seen, github_status, slack_ok

ONE = ("us-east-1",)
FAST = {"poll": "50ms", "retry": {"first": "100ms", "max": "200ms"}}


def _switch(up: threading.Event, ok: Any = slack_ok) -> Any:
    def script(ep: Endpoint, req: Seen) -> Answer:
        return ok(ep, req) if up.is_set() else Answer(503, b"down for maintenance")
    return script


def _notifications(tmp_path: Path, chat: Endpoint, forge: Endpoint, **chat_extra: Any) -> dict[str, Any]:
    (tmp_path / "gh-token").write_text("ghp_daemon\n")
    (tmp_path / "slack-url").write_text(chat.url("/services/T0/B0/daemon") + "\n")
    return {"notifications": {
        "delivery": FAST,
        "targets": {"chat": {"type": "slack", "url_file": "slack-url", **chat_extra}},
        "commit_status": {"forge": {"type": "github", "url": forge.url("/api/v3"), "repo": "acme/state",
                                    "token_file": "gh-token", **chat_extra}},
    }}


def _targets(d: Daemon) -> dict[str, dict[str, Any]]:
    return dict(d.status()["notifications"]["targets"])


def test_events_left_undelivered_at_a_stop_are_delivered_once_in_order_after_the_restart(
        daemon_factory: DaemonFactory, endpoint, tmp_path) -> None:
    up = threading.Event()
    chat, forge = endpoint(_switch(up)), endpoint(_switch(up, github_status))
    d = daemon_factory(extra=_notifications(tmp_path, chat, forge)).start()
    d.wait_for(lambda: d.serving() == ["checkout-main-v000"], "the first deploy")
    d.wait_for(lambda: len(chat.seen) >= 2 and len(forge.seen) >= 2, "failed attempts at both targets")
    failing = _targets(d)
    assert failing["chat"]["failing"] and "HTTP 503" in failing["chat"]["last_error"]
    assert failing["chat"]["pending"] == 2 and failing["forge"]["pending"] == 2
    assert d.stop() == 0
    up.set()
    d.start()
    d.wait_for(lambda: len(chat.delivered()) == 2 and len(forge.delivered()) == 2, "delivery after the restart")
    texts = [s.json()["text"] for s in chat.delivered()]
    assert texts[0].startswith("checkout: deploy started: deploying ") and texts[1].startswith("checkout: deployed:")
    assert [s.json()["state"] for s in forge.delivered()] == ["pending", "success"]
    assert {s.path for s in forge.delivered()} == {f"/api/v3/repos/acme/state/statuses/{d.repo.head()}"}
    d.wait_for(lambda: not _targets(d)["chat"]["failing"], "the target to show as recovered")
    assert d.stop() == 0
    assert len(chat.delivered()) == 2 and len(forge.delivered()) == 2, "nothing delivered twice"


def test_a_deploy_runs_at_full_speed_while_every_target_hangs(daemon_factory: DaemonFactory, endpoint,
                                                              tmp_path) -> None:
    def hang(ok: Any) -> Any:
        return lambda ep, req: Answer(hang=True) if not ep.release.is_set() else ok(ep, req)

    chat, forge = endpoint(hang(slack_ok)), endpoint(hang(github_status))
    d = daemon_factory(extra=_notifications(tmp_path, chat, forge, timeout="60s")).start()
    d.wait_for(lambda: d.serving() == ["checkout-main-v000"], "the first deploy")
    d.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=ONE)).commit("v2")
    d.wait_for(lambda: d.serving() == ["checkout-main-v001"], "the second deploy")
    # Both deploys are done while each target still waits on its very first send: nothing waited on delivery.
    d.wait_for(lambda: _targets(d)["chat"]["pending"] == _targets(d)["forge"]["pending"] == 4,
               "the outbox to hold all four events (the feeder reads the history after the fact)")
    targets = _targets(d)
    assert len(chat.seen) == 1 and len(forge.seen) == 1 and chat.delivered() == forge.delivered() == []
    assert targets["chat"]["delivered"] == targets["forge"]["delivered"] == 0
    assert [e["state"] for e in d.status()["executions"]] == ["succeeded", "succeeded"]
    chat.release.set()
    forge.release.set()
    d.wait_for(lambda: len(chat.delivered()) == 4 and len(forge.delivered()) == 4, "delivery once released")
    d.wait_for(lambda: _targets(d)["chat"]["delivered"] == _targets(d)["forge"]["delivered"] == 4,
               "the daemon to count the deliveries")
    images = [s.json()["text"].rsplit("(", 1)[-1] for s in chat.delivered()]
    assert images == ["checkout-1.0)", "checkout-1.0)", "checkout-2.0)", "checkout-2.0)"], "in order"
    _, text = d.get("/metrics")
    found = {(s.name, s.labels.get("target")): s.value for f in text_string_to_metric_families(text)
             for s in f.samples}
    assert found[("reconciler_notifications_delivered_total", "chat")] == 4.0
    assert found[("reconciler_notifications_delivered_total", "forge")] == 4.0
    assert found[("reconciler_notifications_queue_depth", "chat")] == 0.0
    assert d.stop() == 0


class _Stream:
    """One event-stream connection; ``close`` hangs up as a browser or curl does."""

    def __init__(self, d: Daemon, path: str, headers: dict[str, str]) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
        self.conn.request("GET", path, headers=headers)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status

    def readline(self) -> bytes:
        return self.resp.readline()

    def close(self) -> None:
        self.resp.close()
        self.conn.close()


def _stream(d: Daemon, path: str, headers: dict[str, str]) -> _Stream:
    return _Stream(d, path, headers)


def _read_events(resp: _Stream, until: str) -> list[dict[str, Any]]:
    """Parse ``id:``/``event:``/``data:`` frames until an event of kind ``until``."""
    out: list[dict[str, Any]] = []
    frame: dict[str, str] = {}
    while True:
        raw = resp.readline()
        assert raw, f"the stream ended (HTTP {resp.status}) before a {until} event"
        line = raw.decode().rstrip("\n")
        if line == "":
            if "data" in frame:
                out.append({"id": int(frame["id"]), "event": frame["event"], **json.loads(frame["data"])})
                if frame["event"] == until:
                    return out
            frame = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            frame[key] = value


def test_the_event_stream_needs_the_token_filters_by_application_and_resumes_after_last_event_id(
        daemon_factory: DaemonFactory) -> None:
    apps = {"checkout": app_spec(regions=ONE), "cart": app_spec("cart", regions=ONE)}
    d = daemon_factory(apps=apps).start()
    d.wait_for(lambda: d.serving() == ["cart-main-v000", "checkout-main-v000"], "the first deploys")
    denied = _stream(d, "/api/v1/events", {})
    assert denied.status == 401
    denied.close()
    auth = {"Authorization": f"Bearer {d.token}"}
    resp = _stream(d, "/api/v1/events?after=0", auth)
    assert resp.status == 200 and resp.resp.getheader("Content-Type", "").startswith("text/event-stream")
    everything = _read_events(resp, "deploy_succeeded")
    assert everything[0]["id"] == 1 and [e["id"] for e in everything] == sorted(e["id"] for e in everything)
    assert everything[-1]["kind"] == "deploy_succeeded" and everything[-1]["detail"]["changes"]
    resp.close()

    cart = _stream(d, "/api/v1/events?application=cart", {**auth, "Last-Event-ID": "0"})
    cart_events = _read_events(cart, "deploy_succeeded")
    assert {e["application"] for e in cart_events} == {"cart"}
    cart.close()

    live = _stream(d, "/api/v1/events?application=checkout", auth)  # no Last-Event-ID: what happens next
    d.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=ONE)).commit("v2")
    new = _read_events(live, "deploy_succeeded")
    assert new[0]["kind"] == "deploy_started" and new[0]["id"] > everything[-1]["id"]
    assert new[-1]["detail"]["changes"][0]["image"] == "checkout-2.0"
    live.close()

    resumed = _stream(d, "/api/v1/events?application=checkout", {**auth, "Last-Event-ID": str(new[0]["id"])})
    again = _read_events(resumed, "deploy_succeeded")
    assert [e["id"] for e in again] == [e["id"] for e in new[1:]], "after Last-Event-ID, nothing missed or repeated"
    resumed.close()

    held = [_stream(d, "/api/v1/events", auth) for _ in range(2)]
    third = _stream(d, "/api/v1/events", auth)
    assert third.status == 503 and third.resp.getheader("Retry-After") == "5", "each stream holds an HTTP thread"
    third.close()
    for h in held:
        h.close()
    assert d.wait_for(lambda: _stream(d, "/api/v1/events", auth).status == 200, "a slot freed by a client leaving",
                      timeout=5) < 3
    assert d.stop() == 0


def test_reconciler_events_follow_prints_new_events_as_json_lines(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory().start()
    d.wait_for(lambda: d.serving() == ["checkout-main-v000"], "the first deploy")
    proc = reconciler_subprocess(["events", "--config", str(d.config), "--follow", "--format", "json",
                                  "--application", "checkout", "--limit", "1"])
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first["kind"] == "deploy_succeeded" and first["application"] == "checkout"
        d.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=ONE)).commit("v2")
        seen: list[dict[str, Any]] = []
        while not seen or seen[-1]["kind"] != "deploy_succeeded":
            seen.append(json.loads(proc.stdout.readline()))
        assert seen[0]["kind"] == "execution_started" or seen[0]["kind"] == "deploy_started"
        assert seen[-1]["detail"]["changes"][0]["image"] == "checkout-2.0" and seen[-1]["time"].endswith("Z")
        assert all(e["id"] > first["id"] for e in seen)
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    done = subprocess.run([*_cli(), "events", "--config", str(d.config), "--kind", "deploy_succeeded"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 2 and "deploy_succeeded" in done.stdout
    assert d.stop() == 0


def _cli() -> list[str]:
    import sys

    return [sys.executable, "-m", "reconciler.cli"]

"""The outbox delivers every event once, in order, through outages, throttling and hung endpoints."""

from __future__ import annotations

import itertools
import logging
import time

import pytest
from prometheus_client import generate_latest

from reconciler.notifications import outbox, worker
from reconciler.runtime import metrics
from tests.notifications.conftest import Rig
from tests.notifications.endpoints import Answer, Endpoint, Seen, fails_first, slack_ok


def _slack(ep: Endpoint, **extra: object) -> dict[str, object]:
    return {"targets": {"chat": {"type": "slack", "url": ep.url("/services/T0/B0/x"), **extra}},
            "delivery": {"retry": {"first": "2s", "max": "60s"}}}


def _texts(requests: list[Seen]) -> list[str]:
    return [r.json()["text"] for r in requests]


def test_a_target_down_for_a_while_gets_every_event_once_in_order_when_it_recovers(rig, endpoint) -> None:
    ep = endpoint(fails_first(4))
    r: Rig = rig(_slack(ep))
    r.deploy("checkout")
    r.deploy("cart", image="cart-7")
    assert r.feed() == 4  # two deploy_started, two deploy_succeeded
    r.drain("chat")
    delivered = _texts(ep.delivered())
    assert len(ep.seen) == 4 + 4, "four failed attempts, then each event once"
    assert [t.split(":")[0] for t in delivered] == ["checkout", "checkout", "cart", "cart"]
    assert "deploy started" in delivered[0] and "deployed" in delivered[1]
    failed_attempts = [s for s in ep.seen[:4]]
    assert all(s.json()["text"] == ep.seen[0].json()["text"] for s in failed_attempts), "no event overtook the first"
    row = r.box.rows_of("chat")[0]
    assert row["state"] == "delivered" and row["attempts"] == 5
    summary = r.box.summary([("chat", "slack")], r.clock.now())["chat"]
    assert summary["delivered"] == 4 and summary["failed_attempts"] == 4 and not summary["failing"]
    assert "HTTP 503" in summary["last_error"]


def test_backoff_doubles_between_attempts_up_to_the_maximum(rig, endpoint) -> None:
    ep = endpoint(fails_first(6))
    r: Rig = rig(_slack(ep))
    r.deploy()
    r.feed()
    times: list[float] = []
    w = r.workers["chat"]
    while len(ep.delivered()) < 2:
        before = len(ep.seen)
        r.clock.advance(w.step())
        if len(ep.seen) > before:
            times.append(r.clock.now())
    gaps = [round(b - a) for a, b in itertools.pairwise(times)]
    assert gaps[:6] == [2, 4, 8, 16, 32, 60]


def test_a_429_is_honoured_its_retry_after_and_then_delivered(rig, endpoint) -> None:
    ep = endpoint(fails_first(1, 429, {"Retry-After": "30"}))
    r: Rig = rig(_slack(ep))
    r.deploy()
    r.feed()
    w = r.workers["chat"]
    start = r.clock.now()
    w.step()
    assert len(ep.seen) == 1
    for _ in range(50):  # steps before the 30 s are up send nothing
        r.clock.advance(min(w.step(), 1.0))
        if r.clock.now() - start >= 29:
            break
    assert len(ep.seen) == 1
    r.drain("chat")
    assert len(ep.delivered()) == 2 and r.clock.now() - start >= 30
    assert 'reconciler_notifications_failed_total{error="http_429",target="chat"}' in \
        generate_latest(metrics.REGISTRY).decode()


def test_the_rate_limit_spaces_sends_and_keeps_the_rest_queued(rig, endpoint) -> None:
    ep = endpoint()
    r: Rig = rig(_slack(ep, rate_limit={"per_minute": 6, "burst": 1}))
    for app in ("a", "b", "c"):
        r.deploy(app, image=f"{app}-1")
    r.feed()
    w = r.workers["chat"]
    waits = []
    while len(ep.delivered()) < 6:
        waits.append(w.step())
        r.clock.advance(waits[-1])
    assert len(ep.delivered()) == 6
    assert [round(x) for x in waits if x > 0.5] == [10] * 5, "one send every 10 s after the first"


def test_an_event_never_delivered_is_dropped_after_max_age_with_the_reason_logged(rig, endpoint, caplog) -> None:
    def down_for_checkout(ep: Endpoint, req: Seen) -> Answer:
        return Answer(503, b"down") if req.json()["text"].startswith("checkout") else slack_ok(ep, req)

    ep = endpoint(down_for_checkout)
    r: Rig = rig(_slack(ep, max_age="10m"))
    r.deploy("checkout")
    r.clock.advance(5)
    r.deploy("cart", image="cart-7")
    r.feed()
    with caplog.at_level(logging.WARNING, logger="reconciler.notifications.worker"):
        r.drain("chat", steps=500)
    rows = r.box.rows_of("chat")
    assert [row["state"] for row in rows] == ["dropped", "dropped", "delivered", "delivered"]
    assert "not delivered within max_age" in rows[0]["last_error"] and "HTTP 503" in rows[0]["last_error"]
    assert any("dropped event" in m and "max_age" in m for m in caplog.messages)
    assert _texts(ep.delivered())[0].startswith("cart")


def test_a_refused_body_is_dropped_at_once_and_the_queue_goes_on(rig, endpoint) -> None:
    ep = endpoint(fails_first(1, 400))
    r: Rig = rig(_slack(ep))
    r.deploy()
    r.feed()
    r.drain("chat")
    rows = r.box.rows_of("chat")
    assert [row["state"] for row in rows] == ["dropped", "delivered"]
    assert rows[0]["last_error"].startswith("refused: slack: HTTP 400")
    assert len(ep.seen) == 2


def test_feeding_the_same_history_twice_queues_each_event_once_per_target(rig, endpoint) -> None:
    ep = endpoint()
    r: Rig = rig(_slack(ep))
    r.deploy()
    first = r.box.cursor()
    r.feed()
    assert len(r.box.rows_of("chat")) == 2
    r.box.enqueue([], cursor=first or 0, now=r.clock.now())  # a crash before the cursor moved, or a second daemon
    assert r.feed() == 2
    assert len(r.box.rows_of("chat")) == 2
    r.drain("chat")
    assert len(ep.delivered()) == 2


def test_the_first_start_announces_only_what_happens_from_then_on(rig, endpoint, tmp_path) -> None:
    ep = endpoint()
    r: Rig = rig(_slack(ep))
    r.deploy()
    r.feed()
    fresh = outbox.Outbox(r.store)
    with r.store.tx() as c:
        c.execute(outbox.cursors.delete())
    feeder = worker.Feeder(r.store, fresh, r.config.notifications, r.feeder.policies, r.clock)
    assert feeder.step() == 0 and fresh.cursor() == r.store.last_event_id()


def test_a_hung_target_holds_up_only_itself(rig, endpoint) -> None:
    stuck = endpoint(lambda _ep, _req: Answer(hang=True))
    chat = endpoint()
    r: Rig = rig({"targets": {
        "stuck": {"type": "webhook", "url": stuck.url("/hook"), "timeout": "30s"},
        "chat": {"type": "slack", "url": chat.url("/services/x"), "rate_limit": {"per_minute": 0}},
    }, "delivery": {"poll": "20ms"}})
    hub = worker.Hub(r.store, r.config, clock=r.clock, policies=r.feeder.policies)
    hub.start()
    try:
        for app in ("a", "b", "c"):
            r.deploy(app, image=f"{app}-1")
        deadline = time.monotonic() + 10
        while len(chat.delivered()) < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(chat.delivered()) == 6
        assert len(stuck.seen) == 1 and stuck.delivered() == [], "the stuck target is still on its first send"
    finally:
        stuck.release.set()
        hub.stop()


@pytest.mark.parametrize("per_minute", [0])
def test_a_rate_limit_of_zero_sends_without_pause(rig, endpoint, per_minute: int) -> None:
    ep = endpoint()
    r: Rig = rig(_slack(ep, rate_limit={"per_minute": per_minute}))
    for app in ("a", "b", "c", "d"):
        r.deploy(app, image=f"{app}-1")
    r.feed()
    waits = [r.workers["chat"].step() for _ in range(8)]
    assert waits == [0.0] * 8 and len(ep.delivered()) == 8


@pytest.mark.postgres
def test_two_daemons_sharing_a_postgresql_store_deliver_each_event_once(rig, endpoint, postgres_url) -> None:
    from reconciler.state import store as store_mod

    ep = endpoint()
    r: Rig = rig(_slack(ep, rate_limit={"per_minute": 0}), state=postgres_url)
    other_store = store_mod.Store(postgres_url)  # a second daemon: its own owner, same tables
    try:
        other_box = outbox.Outbox(other_store)
        other_feeder = worker.Feeder(other_store, other_box, r.config.notifications, r.feeder.policies, r.clock)
        target = r.config.notifications.targets[0]
        other = worker.TargetWorker(target, r.workers["chat"].sender, other_store, other_box,
                                    r.config.notifications.delivery, r.clock)
        for app in ("a", "b", "c"):
            r.deploy(app, image=f"{app}-1")
        r.feeder.step()
        other_feeder.step()  # the feeder lease is held by the first: this one reads nothing
        for _ in range(20):
            r.workers["chat"].step()
            other.step()
        assert len(r.box.rows_of("chat")) == 6
        texts = _texts(ep.delivered())
        assert len(texts) == 6 and len(set(texts)) == 6
    finally:
        other_store.close()


def test_a_reload_adds_targets_and_drops_the_queue_of_a_removed_one(rig, endpoint, tmp_path) -> None:
    from reconciler.config import settings as config_mod
    from tests.conftest import write_config

    down = endpoint(lambda _ep, _req: Answer(503, b"down"))
    hook = endpoint(lambda _ep, _req: Answer(204, b""))
    r: Rig = rig({"targets": {"chat": {"type": "slack", "url": down.url("/s")}}, "delivery": {"poll": "20ms"}})
    hub = worker.Hub(r.store, r.config, clock=r.clock, policies=r.feeder.policies)
    hub.start()
    try:
        r.deploy("a", image="a-1")
        deadline = time.monotonic() + 10
        while len(down.seen) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        new = config_mod.load_config(write_config(
            tmp_path / "config.yaml", tmp_path / "desired", tmp_path / "state",
            notifications={"targets": {"hook": {"type": "webhook", "url": hook.url("/h")}},
                           "delivery": {"poll": "20ms"}}))
        hub.reconfigure(new)
        r.deploy("b", image="b-1")
        while len(hook.delivered()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        hub.stop()
    assert [s.json()["application"] for s in hook.delivered()] == ["b", "b"], "a new target hears what comes next"
    assert {row["state"] for row in r.box.rows_of("chat")} == {"dropped"}
    assert r.box.rows_of("chat")[0]["last_error"] == "the target was removed from the config"

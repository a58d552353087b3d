"""The daemon runs canaries judged by a real Prometheus scraping a live exporter the test controls.

The exporter publishes ``app_errors`` per server group, labelled with the names the reconciler gives its
groups; Prometheus scrapes it every second. A bad canary is rolled back with the serving group in traffic
throughout; after a fix, a good canary passes and takes over.
"""

from __future__ import annotations

import socket
import sqlite3
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from tests import prometheus_server
from tests.conftest import app_spec
from tests.daemon.conftest import DaemonFactory

REGION = ("us-east-1",)
CANARY = """\
strategy:
  type: canary
  canary:
    duration: 3s
    interval: 1s
    metrics:
      - {name: errors, query: 'max(app_errors{server_group="${server_group}"})', fail_if: "> 0.01"}
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _events(state: Path, kind: str) -> list[str]:
    conn = sqlite3.connect(state / "state.db")
    rows = conn.execute("SELECT message FROM events WHERE kind = ? ORDER BY id", (kind,)).fetchall()
    conn.close()
    return [m for (m,) in rows]


def test_the_daemon_rolls_back_a_bad_canary_and_promotes_a_good_one(daemon_factory: DaemonFactory,
                                                                    tmp_path: Path) -> None:
    registry = CollectorRegistry()
    errors = Gauge("app_errors", "errors per request", ["server_group"], registry=registry)
    for group in ("checkout-main-v000", "checkout-main-v002"):
        errors.labels(group).set(0.0)
    errors.labels("checkout-main-v001").set(0.2)  # the first canary's name: bad
    port = _port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        with prometheus_server.scraping(tmp_path / "prom", f"127.0.0.1:{port}") as url:
            started = time.monotonic()
            d = daemon_factory(interval="1s", apps={"checkout": app_spec(regions=REGION, desired=2)},
                               extra={"analysis": {"prometheus": {"url": url}},
                                      "execution": {"poll_health": "20ms", "retry_backoff": "0s",
                                                    "step_backoff": "10ms", "max_attempts": 1}}).start()
            d.wait_for(lambda: d.serving() == ["checkout-main-v000"], "the first deploy")
            time.sleep(max(0.0, 6.0 - (time.monotonic() - started)))  # the first scrape is queryable after ~5.5s
            d.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=REGION, desired=2,
                                                        extra=CANARY)).commit("v2, canary")
            seen: set[tuple[str, ...]] = set()

            def rolled_back() -> bool:
                seen.add(tuple(d.serving()))
                return bool(_events(d.state, "execution_rolled_back"))

            d.wait_for(rolled_back, "the bad canary's rollback", timeout=40)
            (message,) = _events(d.state, "execution_rolled_back")
            assert "errors: " in message and "samples > 0.01 (worst 0.2)" in message, message
            assert all("checkout-main-v000" in s for s in seen), seen  # the serving group never left traffic
            # status (what serving() reads) is rewritten after the rollout's event: wait for it, briefly
            d.wait_for(lambda: d.serving() == ["checkout-main-v000"], "status after the rollback", timeout=10)
            assert all("checkout-main-v000" in s for s in seen), seen
            assert _events(d.state, "canary_analysis")[0].startswith("canary checkout-main-v001 after 1s: "
                                                                         "score 0 (fail)")

            errors.labels("checkout-main-v001").set(0.001)  # the fixed build's canary reuses the free name
            time.sleep(2)
            d.repo.write("apps/checkout.yaml", app_spec(image="checkout-3.0", regions=REGION, desired=2,
                                                        extra=CANARY)).commit("v3, fixed")
            d.wait_for(lambda: d.serving() == ["checkout-main-v001"], "the good canary's takeover", timeout=40)
            groups = {g["server_group"]: g for g in d.status()["server_groups"]}
            assert groups["checkout-main-v001"]["capacity"]["desired"] == 2
            assert "checkout-main-v002" not in groups  # the baseline is gone
            readings = _events(d.state, "canary_analysis")
            assert readings[-1].startswith("canary checkout-main-v001 after 3s: score 100 (pass)"), readings
            assert d.stop() == 0
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

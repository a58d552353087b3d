"""Feed and deliver N deploys' notifications through the real outbox; print rates and what a deploy pays.

    .venv/bin/python bench/notify_outbox.py [--deploys 2000] [--targets 3]

Records N deploys (a deploy_started and a deploy_succeeded each, as the
executor's DeployTracker writes them) into a SQLite store, feeds them into the
outbox for T webhook targets, and delivers every row to a local HTTP endpoint
on 127.0.0.1 with each target's worker. The executor's share is only the
history rows: the figures show recording costs the same with or without
targets, since the feeder reads the history after the fact.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

from reconciler.config import settings as config_mod
from reconciler.core import clock as clock_mod
from reconciler.core import model
from reconciler.notifications import history, outbox, senders, worker
from reconciler.runtime import executor
from reconciler.state import store as store_mod
from specs import policy_file


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    count = 0

    def log_message(self, *_args: Any) -> None:
        return None

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).count += 1
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _change(app: str) -> model.Change:
    spec = model.ClusterSpec(application=app, provider="local", account="default", regions=("us-east-1",),
                             launch=model.LaunchSpec(f"{app}-2", "m5.large"), capacity=model.Capacity(1, 2, 4),
                             stack="main")
    return model.Change(application=app, cluster=spec.name, provider="local", account="default", region="us-east-1",
                        action=model.Action.REPLACE, steps=(), desired_server_group=f"{spec.name}-v001",
                        desired=spec, reason="image", commit="c" * 40)


def record(store: store_mod.Store, deploys: int) -> float:
    tracker = history.DeployTracker(store, clock_mod.SystemClock())
    t0 = time.perf_counter()
    for i in range(deploys):
        c = _change(f"app{i}")
        tracker.started("plan", [c])
        tracker.rollout_ended("plan", [c], [executor.ExecutionResult(c, "ex", model.ExecState.SUCCEEDED)])
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deploys", type=int, default=2000)
    ap.add_argument("--targets", type=int, default=3)
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        plain = store_mod.Store(f"sqlite:///{base / 'plain.db'}")
        without = record(plain, args.deploys)
        plain.close()
        section = {"targets": {f"t{i}": {"type": "webhook", "url": url, "rate_limit": {"per_minute": 0}}
                               for i in range(args.targets)}}
        cfg_file = base / "config.yaml"
        cfg_file.write_text(yaml.safe_dump({"state": f"sqlite:///{base / 'state.db'}", "notifications": section}))
        cfg = config_mod.load_config(cfg_file)
        store = store_mod.Store(cfg.state_url)
        box = outbox.Outbox(store)
        clock = clock_mod.SystemClock()
        pol = policy_file.PolicySettings()
        feeder = worker.Feeder(store, box, cfg.notifications, lambda: (pol, {}), clock)
        feeder.step()  # sets the cursor
        with_targets = record(store, args.deploys)
        events = 2 * args.deploys
        t0 = time.perf_counter()
        while feeder.step():
            pass
        fed = time.perf_counter() - t0
        rows = sum(box.depth().values())
        t0 = time.perf_counter()
        for t in cfg.notifications.targets:
            w = worker.TargetWorker(t, senders.build(t), store, box, cfg.notifications.delivery, clock)
            while box.head(t.name) is not None:
                w.step()
        sent = time.perf_counter() - t0
        store.close()
    server.shutdown()
    print(f"{'step':<44}{'wall s':>8}{'per s':>10}")
    print(f"{'record ' + str(events) + ' events, no targets':<44}{without:>8.2f}{events / without:>10.0f}")
    print(f"{'record ' + str(events) + ' events, ' + str(args.targets) + ' targets':<44}{with_targets:>8.2f}"
          f"{events / with_targets:>10.0f}")
    print(f"{'feed ' + str(rows) + ' outbox rows':<44}{fed:>8.2f}{rows / fed:>10.0f}")
    print(f"{'deliver ' + str(_Sink.count) + ' webhooks, one target at a time':<44}{sent:>8.2f}"
          f"{_Sink.count / sent:>10.0f}")
    print(f"recording with/without targets: {with_targets / without:.2f}x (the deploy's share does not grow)")
    assert rows == events * args.targets and _Sink.count == rows, "every event once per target"


if __name__ == "__main__":
    main()

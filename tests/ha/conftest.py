"""Several real ``reconciler run`` processes on one real PostgreSQL database and the local provider."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import DesiredRepo, app_spec, write_config
from tests.daemon.conftest import Daemon, free_port

HA_FAST = {"heartbeat": "200ms", "takeover": "2s"}  # short, so takeover tests stay quick


def many_apps(repo: DesiredRepo, n: int, *, image: str = "img-1.0") -> None:
    """``n`` applications of one cluster in one region each, and room in the blast radius for them."""
    repo.write("apps/policies.yaml", "defaults: {blast_radius: {max_clusters: 1000}}\n")
    for i in range(n):
        repo.write(f"apps/app{i:03d}.yaml", app_spec(f"app{i:03d}", image=image, regions=("us-east-1",),
                                                     desired=1, timeout="60s"))


@dataclass
class Group:
    """N replicas of one installation: one repo, one database, a config and a log per replica."""

    root: Path
    url: str
    repo: DesiredRepo
    replicas: list[Daemon] = field(default_factory=list)

    def add(self, *, boot_seconds: float = 0, ha: dict[str, str] | None = None, max_parallel: int = 8,
            interval: str = "1s", poll_health: str = "100ms") -> Daemon:
        i = len(self.replicas)
        port = free_port()
        token = self.root / "token"
        token.write_text("t0ken-for-tests\n")
        cfg = write_config(
            self.root / f"replica{i}.yaml", self.repo.path, self.root / f"state{i}",
            state=self.url, poll={"interval": interval, "jitter": "0s"},
            http={"listen": f"127.0.0.1:{port}", "token_file": "token"},
            providers={"local": {"accounts": {"default": {"boot_seconds": boot_seconds}}}},
            execution={"poll_health": poll_health, "retry_backoff": "0s", "step_backoff": "10ms",
                       "max_parallel": max_parallel},
            daemon={"shutdown_deadline": "10s"},
            ha=ha or HA_FAST,
        )
        d = Daemon(self.repo, cfg, self.root / f"state{i}", port, "t0ken-for-tests")
        self.replicas.append(d)
        return d

    def start_all(self) -> None:
        """Start every replica at once (all processes spawned before any is waited for)."""
        for i, d in enumerate(self.replicas):
            d.log_path = self.root / f"replica{i}.log"
            sink = d.log_path.open("a", encoding="utf-8")
            d.proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "run", "--config", str(d.config),
                                       "--log-format", "json"], env={**os.environ, **d.env},
                                      stdout=subprocess.DEVNULL, stderr=sink, text=True)
            sink.close()
        for d in self.replicas:
            d.wait_for(lambda d=d: d.get("/healthz")[0] == 200, "the HTTP endpoint", timeout=60)  # type: ignore[misc]

    # ------------------------------------------------------------------ reading the shared database

    def query(self, sql: str, **params: Any) -> list[Any]:
        eng = sa.create_engine(self.url.replace("postgresql://", "postgresql+psycopg://"))
        try:
            with eng.connect() as c:
                return list(c.execute(sa.text(sql), params).all())
        finally:
            eng.dispose()

    def groups(self) -> list[dict[str, Any]]:
        """The local provider's server groups, straight from its table (none before its first use)."""
        if not self.query("SELECT 1 FROM information_schema.tables WHERE table_name = 'local_server_groups'"):
            return []
        return [json.loads(r.data) | {"region": r.region} for r in
                self.query("SELECT region, data FROM local_server_groups")]

    def serving(self) -> dict[str, list[str]]:
        """Cluster -> names of its enabled groups whose instances have booted (capacity that serves)."""
        groups = self.groups()
        now = time.time()  # after the read: a group that booted while it ran is not taken for booting
        out: dict[str, list[str]] = {}
        for g in groups:
            cluster = g["tags"].get("cluster") or re.sub(r"-v\d+$", "", g["name"])
            out.setdefault(cluster, [])
            if g["enabled"] and g["ready_at"] <= now and g["capacity"]["desired"] > 0:
                out[cluster].append(g["name"])
        return out

    def executions_by_pid(self, state: str = "succeeded") -> dict[int, int]:
        """Executions in ``state`` per replica process (owners are ``host:pid:nonce``)."""
        counts: dict[int, int] = {}
        for r in self.query("SELECT owner, count(*) AS n FROM executions WHERE state = :s GROUP BY owner", s=state):
            pid = int(r.owner.split(":")[1])
            counts[pid] = counts.get(pid, 0) + int(r.n)
        return counts

    def wait(self, cond: Callable[[], bool], what: str, timeout: float = 60) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            for d in self.replicas:
                if d.proc is not None and d.proc.poll() is not None and d.proc.returncode not in (-9, 0):
                    raise AssertionError(f"replica exited ({d.proc.returncode}) waiting for {what}")
            if cond():
                return time.monotonic() - start
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")


def metric(d: Daemon, name: str, **labels: str) -> float:
    """One sample of the replica's /metrics (0 when absent)."""
    code, text = d.get("/metrics")
    assert code == 200, text
    total = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


@pytest.fixture
def group(tmp_path: Path, postgres_url: str) -> Iterator[Group]:
    g = Group(tmp_path, postgres_url, DesiredRepo(tmp_path / "desired"))
    yield g
    for d in g.replicas:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.send_signal(signal.SIGCONT)
            d.proc.kill()
            d.proc.communicate()

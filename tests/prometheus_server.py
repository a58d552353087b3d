"""A real Prometheus server for the canary tests, on 127.0.0.1.

Two ways to give it data: ``backfilled`` writes per-server-group series as OpenMetrics and turns them into
TSDB blocks with ``promtool`` before the server starts (exact values, queryable at once, timestamps around
now so the analysis' real-time windows see them); ``scraping`` points it at a live exporter the test
controls (``prometheus_client``), with a 1 s scrape interval (the first sample is queryable after ~5 s).
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

Series = Mapping[str, Mapping[str, tuple[float, float]]]
"""metric -> server group -> (mean, spread): samples drawn uniformly in mean ± spread."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binaries() -> tuple[str, str]:
    prom, tool = shutil.which("prometheus"), shutil.which("promtool")
    if prom is None or tool is None:
        pytest.fail("prometheus and promtool are missing: run scripts/system-deps (Debian package prometheus)")
    return prom, tool


def openmetrics(series: Series, start: float, end: float, every: float = 0.1, seed: int = 7) -> str:
    """The series as OpenMetrics text, one sample each ``every`` seconds over [start, end]."""
    rng = random.Random(seed)
    lines: list[str] = []
    steps = int((end - start) / every)
    for metric, groups in series.items():
        lines.append(f"# TYPE {metric} gauge")
        for group, (mean, spread) in groups.items():
            for i in range(steps + 1):
                value = mean + rng.uniform(-spread, spread)
                lines.append(f'{metric}{{server_group="{group}"}} {value:.6f} {start + i * every:.3f}')
    return "\n".join([*lines, "# EOF"]) + "\n"


@contextmanager
def backfilled(tmp: Path, series: Series, *, before: float = 30.0, after: float = 120.0, now: float | None = None,
               every: float = 0.1) -> Iterator[str]:
    """A Prometheus serving ``series`` (a sample each ``every`` seconds) from ``now - before`` to
    ``now + after`` (``now``: the wall clock, unless a fake clock's time is given); yields its URL."""
    _, tool = _binaries()
    data = tmp / "tsdb"
    data.mkdir(parents=True)
    at = time.time() if now is None else now
    om = tmp / "data.om"
    om.write_text(openmetrics(series, at - before, at + after, every), encoding="utf-8")
    subprocess.run([tool, "tsdb", "create-blocks-from", "openmetrics", str(om), str(data)], check=True,
                   capture_output=True)
    with _server(tmp, data, "global: {scrape_interval: 1m}\n") as url:
        yield url


@contextmanager
def scraping(tmp: Path, target: str) -> Iterator[str]:
    """A Prometheus scraping ``target`` (host:port) every second; yields its URL."""
    data = tmp / "tsdb"
    data.mkdir(parents=True)
    cfg = ("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
           f"scrape_configs:\n  - job_name: app\n    static_configs: [{{targets: ['{target}']}}]\n")
    with _server(tmp, data, cfg) as url:
        yield url


@contextmanager
def _server(tmp: Path, data: Path, config: str) -> Iterator[str]:
    prom, _ = _binaries()
    cfg = tmp / "prometheus.yml"
    cfg.write_text(config, encoding="utf-8")
    port = _free_port()
    log = (tmp / "prometheus.log").open("w")
    proc = subprocess.Popen([prom, f"--config.file={cfg}", f"--storage.tsdb.path={data}",
                             f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.close()
                pytest.fail(f"prometheus did not start: {(tmp / 'prometheus.log').read_text()[-2000:]}")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()

"""A real ``reconciler run`` process on a temp repo and the local provider, with its HTTP endpoint."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DesiredRepo, app_spec, reconciler_subprocess, write_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Daemon:
    repo: DesiredRepo
    config: Path
    state: Path
    port: int
    token: str
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[str] | None = None
    log: str = ""

    log_path: Path | None = None

    def start(self, *, log_to: Path | None = None) -> Daemon:
        """Start ``reconciler run``; with ``log_to`` its log goes to that file, readable while it runs."""
        args = ["run", "--config", str(self.config), "--log-format", "json"]
        if log_to is None:
            self.proc = reconciler_subprocess(args, env=self.env)
        else:
            self.log_path = log_to
            with log_to.open("a", encoding="utf-8") as sink:
                self.proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli", *args],
                                             env={**os.environ, **self.env}, stdout=subprocess.DEVNULL,
                                             stderr=sink, text=True)
        self.wait_for(lambda: self.get("/healthz")[0] == 200, "the HTTP endpoint")
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        _out, err = self.proc.communicate(timeout=timeout)
        self.log += err or ""
        if self.log_path is not None:
            self.log = self.log_path.read_text(encoding="utf-8")
        return self.proc.returncode

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (``start(log_to=...)``)."""
        assert self.log_path is not None
        text = self.log_path.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def wait_log(self, needle: str, *, count: int = 1, timeout: float = 20) -> list[dict[str, Any]]:
        """Wait until ``count`` log messages contain ``needle``; returns them."""
        found: list[dict[str, Any]] = []

        def seen() -> bool:
            found[:] = [x for x in self.log_lines() if needle in x.get("message", "")]
            return len(found) >= count

        self.wait_for(seen, f"{count} log line(s) with {needle!r}", timeout=timeout)
        return found

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, *, token: str | None = "") -> tuple[int, str]:
        """GET with the daemon's token (reads need one); ``token=None`` sends none."""
        token = self.token if token == "" else token
        req = urllib.request.Request(self.url(path), headers={"Authorization": f"Bearer {token}"} if token else {})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            with e:
                return e.code, e.read().decode()
        except OSError:
            return 0, ""

    def post(self, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> tuple[int, str]:
        req = urllib.request.Request(self.url(path), data=body, method="POST", headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            with e:
                return e.code, e.read().decode()

    def status(self) -> dict[str, Any]:
        code, text = self.get("/api/v1/status")
        assert code == 200, text
        return dict(json.loads(text))

    def serving(self, region: str = "us-east-1") -> list[str]:
        return sorted(g["server_group"] for g in self.status().get("server_groups", [])
                      if g["region"] == region and g["enabled"])

    def wait_for(self, cond: Callable[[], bool], what: str, timeout: float = 20) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"daemon exited ({self.proc.returncode}) waiting for {what}:\n"
                                     f"{self.proc.stderr.read() if self.proc.stderr else ''}")
            with contextlib.suppress(AssertionError, KeyError, ValueError):  # not there yet: poll again
                if cond():
                    return time.monotonic() - start
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")


DaemonFactory = Callable[..., Daemon]


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[DaemonFactory]:
    made: list[Daemon] = []

    def make(*, interval: str = "1s", boot_seconds: float = 0, apps: dict[str, str] | None = None,
             extra: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> Daemon:
        repo = DesiredRepo(tmp_path / "desired")
        for name, text in (apps or {"checkout": app_spec(regions=("us-east-1",))}).items():
            repo.write(f"apps/{name}.yaml", text)
        repo.commit("initial")
        port = free_port()
        (tmp_path / "token").write_text("t0ken-for-tests\n")
        (tmp_path / "webhook-secret").write_text("hook-secret\n")
        cfg = write_config(
            tmp_path / "config.yaml", repo.path, tmp_path / "state",
            poll={"interval": interval, "jitter": "0s"},
            http={"listen": f"127.0.0.1:{port}", "token_file": "token"},
            webhook={"secret_file": "webhook-secret"},
            providers={"local": {"accounts": {"default": {"boot_seconds": boot_seconds}}}},
            daemon={"shutdown_deadline": "10s"},
            **(extra or {}),
        )
        d = Daemon(repo, cfg, tmp_path / "state", port, "t0ken-for-tests", env=env or {})
        made.append(d)
        return d

    yield make
    for d in made:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.communicate()

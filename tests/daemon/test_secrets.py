"""Planted secrets (a Git password in repo.url, the API token, the webhook secret) are searched for in every
channel the product writes to: logs, status (CLI and HTTP), metrics, history, plans in every format, every
table of the store and every file of the state directory (the mirror's Git config included)."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import app_spec, run_cli
from tests.daemon.conftest import DaemonFactory
from tests.gitservers import GitHttpServer, git_http

__all__ = ["git_http"]
ONE = ("us-east-1",)


def _store_dump(db: Path) -> str:
    """Every row of every table, as SQL text."""
    with sqlite3.connect(db) as conn:
        return "\n".join(conn.iterdump())


def test_a_planted_secret_is_in_no_output_channel(daemon_factory: DaemonFactory, git_http: GitHttpServer,
                                                  tmp_path: Path) -> None:
    password = git_http.password
    d = daemon_factory(interval="1s", extra={"repo": {"url": git_http.url("desired", password=password)}})
    secrets = {"git password": password, "API token": d.token, "webhook secret": "hook-secret"}
    d.start(log_to=tmp_path / "daemon.log")
    d.wait_for(lambda: d.serving() == ["checkout-main-v000"], "the first deploy over authenticated HTTP")
    body = json.dumps({"ref": "refs/heads/main"}).encode()
    sig = hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
    assert d.post("/webhook", body, {"X-Hub-Signature-256": f"sha256={sig}"})[0] == 202
    assert d.post("/api/v1/reconcile", b"", {"Authorization": f"Bearer {d.token}"})[0] == 202
    assert d.post("/api/v1/reconcile", b"", {"Authorization": f"Bearer {d.token}x"})[0] == 401
    git_http.password = "changed-on-the-server"  # every fetch now fails: errors are written everywhere
    d.wait_for(lambda: "refused the credentials" in (d.status().get("source_error") or ""), "the fetch error")
    outputs: dict[str, str] = {
        "HTTP status": d.get("/api/v1/status")[1], "metrics": d.get("/metrics")[1], "readyz": d.get("/readyz")[1],
    }
    git_http.password = password
    d.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=ONE)).commit("v2")
    d.wait_for(lambda: d.serving() == ["checkout-main-v001"], "the deploy after the server accepts again")
    assert d.proc is not None
    d.proc.send_signal(signal.SIGHUP)
    d.wait_log("config reloaded")
    assert d.stop() == 0
    outputs["daemon log"] = d.log
    assert "move it to repo.token_file" in d.log, "the daemon warns about a password in the URL"

    d.repo.write("apps/checkout.yaml", app_spec(image="checkout-3.0", regions=ONE)).commit("v3")
    cfg = str(d.config)
    for name, args in {
        "status": ["status"], "status json": ["status", "--format", "json"],
        "history": ["history"], "history json": ["history", "--format", "json"],
        "plan": ["plan"], "plan markdown": ["plan", "--format", "markdown"], "plan json": ["plan", "--format", "json"],
        "saved plan": ["plan", "--format", "json", "--out", str(tmp_path / "saved.json")],
        "markdown file": ["plan", "--format", "markdown", "--out", str(tmp_path / "plan.md")],
        "pause typo": ["pause", "chekout"],
    }.items():
        res = run_cli(args[0], "--config", cfg, *args[1:], config_first=True)
        outputs[name] = res.out + res.err
    outputs["saved plan file"] = (tmp_path / "saved.json").read_text()
    outputs["markdown plan file"] = (tmp_path / "plan.md").read_text()
    outputs["store"] = _store_dump(d.state / "state.db")
    for f in sorted(p for p in d.state.rglob("*") if p.is_file()):
        try:
            outputs[f"state file {f.relative_to(d.state)}"] = f.read_bytes().decode("latin-1")
        except FileNotFoundError:  # SQLite's -shm/-wal come and go as connections close: gone is not a leak
            continue

    assert "checkout-3.0" in outputs["plan"] and "refused the credentials" in outputs["HTTP status"]
    assert any(name.endswith("/config") for name in outputs), "the mirror's Git config was searched"
    leaks = [f"{what} in {channel}" for channel, text in outputs.items() for what, value in secrets.items()
             if value in text]
    assert not leaks, leaks
    mirror_config = next(text for name, text in outputs.items() if name.endswith("/config"))
    assert f"url = {git_http.url('desired')}\n" in mirror_config


@pytest.mark.parametrize("where", ["log", "status"])
def test_an_unreachable_url_with_a_password_is_reported_without_it(daemon_factory: DaemonFactory,
                                                                   tmp_path: Path, where: str) -> None:
    d = daemon_factory(interval="1h", extra={"repo": {"url": "http://deploy:pl4nted-pw@127.0.0.1:9/desired.git"}})
    res = run_cli("plan", "--config", str(d.config), config_first=True)
    assert res.code == 1 and "cannot fetch http://deploy@127.0.0.1:9/desired.git" in res.err
    text = res.err if where == "log" else run_cli("status", "--config", str(d.config), config_first=True).out
    assert "pl4nted-pw" not in text and "pl4nted-pw" not in _store_dump(d.state / "state.db")

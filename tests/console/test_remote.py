"""``reconciler ... --server URL``: the CLI through a daemon's HTTP API (waitress on 127.0.0.1, a real engine
behind it), with the token from a file or the environment, and every refusal said plainly."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import http as http_api
from tests.conftest import CliResult, app_spec, run_cli
from tests.console.conftest import TOKENS, Site, make_site


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Site, str]]:
    site = make_site(tmp_path)
    site.reconcile()
    server = http_api.Server(site.api, "127.0.0.1", 0)
    server.start()
    try:
        yield site, f"http://127.0.0.1:{server.port}"
    finally:
        server.close()
        site.engine.close()


def _cli(url: str, who: str | None, *args: str, monkeypatch: pytest.MonkeyPatch) -> CliResult:
    if who is None:
        monkeypatch.delenv("RECONCILER_TOKEN", raising=False)
    else:
        monkeypatch.setenv("RECONCILER_TOKEN", TOKENS[who][0])
    return run_cli(args[0], "--server", url, *args[1:], config_first=True)


def test_status_history_and_plan_through_the_server(served: tuple[Site, str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    site, url = served
    res = _cli(url, "viewer", "status", monkeypatch=monkeypatch)
    assert res.code == 0 and "checkout: Ready" in res.out and "checkout-main-v000" in res.out
    res = _cli(url, "approver", "status", "--format", "json", monkeypatch=monkeypatch)
    assert set(json.loads(res.out)["applications"]) == {"payments"}, "the token's read scope applies"
    res = _cli(url, "viewer", "history", "--format", "json", "--limit", "3", monkeypatch=monkeypatch)
    assert res.code == 0 and len(json.loads(res.out)["events"]) == 3
    res = _cli(url, "viewer", "plan", monkeypatch=monkeypatch)
    assert res.code == 2 and "payments-main" in res.out and "held: payments-main" in res.out
    res = _cli(url, "viewer", "plan", "--format", "json", monkeypatch=monkeypatch)
    assert res.code == 2 and json.loads(res.out)["changes"][0]["application"] == "payments"
    res = _cli(url, "viewer", "plan", "--format", "markdown", "--out", str(site.config_path.parent / "p.md"),
               monkeypatch=monkeypatch)
    assert res.code == 2 and "payments-main" in (site.config_path.parent / "p.md").read_text()
    for args in (["plan", "--ref", "HEAD"], ["plan", "--format", "json", "--out", "x.json"]):
        res = _cli(url, "viewer", *args, monkeypatch=monkeypatch)
        assert res.code == 1 and "--server" in res.err, args


def test_changes_through_the_server_are_recorded_under_the_tokens_name(served: tuple[Site, str],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    site, url = served
    res = _cli(url, "viewer", "pause", "checkout", monkeypatch=monkeypatch)
    assert res.code == 1 and "403: token 'viewer' has no operate scope for application 'checkout'" in res.err
    assert _cli(url, "operator", "pause", "checkout", "--reason", "incident", monkeypatch=monkeypatch).code == 0
    assert _cli(url, "operator", "resume", "checkout", monkeypatch=monkeypatch).out.strip() == "checkout resumed"
    (pending,) = site.get("/api/v1/approvals", "admin").json["approvals"]
    res = _cli(url, "approver", "approve", pending["change_id"], "--by", "mallory", monkeypatch=monkeypatch)
    assert res.code == 1 and "--by cannot be used with --server" in res.err
    res = _cli(url, "approver", "approve", pending["change_id"], "--comment", "ok", monkeypatch=monkeypatch)
    assert res.code == 0 and f"{pending['change_id']} approved by approver" in res.out
    assert _cli(url, "admin", "freeze", "--reason", "release", monkeypatch=monkeypatch).code == 0
    assert _cli(url, "admin", "unfreeze", monkeypatch=monkeypatch).out.strip() == "freeze lifted"
    messages = [e["message"] for e in site.get("/api/v1/history?limit=50", "admin").json["events"]]
    assert "checkout paused by operator: incident" in messages and "checkout resumed by operator" in messages
    assert "changes frozen by admin: release" in messages


def test_rollback_through_the_server(served: tuple[Site, str], monkeypatch: pytest.MonkeyPatch) -> None:
    site, url = served
    site.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=("us-east-1",))).commit("v2")
    site.reconcile()
    res = _cli(url, "operator", "rollback", "checkout-main", "--region", "us-east-1", monkeypatch=monkeypatch)
    assert res.code == 0 and "rollback of checkout-main started in us-east-1 by operator" in res.out
    def finished() -> bool:
        rows = site.get("/api/v1/executions", "viewer").json["executions"]
        return any(r["plan_id"] == "manual-rollback" and r["state"] == "succeeded" for r in rows)

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not finished():
        time.sleep(0.05)
    assert finished(), "the rollback ran in the background to its end"


def test_a_missing_token_a_bad_url_and_an_unreachable_daemon_are_clear(served: tuple[Site, str], tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _site, url = served
    res = _cli(url, None, "status", monkeypatch=monkeypatch)
    assert res.code == 1 and "401: sign in with a token" in res.err
    (tmp_path / "tok").write_text(TOKENS["viewer"][0] + "\n")
    res = _cli(url, None, "status", "--token-file", str(tmp_path / "tok"), monkeypatch=monkeypatch)
    assert res.code == 0 and "checkout" in res.out
    res = _cli(url, None, "status", "--token-file", str(tmp_path / "missing"), monkeypatch=monkeypatch)
    assert res.code == 1 and "--token-file" in res.err and "cannot read it" in res.err
    res = _cli("ftp://127.0.0.1", "viewer", "status", monkeypatch=monkeypatch)
    assert res.code == 1 and "expected http://HOST:PORT" in res.err
    res = _cli("http://127.0.0.1:1", "viewer", "status", monkeypatch=monkeypatch)
    assert res.code == 1 and "cannot reach the daemon at http://127.0.0.1:1" in res.err
    assert TOKENS["viewer"][0] not in res.err


def test_help_names_the_server_flag(capsys: pytest.CaptureFixture[str]) -> None:
    from reconciler import cli

    for command in ("status", "plan", "approve", "rollback", "pause", "freeze"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        out = " ".join(capsys.readouterr().out.split())
        assert "--server URL" in out and "$RECONCILER_SERVER" in out and "--token-file" in out, command

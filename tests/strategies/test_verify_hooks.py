"""Verification hooks end to end: named endpoints in the config, a real HTTP server on 127.0.0.1 answering
2xx, 4xx, 5xx or nothing; the deployment goes on, or fails and rolls back with the endpoint's answer."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DesiredRepo, Env, app_spec, run_cli, write_config
from tests.strategies import test_docs

REGION = ("us-east-1",)


class Hooks:
    """Answers POST /pass (200), /reject (422), /broken (503) and /slow (after 3s); records every request."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any], str]] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hooks.seen.append((self.path, body, self.headers.get("Authorization", "")))
                if self.path == "/slow":
                    time.sleep(3)
                code, text = {"/pass": (200, "ok"), "/reject": (422, "error rate 4.2% > 1%"),
                              "/broken": (503, "down")}.get(self.path, (200, "late"))
                self.send_response(code)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text.encode())

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    h = Hooks()
    yield h
    h.close()


@pytest.fixture
def henv(tmp_path: Path, hooks: Hooks) -> Env:
    repo = DesiredRepo(tmp_path / "desired")
    token = tmp_path / "hook-token"
    token.write_text("s3cret\n", encoding="utf-8")
    cfg = write_config(tmp_path / "config.yaml", repo.path, tmp_path / "state", verify={"endpoints": {
        "smoke": {"url": hooks.url("/pass"), "timeout": "2s", "token_file": str(token)},
        "strict": {"url": hooks.url("/reject"), "timeout": "2s"},
        "broken": {"url": hooks.url("/broken")},
        "slow": {"url": hooks.url("/slow"), "timeout": "500ms"},
    }})
    env = Env(repo, cfg, tmp_path / "state")
    repo.write("apps/checkout.yaml", app_spec(regions=REGION)).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    return env


def _v2(env: Env, strategy: str) -> str:
    return str(env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=REGION, extra=strategy)
                              ).commit("v2"))


def _groups(env: Env) -> dict[str, dict[str, Any]]:
    return {g["server_group"]: g for g in env.groups("us-east-1") if g["cluster"] == "checkout-main"}


def test_a_passing_hook_is_asked_after_the_new_group_serves_and_before_the_old_one_leaves(
        henv: Env, hooks: Hooks) -> None:
    commit = _v2(henv, "strategy: {verify: [smoke]}\n")
    (change,) = json.loads(henv.cli("plan", "--format", "json").out)["changes"]
    assert [s["kind"] for s in change["steps"]] == ["create", "wait_healthy", "enable", "verify", "disable", "resize"]
    assert change["strategy"]["verify"] == ["smoke"]
    assert "verify checkout-main-v001 with smoke (POST; 2xx passes, 4xx, 5xx or no answer fails)" in henv.cli(
        "plan").out

    res = henv.cli("apply", "--yes")
    assert res.code == 0, res.out + res.err
    ((path, body, auth),) = hooks.seen
    assert path == "/pass" and auth == "Bearer s3cret"
    assert body == {"endpoint": "smoke", "application": "checkout", "cluster": "checkout-main", "provider": "local",
                    "account": "default", "region": "us-east-1", "server_group": "checkout-main-v001",
                    "previous_server_group": "checkout-main-v000", "commit": commit,
                    "spec_hash": body["spec_hash"], "image": "checkout-2.0", "strategy": "red_black", "percent": 100}
    assert len(body["spec_hash"]) == 16
    assert _groups(henv)["checkout-main-v001"]["enabled"]


@pytest.mark.parametrize(("hook", "answer"), [
    ("strict", "rejected the deployment: HTTP 422: error rate 4.2% > 1%"),
    ("broken", "failed: HTTP 503: down"),
    ("slow", "no answer within 500ms"),
])
def test_a_hook_that_says_no_or_does_not_answer_fails_the_deployment_and_the_old_group_keeps_serving(
        henv: Env, hooks: Hooks, hook: str, answer: str) -> None:
    _v2(henv, f"strategy: {{verify: [{hook}]}}\n")
    res = henv.cli("apply", "--yes")
    assert res.code == 1, res.out + res.err
    url = hooks.url({"strict": "/reject", "broken": "/broken", "slow": "/slow"}[hook])
    assert f"verify {hook} ({url}): {answer}" in res.err or f"verify {hook} ({url}) {answer}" in res.err, res.err
    assert "rolled back" in res.err and "checkout-main-v000 keeps serving" in res.err
    if hook == "strict":  # the line docs/strategies.md shows
        shown = test_docs.DOC.split("The failure names the endpoint", 1)[1].split("```text\n", 1)[1].split("\n")[0]
        assert shown.replace("https://checks.example.com/strict", url) in res.err.splitlines(), res.err
    groups = _groups(henv)
    assert set(groups) == {"checkout-main-v000"}, "the unverified group is removed"
    assert groups["checkout-main-v000"]["enabled"] and groups["checkout-main-v000"]["capacity"]["desired"] == 2


def test_a_rolling_deployment_asks_its_hooks_after_every_step(henv: Env, hooks: Hooks) -> None:
    _v2(henv, "strategy: {type: rolling_red_black, steps: [50, 100], verify: [smoke]}\n")
    assert "verified by smoke before the old groups leave traffic (and after every step)" in henv.cli("plan").out
    res = henv.cli("apply", "--yes")
    assert res.code == 0, res.out + res.err
    assert [(b["percent"], b["strategy"]) for _, b, _ in hooks.seen] == [(50, "rolling_red_black"),
                                                                      (100, "rolling_red_black")]


def test_a_spec_naming_an_endpoint_the_config_lacks_is_a_spec_problem(henv: Env) -> None:
    _v2(henv, "strategy: {verify: [smoke, smok]}\n")
    res = henv.cli("plan")
    assert res.code == 1
    assert ("apps/checkout.yaml:13: clusters[0].strategy.verify[1]: verification endpoint 'smok' is not configured "
            "(configured: broken, slow, smoke, strict; verify.endpoints in ") in res.out + res.err


def test_a_bad_endpoint_in_the_config_names_file_line_and_field(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.yaml", tmp_path, tmp_path / "state",
                       verify={"endpoints": {"smoke": {"url": "ftp://example.invalid/x"}, "Bad Name": {"url": "x"}}})
    res = run_cli("validate", "--config", str(cfg), str(tmp_path), config_first=False)
    assert res.code == 1
    text = res.out + res.err
    assert "verify.endpoints.smoke.url: required: an http:// or https:// URL, got 'ftp://example.invalid/x'" in text
    assert "verify.endpoints.Bad Name: endpoint names are lowercase letters" in text

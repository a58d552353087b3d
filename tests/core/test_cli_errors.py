"""Errors an operator meets at the command line: each one exits 1 with a sentence, never a traceback or a
false "live state matches"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Env, app_spec, write_config

ONE = ("us-east-1",)


def test_a_broken_account_is_an_error_that_plan_exits_1_on_and_status_shows(env: Env, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "aws-config").write_text("[profile real]\nregion = us-east-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    write_config(env.config, env.repo.path, env.state_dir,
                 providers={"aws": {"accounts": {"prod": {"profile": "missing", "regions": ["us-east-1"]}}}})
    env.repo.write("apps/cart.yaml", app_spec("cart", regions=ONE, provider="aws", account="prod")).commit("aws")
    for fmt in ("text", "markdown"):
        res = env.cli("plan", "--format", fmt)
        assert res.code == 1, res.err
        assert "live state of aws/prod/us-east-1 could not be read" in res.err and "'missing' not found" in res.err
        assert "live state matches" not in res.out and "live state already matches" not in res.out
        assert "some live state could not be read" in res.out
    res = env.cli("apply", "--yes")
    assert res.code == 1 and "live state of aws/prod/us-east-1 could not be read" in res.err
    assert "live state matches" not in res.out
    status = env.status()
    assert "not found" in status["unreadable"]["aws/prod/us-east-1"]
    assert [c["type"] for c in status["applications"]["cart"]["conditions"]] == ["Stalled"]


def test_a_spec_path_missing_at_the_commit_is_an_error(env: Env) -> None:
    write_config(env.config, env.repo.path, env.state_dir, repo={"path": "deploy/apps"})
    env.repo.write("apps/checkout.yaml", app_spec(regions=ONE)).commit("v1")
    res = env.cli("plan")
    assert res.code == 1 and "deploy/apps:1: (file): the spec path does not exist at commit" in res.out
    assert "repo.path in the config" in res.out
    assert "SpecInvalid" in env.cli("status").out


def test_pause_resume_and_rollback_of_an_unknown_name_suggest_the_closest(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec(regions=ONE))
    env.repo.write("apps/cart.yaml", app_spec("cart", regions=ONE)).commit("two apps")
    assert env.cli("apply", "--yes").code == 0
    res = env.cli("pause", "chekout")
    assert res.code == 1 and "no application or cluster named 'chekout'; did you mean checkout" in res.err
    assert "(pause --force pauses a name that is not in Git yet)" in res.err
    assert env.cli("status", "--format", "json").out.count('"paused": {}') == 1
    assert env.cli("pause", "checkout-main").code == 0
    res = env.cli("resume", "checkout-mian")
    assert res.code == 1 and "no paused application or cluster named 'checkout-mian'; did you mean checkout-main?" \
        in res.err
    res = env.cli("rollback", "chekout-main")
    assert res.code == 1 and "no cluster named 'chekout-main' in the desired state; did you mean checkout-main" \
        in res.err
    res = env.cli("pause", "payments", "--force")
    assert res.code == 0 and "payments" in env.status()["paused"]


def test_a_saved_plan_that_is_not_utf8_is_a_clear_error(env: Env, tmp_path: Path) -> None:
    env.repo.write("apps/checkout.yaml", app_spec(regions=ONE)).commit("v1")
    bad = tmp_path / "plan.json"
    bad.write_bytes(b'{"plan_id": "\xff\xfe"}')
    res = env.cli("apply", "--plan", str(bad), "--yes")
    assert res.code == 1 and f"{bad}: not a saved plan (not UTF-8 text at byte 13)" in res.err


def test_status_into_a_closed_pipe_ends_quietly(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec()).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "status", "--config", str(env.config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # like `| head` that has already exited
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 141
    assert err == "", err

"""Plans through the real CLI on a real Git repo: offline PR previews, saved plans, stale-plan refusal, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler import render
from reconciler.core import model
from tests.conftest import Env, app_spec


def test_a_pull_request_preview_compares_two_commits_offline(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec()).commit("v1")
    base = env.repo.head()
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", desired=3)).commit("v2")
    head = env.repo.head()
    res = env.cli("plan", "--base", base, "--ref", head, "--format", "markdown")
    assert res.code == 2, res.err
    assert res.out.startswith(render.MARKER)
    assert f"`{base[:8]}` → `{head[:8]}`" in res.out and "- image: checkout-1.0\n+ image: checkout-2.0" in res.out
    doc = json.loads(env.cli("plan", "--base", base, "--ref", head, "--format", "json").out)
    assert doc["base_commit"] == base and doc["commit"] == head
    assert {c["action"] for c in doc["changes"]} == {"replace"}
    assert doc["changes"][0]["current"]["image"] == "checkout-1.0"
    assert env.cli("plan", "--base", head, "--ref", head).code == 0


def test_a_long_comment_is_split_into_parts_through_the_cli(env: Env) -> None:
    for i in range(20):
        env.repo.write(f"apps/app{i}.yaml", app_spec(f"app{i}"))
    env.repo.commit("twenty apps")
    out = env.cli("plan", "--format", "markdown", "--max-comment-chars", "8000").out
    parts = [render.MARKER + rest for rest in out.split(render.MARKER)[1:]]
    assert len(parts) > 1
    for i, part in enumerate(parts, 1):
        assert len(part.rstrip("\n")) <= 8000 and f"Part {i} of {len(parts)}" in part
        assert "**Plan: 40 to create" in part


def test_text_is_plain_when_not_a_terminal_and_secrets_stay_hidden(env: Env) -> None:
    extra = 'user_data: "password=hunter2"\ntags: {db_password: hunter3}\n'
    env.repo.write("apps/checkout.yaml", app_spec(extra=extra)).commit("v1")
    for fmt in ("text", "markdown"):
        out = env.cli("plan", "--format", fmt).out
        assert "create checkout-main" in out or "**create**" in out
        assert "\033[" not in out and "hunter2" not in out and "hunter3" not in out, fmt


def test_a_saved_plan_applies_and_is_refused_when_stale(env: Env, tmp_path: Path) -> None:
    env.repo.write("apps/checkout.yaml", app_spec()).commit("v1")
    saved = tmp_path / "plan.json"
    assert env.cli("plan", "--format", "json", "--out", str(saved)).code == 2
    assert env.cli("apply", "--plan", str(saved), "--yes").code == 0

    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0")).commit("v2")
    assert env.cli("plan", "--format", "json", "--out", str(saved)).code == 2
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-3.0")).commit("v3")
    res = env.cli("apply", "--plan", str(saved), "--yes")
    assert res.code == 1 and "is now at" in res.err

    assert env.cli("plan", "--format", "json", "--out", str(saved)).code == 2
    from providers.local import LocalProvider
    from reconciler.config import settings as config_mod
    from tests.conftest import provider_context

    cfg = config_mod.load_config(env.config)
    LocalProvider("default", provider_context(cfg.state_url, cfg.state_dir)).tamper(
        "us-east-1", "checkout-main-v000", capacity=model.Capacity(1, 5, 6))
    res = env.cli("apply", "--plan", str(saved), "--yes")
    assert res.code == 1 and "live state changed" in res.err

    doc = json.loads(saved.read_text())
    doc["plan"]["changes"][0]["steps"][0]["server_group"] = "checkout-main-v999"
    saved.write_text(json.dumps(doc))
    res = env.cli("apply", "--plan", str(saved), "--yes")
    assert res.code == 1 and "edited or damaged" in res.err

    saved.write_text("{not json")
    res = env.cli("apply", "--plan", str(saved), "--yes")
    assert res.code == 1 and "not a saved plan" in res.err


@pytest.mark.parametrize("flag", [[], ["--detailed-exitcode"]])
def test_exit_codes_are_0_none_2_changes_1_error(env: Env, flag: list[str]) -> None:
    env.repo.write("apps/checkout.yaml", app_spec()).commit("v1")
    assert env.cli("plan", *flag).code == 2
    assert env.cli("apply", "--yes").code == 0
    assert env.cli("plan", *flag).code == 0
    env.repo.write("apps/checkout.yaml", "application: [\n").commit("broken")
    assert env.cli("plan", *flag).code == 1


def test_plan_json_on_stdout_never_shows_user_data(env) -> None:
    from tests.conftest import app_spec

    env.repo.write("apps/checkout.yaml", app_spec(extra='user_data: "export DB_PASSWORD=hunter2"\n')).commit("x")
    out = env.cli("plan", "--format", "json").out
    assert "hunter2" not in out and '"user_data_sha256"' in out

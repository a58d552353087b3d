"""What reviewers see: Markdown golden files, the JSON contract, text, saved plans and stale-plan refusal."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reconciler import model, render
from tests.conftest import Env, app_spec, write_config

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.md"
    if UPDATE or not path.exists():
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{path} differs; UPDATE_GOLDEN=1 to accept"


def markdown(env: Env, *args: str) -> str:
    res = env.cli("plan", "--format", "markdown", *args)
    assert res.code in (0, 1, 2), res.err
    return res.out


def test_golden_first_deploy(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec()).commit("add checkout")
    golden("first_deploy", markdown(env))


def test_golden_image_change_in_two_regions(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec()).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0")).commit("v2")
    golden("image_change", markdown(env))


def test_golden_capacity_only(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec()).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    env.repo.write("apps/checkout.yaml", app_spec(desired=4)).commit("more")
    golden("capacity_only", markdown(env))


def test_golden_deny_under_prune_of_an_empty_tree(env: Env) -> None:
    write_config(env.config, env.repo.path, env.state_dir, prune=True)
    env.repo.write("apps/checkout.yaml", app_spec()).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    env.repo.remove("apps/checkout.yaml").write("apps/README.md", "nothing here\n").commit("empty")
    text = markdown(env)
    assert "⛔" in text and "mass-deletion" in text and "**denied**" in text
    golden("deny_mass_deletion", text)


def test_golden_destroy_under_prune(env: Env) -> None:
    write_config(env.config, env.repo.path, env.state_dir, prune=True)
    for name in ("checkout", "cart", "search"):
        env.repo.write(f"apps/{name}.yaml", app_spec(name, regions=("us-east-1",)))
    env.repo.commit("three")
    assert env.cli("apply", "--yes").code == 0
    env.repo.remove("apps/search.yaml").commit("retire search")
    text = markdown(env)
    assert "**destroy**" in text and "⚠️" in text
    golden("destroy", text)


def test_golden_revert_is_a_rollback(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec()).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0")).commit("v2")
    assert env.cli("apply", "--yes").code == 0
    env.repo.write("apps/checkout.yaml", app_spec()).commit("Revert v2")
    text = markdown(env)
    assert "**rollback**" in text and "checkout-main-v001 → checkout-main-v000" in text
    golden("rollback", text)


def test_golden_broken_spec_shows_the_errors(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec())
    env.repo.write("apps/cart.yaml", app_spec("cart").replace("capacity: {min: 1", "capacity: {min: 9")).commit("x")
    text = markdown(env)
    assert "apps/cart.yaml:" in text and "spec problem" in text
    golden("broken_spec", text)


def test_golden_approve_verdict_is_marked(env: Env) -> None:
    """A plan whose change needs approval shows the ✋ marker and 'needs approval' (policy from issue 6)."""
    env.repo.write("apps/checkout.yaml", app_spec()).commit("v1")
    doc = json.loads(env.cli("plan", "--format", "json").out)
    plan = _plan_with_verdict(doc, model.Verdict.APPROVE)
    text = render.render_markdown(plan)[0]
    assert "✋" in text and "**needs approval**" in text and "1 need approval" in text


def _plan_with_verdict(doc: dict, verdict: model.Verdict) -> model.Plan:
    spec = model.ClusterSpec(application="checkout", provider="local", account="default", regions=("r1",),
                             launch=model.LaunchSpec("img", "m5"), capacity=model.Capacity(1, 1, 1), stack="main")
    change = model.Change(
        application="checkout", cluster="checkout-main", provider="local", account="prod", region="r1",
        action=model.Action.CREATE, steps=(model.Step(model.StepKind.CREATE, "checkout-main-v000"),),
        desired_server_group="checkout-main-v000", desired=spec, spec_hash="h", reason="first deploy",
        verdicts=(model.PolicyVerdict("protected-account", verdict, "account prod needs an approval"),),
        commit=doc["commit"])
    return model.Plan(commit=doc["commit"], changes=(change,))


def test_a_large_plan_is_split_into_parts_that_stand_alone(env: Env) -> None:
    for i in range(40):
        env.repo.write(f"apps/app{i}.yaml", app_spec(f"app{i}"))
    env.repo.commit("forty apps")
    out = env.cli("plan", "--format", "markdown", "--max-comment-chars", "6000").out
    parts = out.split(render.MARKER)[1:]
    assert len(parts) > 3
    for i, rest in enumerate(parts, 1):
        part = render.MARKER + rest
        assert len(part.rstrip("\n")) <= 6000
        assert f"Part {i} of {len(parts)}" in part
        assert "| application |" in part and "**Plan: 80 to create" in part
        assert part.count("<details>") == part.count("</details>")
    names = {f"app{i}-main" for i in range(40)}
    assert all(any(f"<b>{n}</b>" in p for p in parts) for n in names), "every cluster appears in one part"


def test_json_keeps_the_contract_keys(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec()).commit("v1")
    doc = json.loads(env.cli("plan", "--format", "json").out)
    assert {"plan_id", "commit", "changes", "verdict"} <= set(doc)
    c = doc["changes"][0]
    assert {"application", "cluster", "provider", "account", "region", "action", "current", "desired", "steps",
            "verdicts"} <= set(c)
    assert c["desired"]["server_group"] == "checkout-main-v000" and c["current"] is None
    assert {"policy", "verdict", "message"} <= set(c["verdicts"][0])
    assert doc["verdict"] in ("allow", "warn", "approve", "deny")


def test_text_is_coloured_only_for_terminals(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec()).commit("v1")
    plain = env.cli("plan").out
    assert "\033[" not in plain and "create" in plain
    doc = json.loads(env.cli("plan", "--format", "json").out)
    plan = _plan_with_verdict(doc, model.Verdict.DENY)
    assert "\033[31m" in render.render_text(plan, color=True)


def test_secrets_are_never_shown(env: Env) -> None:
    extra = 'user_data: "password=hunter2"\ntags: {db_password: hunter3}\n'
    env.repo.write("apps/checkout.yaml", app_spec(extra=extra)).commit("v1")
    for fmt in ("text", "markdown", "json"):
        out = env.cli("plan", "--format", fmt).out
        assert "hunter2" not in out and "hunter3" not in out, fmt


def test_base_and_ref_compare_two_commits_offline(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec()).commit("v1")
    base = env.repo.head()
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", desired=3)).commit("v2")
    head = env.repo.head()
    doc = json.loads(env.cli("plan", "--base", base, "--ref", head, "--format", "json").out)
    assert doc["base_commit"] == base and doc["commit"] == head
    assert {c["action"] for c in doc["changes"]} == {"replace"}
    assert doc["changes"][0]["current"]["image"] == "checkout-1.0"
    assert env.cli("plan", "--base", head, "--ref", head).code == 0


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
    from providers.base import ProviderContext
    from providers.local import LocalProvider
    from reconciler import config as config_mod

    cfg = config_mod.load_config(env.config)
    LocalProvider("default", ProviderContext(cfg.state_url, cfg.state_dir)).tamper(
        "us-east-1", "checkout-main-v000", capacity=model.Capacity(1, 5, 6))
    res = env.cli("apply", "--plan", str(saved), "--yes")
    assert res.code == 1 and "live state changed" in res.err

    saved.write_text("{not json")
    res = env.cli("apply", "--plan", str(saved), "--yes")
    assert res.code == 1 and "not a saved plan" in res.err


@pytest.mark.parametrize("flag", ["--detailed-exitcode"])
def test_exit_codes_are_0_none_2_changes_1_error(env: Env, flag: str) -> None:
    env.repo.write("apps/checkout.yaml", app_spec()).commit("v1")
    assert env.cli("plan", flag).code == 2
    assert env.cli("apply", "--yes").code == 0
    assert env.cli("plan", flag).code == 0
    env.repo.write("apps/checkout.yaml", "application: [\n").commit("broken")
    assert env.cli("plan", flag).code == 1

"""Guardrails end to end on the local provider: approvals, stale approvals, freezes, waves."""

from __future__ import annotations

import json

from tests.conftest import Env, app_spec, write_config


def _prod(env: Env) -> None:
    write_config(env.config, env.repo.path, env.state_dir, providers={"local": {"accounts": {
        "default": {}, "prod": {"boot_seconds": 0}}}})


def _serving(env: Env, region: str = "us-east-1") -> list[str]:
    return sorted(g["server_group"] for g in env.groups(region) if g["enabled"])


def test_a_critical_application_waits_for_approval_and_a_stale_approval_does_not_count(env: Env) -> None:
    _prod(env)
    regions = ("us-east-1",)
    env.repo.write("apps/checkout.yaml", app_spec(account="prod", criticality="critical", regions=regions)).commit("v1")
    res = env.cli("apply", "--yes")
    assert res.code == 1 and "waiting for approval" in res.out
    assert _serving(env) == []
    change_id = json.loads(env.cli("plan", "--format", "json").out)["changes"][0]["change_id"]
    assert env.cli("approve", change_id, "--comment", "go", "--by", "ann").code == 0
    assert env.cli("apply", "--yes").code == 0
    assert _serving(env) == ["checkout-main-v000"]
    history = json.loads(env.cli("history", "--format", "json").out)["events"]
    assert any(e["kind"] == "approved" and "ann" in e["message"] for e in history)

    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", account="prod", criticality="critical",
                                                  regions=regions)).commit("v2")
    plan = json.loads(env.cli("plan", "--format", "json").out)
    assert env.cli("approve", plan["plan_id"], "--by", "ann").code == 0
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-3.0", account="prod", criticality="critical",
                                                  regions=regions)).commit("v3")
    res = env.cli("apply", "--yes")
    assert res.code == 1 and "waiting for approval" in res.out, "an approval is bound to the plan it approved"
    assert _serving(env) == ["checkout-main-v000"]
    assert env.cli("approve", "0123456789ab").code == 1


def test_a_rejection_keeps_the_change_held(env: Env) -> None:
    _prod(env)
    env.repo.write("apps/checkout.yaml", app_spec(account="prod", criticality="critical", regions=("r1",))).commit("v1")
    change_id = json.loads(env.cli("plan", "--format", "json").out)["changes"][0]["change_id"]
    assert env.cli("reject", change_id, "--comment", "not today").code == 0
    assert env.cli("apply", "--yes").code == 1
    assert _serving(env, "r1") == []


def test_a_freeze_blocks_a_deploy_but_not_a_rollback(env: Env) -> None:
    one = ("us-east-1",)
    env.repo.write("apps/checkout.yaml", app_spec(regions=one)).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=one)).commit("v2")
    assert env.cli("apply", "--yes").code == 0
    assert env.cli("freeze", "--reason", "incident 42").code == 0
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-3.0", regions=one)).commit("v3")
    res = env.cli("apply", "--yes")
    assert res.code == 1 and "frozen" in res.out and "incident 42" in res.out
    assert _serving(env) == ["checkout-main-v001"]
    env.repo.write("apps/checkout.yaml", app_spec(regions=one)).commit("revert to v1")
    res = env.cli("apply", "--yes")
    assert res.code == 0, res.out + res.err
    assert _serving(env) == ["checkout-main-v000"], "a rollback runs during a freeze"
    assert env.cli("unfreeze").code == 0


def test_a_bad_image_stops_after_the_first_wave(env: Env) -> None:
    regions = ("us-east-1", "eu-west-1", "ap-south-1")
    env.repo.write("apps/checkout.yaml", app_spec(regions=regions)).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2-bad", regions=regions, timeout="1s")).commit("bad")
    res = env.cli("apply", "--yes")
    assert res.code == 1
    assert "not started: wave 1 did not succeed in us-east-1" in res.err
    for region in regions:
        assert _serving(env, region) == ["checkout-main-v000"]
        assert [g["server_group"] for g in env.groups(region)] == ["checkout-main-v000"]


def test_a_repo_policy_file_is_validated_and_reported_with_lines(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec())
    env.repo.write("apps/policies.yaml", "defaults:\n  blast_radius: {max_clusters: zero}\n").commit("bad policy")
    res = env.cli("plan")
    assert res.code == 1 and "apps/policies.yaml:2: defaults.blast_radius.max_clusters" in res.out


def test_every_verdict_is_in_text_markdown_and_json(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec())
    env.repo.write("apps/policies.yaml", "defaults: {allowed_images: {default: ['approved-*']}}\n").commit("x")
    text = env.cli("plan").out
    md = env.cli("plan", "--format", "markdown").out
    doc = json.loads(env.cli("plan", "--format", "json").out)
    message = "image 'checkout-1.0' is not allowed in account default"
    assert any("allow-list" in line and "deny" in line.lower() and message in line for line in text.splitlines()), \
        text
    assert "`allow-list` **denied**" in md
    assert any(v["policy"] == "allow-list" and v["verdict"] == "deny" for v in doc["changes"][0]["verdicts"])
    assert doc["verdict"] == "deny"


def test_a_change_that_keeps_failing_is_stalled_until_git_changes(env: Env) -> None:
    write_config(env.config, env.repo.path, env.state_dir,
                 execution={"max_attempts": 2, "retry_backoff": "0s", "poll_health": "20ms", "step_backoff": "0s"})
    one = ("us-east-1",)
    env.repo.write("apps/checkout.yaml", app_spec(regions=one)).commit("v1")
    assert env.cli("run", "--once").code == 0
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2-bad", regions=one, timeout="200ms")).commit("bad")
    for _ in range(2):  # the pass's exit code is the daemon's contract; here only the failure is counted
        assert "rolled back" in env.cli("run", "--once").err
    status = env.status()
    stalled = [c for c in status["applications"]["checkout"]["conditions"] if c["type"] == "Stalled"]
    assert stalled and "kept failing" in stalled[0]["message"]
    plan = env.cli("plan", "--format", "markdown")
    assert plan.code == 0 and "stalled" in plan.out
    executions = json.loads(env.cli("history", "--format", "json").out)["executions"]
    runs = [e for e in executions if e["state"] != "succeeded"]
    assert len(runs) == 2, "two attempts, then no more"
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-3", regions=one)).commit("fix")
    assert env.cli("run", "--once").code == 0
    serving = [g for g in env.groups("us-east-1") if g["enabled"]]
    assert [(g["server_group"], g["image"]) for g in serving] == [("checkout-main-v001", "checkout-3")], \
        "the failed v001 was destroyed, so its slot is reused"


def test_approvals_expire(env: Env) -> None:
    _prod(env)
    write_config(env.config, env.repo.path, env.state_dir, approvals={"ttl": "0s"},
                 providers={"local": {"accounts": {"default": {}, "prod": {}}}})
    env.repo.write("apps/checkout.yaml", app_spec(account="prod", criticality="critical", regions=("r1",))).commit("v1")
    change_id = json.loads(env.cli("plan", "--format", "json").out)["changes"][0]["change_id"]
    assert env.cli("approve", change_id).code == 0
    assert env.cli("apply", "--yes").code == 1, "an expired approval does not count"

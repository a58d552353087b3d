"""Issue 2's user stories, end to end through the CLI on the local provider and real Git."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import Env, app_spec, write_config


def _groups(env: Env, region: str) -> dict[str, dict[str, Any]]:
    return {g["server_group"]: g for g in env.groups(region) if g["cluster"] == "checkout-main"}


def test_committing_an_application_creates_v000_in_every_region(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec()).commit("add checkout")

    plan = env.cli("plan", "--format", "json")
    assert plan.code == 2, plan.err
    doc = json.loads(plan.out)
    assert sorted((c["region"], c["action"]) for c in doc["changes"]) == [
        ("eu-west-1", "create"), ("us-east-1", "create")]
    assert {c["desired"]["server_group"] for c in doc["changes"]} == {"checkout-main-v000"}

    applied = env.cli("apply", "--yes")
    assert applied.code == 0, applied.out + applied.err
    assert "create checkout-main-v000" in applied.out
    for region in ("us-east-1", "eu-west-1"):
        g = _groups(env, region)["checkout-main-v000"]
        assert g["enabled"] and g["healthy"] == 2
    assert env.cli("plan").code == 0, "planning right after apply must be empty"


def test_an_image_change_is_a_red_black_replace_that_keeps_the_old_group(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec()).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0")).commit("v2")

    doc = json.loads(env.cli("plan", "--format", "json").out)
    assert {c["action"] for c in doc["changes"]} == {"replace"}
    kinds = [s["kind"] for s in doc["changes"][0]["steps"]]
    assert kinds == ["create", "wait_healthy", "enable", "disable", "resize"]

    res = env.cli("apply", "--yes")
    assert res.code == 0, res.out + res.err
    groups = _groups(env, "us-east-1")
    assert groups["checkout-main-v001"]["enabled"] and groups["checkout-main-v001"]["image"] == "checkout-2.0"
    old = groups["checkout-main-v000"]
    assert not old["enabled"] and old["capacity"]["desired"] == 0, "old group disabled, scaled down, kept"

    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-3.0")).commit("v3")
    assert env.cli("apply", "--yes").code == 0
    groups = _groups(env, "us-east-1")
    assert set(groups) == {"checkout-main-v001", "checkout-main-v002"}, "beyond keep_disabled=1 is destroyed"
    assert env.cli("plan").code == 0


def test_a_capacity_change_resizes_in_place(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec()).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    env.repo.write("apps/checkout.yaml", app_spec(desired=4)).commit("more")
    doc = json.loads(env.cli("plan", "--format", "json").out)
    assert {c["action"] for c in doc["changes"]} == {"resize"}
    assert env.cli("apply", "--yes").code == 0
    groups = _groups(env, "eu-west-1")
    assert list(groups) == ["checkout-main-v000"]
    assert groups["checkout-main-v000"]["capacity"]["desired"] == 4


def test_an_unhealthy_image_is_rolled_back_and_the_old_group_keeps_serving(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec(regions=("us-east-1",))).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    bad = app_spec(image="checkout-2.0-bad", regions=("us-east-1",), timeout="1s")
    env.repo.write("apps/checkout.yaml", bad).commit("bad")

    res = env.cli("apply", "--yes")
    assert res.code == 1
    assert "checkout-main-v001" in res.err and "0 of 2 instances healthy after 1s" in res.err
    groups = _groups(env, "us-east-1")
    assert set(groups) == {"checkout-main-v000"}, "the failed group is removed"
    assert groups["checkout-main-v000"]["enabled"] and groups["checkout-main-v000"]["healthy"] == 2
    hist = env.cli("history", "--format", "json")
    kinds = [e["kind"] for e in json.loads(hist.out)["events"]]
    assert "execution_rolled_back" in kinds


def test_a_broken_spec_names_file_line_and_field_and_the_others_still_apply(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec()).write("apps/cart.yaml", app_spec("cart")).commit("two apps")
    assert env.cli("apply", "--yes").code == 0
    broken = app_spec("cart").replace("{min: 1, desired: 2, max: 6}", "{min: 5, desired: 2, max: 6}")
    env.repo.write("apps/cart.yaml", broken)
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0")).commit("break cart, bump checkout")

    val = env.cli("validate", str(env.repo.path))
    assert val.code == 1
    assert "apps/cart.yaml:" in val.out and "capacity" in val.out

    plan = env.cli("plan")
    assert plan.code == 1
    assert "apps/cart.yaml:" in plan.out + plan.err
    res = env.cli("apply", "--yes")
    assert res.code == 0, res.out + res.err
    east = {g["server_group"]: g for g in env.groups("us-east-1")}
    assert east["checkout-main-v001"]["enabled"], "the healthy application still deploys"
    assert east["cart-main-v000"]["enabled"], "the broken application keeps its last live state"


def test_an_empty_tree_with_prune_is_denied_by_the_mass_deletion_guard(env: Env, tmp_path) -> None:
    write_config(env.config, env.repo.path, env.state_dir, prune=True)
    env.repo.write("apps/checkout.yaml", app_spec()).write("apps/cart.yaml", app_spec("cart")).commit("apps")
    assert env.cli("apply", "--yes").code == 0
    env.repo.remove("apps/checkout.yaml").remove("apps/cart.yaml").write("apps/README.md", "nothing\n").commit("oops")

    doc = json.loads(env.cli("plan", "--format", "json").out)
    assert {c["action"] for c in doc["changes"]} == {"destroy"}
    assert doc["verdict"] == "deny"
    assert any(v["policy"] == "mass-deletion" for c in doc["changes"] for v in c["verdicts"])
    res = env.cli("apply", "--yes")
    assert res.code == 1
    assert len(env.groups()) == 4, "nothing destroyed"


def test_pruning_one_cluster_of_many_destroys_only_it(env: Env) -> None:
    write_config(env.config, env.repo.path, env.state_dir, prune=True)
    for name in ("checkout", "cart", "search"):
        env.repo.write(f"apps/{name}.yaml", app_spec(name, regions=("us-east-1",)))
    env.repo.commit("three")
    assert env.cli("apply", "--yes").code == 0
    env.repo.remove("apps/search.yaml").commit("retire search")
    res = env.cli("apply", "--yes")
    assert res.code == 0, res.out + res.err
    assert sorted(g["application"] for g in env.groups()) == ["cart", "checkout"]

"""Fast rollback (git revert and the CLI) and drift correction on the local provider."""

from __future__ import annotations

import json
from typing import Any

from providers.local import LocalProvider
from reconciler.config import settings as config_mod
from reconciler.core import model
from tests.conftest import Env, app_spec, provider_context

ONE = ("us-east-1",)


def _local(env: Env) -> LocalProvider:
    cfg = config_mod.load_config(env.config)
    return LocalProvider("default", provider_context(cfg.state_url, cfg.state_dir))


def _names(env: Env) -> dict[str, dict[str, Any]]:
    return {g["server_group"]: g for g in env.groups("us-east-1")}


def test_a_git_revert_rolls_back_to_the_retained_group_without_creating_one(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec(regions=ONE)).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=ONE)).commit("v2")
    assert env.cli("apply", "--yes").code == 0
    env.repo.write("apps/checkout.yaml", app_spec(regions=ONE)).commit('Revert "v2"')
    res = env.cli("apply", "--yes")
    assert res.code == 0, res.out + res.err
    assert "rollback" in res.out and "create checkout-main-v002" not in res.out
    groups = _names(env)
    assert set(groups) == {"checkout-main-v000", "checkout-main-v001"}, "no new group"
    assert groups["checkout-main-v000"]["enabled"] and groups["checkout-main-v000"]["capacity"]["desired"] == 2
    assert not groups["checkout-main-v001"]["enabled"] and groups["checkout-main-v001"]["capacity"]["desired"] == 0
    assert env.cli("plan").code == 0


def test_cli_rollback_reenables_the_retained_group_and_pauses_until_git_agrees(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec(regions=ONE)).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=ONE)).commit("v2")
    assert env.cli("apply", "--yes").code == 0
    res = env.cli("rollback", "checkout-main", "--region", "us-east-1")
    assert res.code == 0, res.out + res.err
    assert "revert the deploy in Git" in res.out
    assert _names(env)["checkout-main-v000"]["enabled"]
    assert not _names(env)["checkout-main-v001"]["enabled"]
    status = env.status()
    assert "checkout-main" in status["paused"], "Git disagrees until reverted: the cluster is paused, not fought"
    plan = env.cli("plan")
    assert plan.code == 0 and "paused" in plan.out
    env.repo.write("apps/checkout.yaml", app_spec(regions=ONE)).commit("Revert v2")
    assert env.cli("resume", "checkout-main").code == 0
    assert env.cli("plan").code == 0, "after the revert Git and live agree"


def test_drift_is_reported_and_corrected(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec(regions=ONE)).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    local = _local(env)
    local.tamper("us-east-1", "checkout-main-v000", capacity=model.Capacity(1, 5, 6))
    doc = json.loads(env.cli("plan", "--format", "json").out)
    (change,) = doc["changes"]
    assert change["action"] == "resize" and change["reason"].startswith("drift")
    status = env.status()
    assert status["drift"] and "resized outside the reconciler" in status["drift"][0]
    assert env.cli("apply", "--yes").code == 0
    assert _names(env)["checkout-main-v000"]["capacity"]["desired"] == 2

    local.tamper("us-east-1", "checkout-main-v000", enabled=False)
    doc = json.loads(env.cli("plan", "--format", "json").out)
    assert doc["changes"][0]["reason"].startswith("drift: checkout-main-v000 was taken out of traffic")
    assert env.cli("apply", "--yes").code == 0
    assert _names(env)["checkout-main-v000"]["enabled"]


def test_a_paused_application_is_not_changed(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec(regions=ONE)).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    assert env.cli("pause", "checkout", "--reason", "incident").code == 0
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=ONE)).commit("v2")
    res = env.cli("apply", "--yes")
    assert res.code == 0 and "paused" in res.out
    assert set(_names(env)) == {"checkout-main-v000"}
    assert env.cli("resume", "checkout").code == 0
    assert env.cli("apply", "--yes").code == 0
    assert _names(env)["checkout-main-v001"]["enabled"]


def test_a_foreign_group_is_never_touched(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec(regions=ONE)).commit("v1")
    _local(env).put_foreign_group("us-east-1", "checkout-main-v000", image="legacy")
    assert env.cli("apply", "--yes").code == 0
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=ONE)).commit("v2")
    assert env.cli("apply", "--yes").code == 0
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-3.0", regions=ONE)).commit("v3")
    assert env.cli("apply", "--yes").code == 0
    groups = _names(env)
    assert groups["checkout-main-v000"]["enabled"] and groups["checkout-main-v000"]["image"] == "legacy"
    assert not groups["checkout-main-v000"]["managed"]
    assert groups["checkout-main-v003"]["enabled"], "versions skip the foreign group's slot"

"""End to end through the CLI and the executor: a Git repo deploying scale sets to the ARM double."""

from __future__ import annotations

import json

from tests.conftest import Env, app_spec, write_config
from tests.providers.azure.conftest import account
from tests.providers.azure.fake_arm import ArmDouble

REGION = "westeurope"
GALLERY = "/subscriptions/sub-1/resourceGroups/images/providers/Microsoft.Compute/galleries/g/images/app/versions"


def _spec(version: str, *, account: str = "test", name: str = "checkout", timeout: str = "5s") -> str:
    return app_spec(name, image=f"{GALLERY}/{version}", regions=(REGION,), provider="azure", account=account,
                    timeout=timeout, extra="load_balancers: [web]\nsecurity_groups: [web-nsg]\n",
                    ).replace("m5.large", "Standard_D2s_v5")


def _config(env: Env, arm: ArmDouble) -> None:
    write_config(env.config, env.repo.path, env.state_dir, providers={"azure": {"accounts": {
        "test": account(arm, regions=[REGION]),
        "broken": account(arm, regions=[REGION], endpoint="https://127.0.0.1:9", max_attempts=1)}}})


def _tags(arm: ArmDouble, name: str) -> dict[str, str]:
    return dict(arm.scale_sets[name]["tags"])


def test_red_black_on_azure_through_the_cli(env: Env, arm: ArmDouble) -> None:
    arm.add_load_balancer("web")
    arm.add_nsg("web-nsg")
    arm.add_foreign_scale_set("legacy-v000")
    _config(env, arm)

    env.repo.write("apps/checkout.yaml", _spec("1.0.0")).write("apps/cart.yaml", _spec("1.0.0", account="broken",
                                                                                       name="cart"))
    env.repo.commit("v1")
    res = env.cli("apply", "--yes")
    assert "azure/broken" in res.out and "live state unreadable" in res.out, res.out + res.err
    assert arm.members("web") == ["checkout-main-v000/0", "checkout-main-v000/1"]

    arm.fail_next("vmss_put", 429, retry_after="0")
    arm.fail_next("vms_list", 503, retry_after="0")  # retried at once: the CLI runs on the wall clock
    env.repo.write("apps/checkout.yaml", _spec("2.0.0")).commit("v2")
    res = env.cli("apply", "--yes")
    assert "create checkout-main-v001" in res.out, res.out + res.err
    assert arm.members("web") == ["checkout-main-v001/0", "checkout-main-v001/1"], "only v001 takes traffic"
    assert arm.scale_sets["checkout-main-v000"]["sku"]["capacity"] == 0, "the old group scaled down, kept"
    assert arm.counts["vmss_put"] == 3 and not arm.faults, "v000, then v001 twice (the 429), nothing else"

    env.repo.write("apps/checkout.yaml", _spec("3.0.0")).commit("v3")
    env.cli("apply", "--yes")
    assert "checkout-main-v000" not in arm.scale_sets, "destroyed beyond keep_disabled=1"
    assert arm.members("web") == ["checkout-main-v002/0", "checkout-main-v002/1"]
    assert _tags(arm, "legacy-v000") == {"team": "other"} and arm.scale_sets["legacy-v000"]["sku"]["capacity"] == 1

    env.repo.write("apps/checkout.yaml", _spec("2.0.0")).commit("revert v3")
    plan = json.loads(env.cli("plan", "--format", "json").out)
    assert {c["action"] for c in plan["changes"] if c["application"] == "checkout"} == {"rollback"}
    env.cli("apply", "--yes")
    assert arm.members("web") == ["checkout-main-v001/0", "checkout-main-v001/1"], "the retained group serves again"
    assert arm.scale_sets["checkout-main-v002"]["sku"]["capacity"] == 0, "the newer one disabled and scaled down"
    assert env.status()["unreadable"]["azure/broken/westeurope"].startswith("azure/broken/westeurope")


def test_a_failed_health_wait_leaves_the_old_group_untouched(env: Env, arm: ArmDouble) -> None:
    arm.add_load_balancer("web")
    arm.add_nsg("web-nsg")
    _config(env, arm)
    env.repo.write("apps/checkout.yaml", _spec("1.0.0")).commit("v1")
    env.cli("apply", "--yes")
    before = json.dumps(arm.scale_sets["checkout-main-v000"], sort_keys=True)

    env.repo.write("apps/checkout.yaml", _spec("1.1.0-bad", timeout="1s")).commit("a bad image")
    res = env.cli("apply", "--yes")
    assert res.code == 1 and "checkout-main-v001" in res.out and "healthy" in res.out, res.out + res.err
    assert "checkout-main-v001" not in arm.scale_sets, "the new group was disabled and destroyed"
    assert json.dumps(arm.scale_sets["checkout-main-v000"], sort_keys=True) == before, "the old one never touched"
    assert arm.members("web") == ["checkout-main-v000/0", "checkout-main-v000/1"]
    assert arm.counts["vmss_patch"] == 2 and arm.counts["vmss_upgrade"] == 1, "only v001 was taken out of the pool"


def test_an_image_pattern_is_refused_as_a_spec_problem_and_nothing_is_created(env: Env, arm: ArmDouble) -> None:
    """Azure resolves no image patterns: the cluster's region is held with the reason, other apps deploy."""
    arm.add_load_balancer("web")
    arm.add_nsg("web-nsg")
    _config(env, arm)
    pattern = _spec("1.0.0").replace(f'image: "{GALLERY}/1.0.0"', 'image: {name: "checkout-*", newest: true}')
    env.repo.write("apps/checkout.yaml", pattern).write("apps/cart.yaml", _spec("1.0.0", name="cart")).commit()

    res = env.cli("apply", "--yes")

    want = ("apps/checkout.yaml:9: clusters[0].image: azure/test/westeurope: the azure provider does not resolve "
            "image patterns: give image as the string the azure provider takes (docs/providers.md); "
            "checkout-main is held in westeurope")
    assert want in res.out + res.err, res.out + res.err
    assert sorted(arm.scale_sets) == ["cart-main-v000"], "nothing was created for the pattern"
    assert [p for p in env.status()["problems"] if p.startswith("apps/checkout.yaml")] == [
        f"{want} (its other regions deploy)"]

"""End to end through the CLI and the executor: a Git repo deploying apps to the Cloud Controller double."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Env, app_spec, write_config
from tests.providers.cloudfoundry.conftest import SPACE, account
from tests.providers.cloudfoundry.fake_cc import CloudControllerDouble

ROUTE = "checkout.apps.example.com"


def _spec(tag: str, *, account: str = "test", name: str = "checkout", timeout: str = "5s") -> str:
    return app_spec(name, image=f"docker://registry.example.com/checkout:{tag}", regions=(SPACE,),
                    provider="cloudfoundry", account=account, timeout=timeout,
                    extra=f"load_balancers: [{ROUTE}]\nuser_data: 'LOG_LEVEL: info'\n").replace("m5.large", "512M")


def _config(env: Env, cc: CloudControllerDouble, creds: Path) -> None:
    write_config(env.config, env.repo.path, env.state_dir, providers={"cloudfoundry": {"accounts": {
        "test": account(cc, creds),
        "broken": account(cc, creds, api_url="http://127.0.0.1:9", max_attempts=1)}}})


def _names(cc: CloudControllerDouble) -> list[str]:
    return sorted(a["name"] for a in cc.apps.values())


def test_red_black_on_cloud_foundry_through_the_cli(env: Env, cc: CloudControllerDouble, creds: Path) -> None:
    route = cc.add_route("checkout")
    cc.add_foreign_app("legacy")
    _config(env, cc, creds)

    env.repo.write("apps/checkout.yaml", _spec("1.0")).write("apps/cart.yaml", _spec("1.0", account="broken",
                                                                                    name="cart"))
    env.repo.commit("v1")
    res = env.cli("apply", "--yes")
    assert "cloudfoundry/broken" in res.out and "live state unreadable" in res.out, res.out + res.err
    assert cc.mapped(route) == ["checkout-main-v000"]

    cc.fail_next("apps_create", 429, retry_after="0")
    cc.fail_next("process_stats", 503, retry_after="0")  # retried at once: the CLI runs on the wall clock
    env.repo.write("apps/checkout.yaml", _spec("2.0")).commit("v2")
    res = env.cli("apply", "--yes")
    assert "create checkout-main-v001" in res.out, res.out + res.err
    assert cc.mapped(route) == ["checkout-main-v001"], "the routes moved to the new app"
    old = cc.app("checkout-main-v000")
    assert old["state"] == "STOPPED" and cc.process("checkout-main-v000")["instances"] == 0, "stopped, kept"
    assert _names(cc) == ["checkout-main-v000", "checkout-main-v001", "legacy"] and not cc.faults

    env.repo.write("apps/checkout.yaml", _spec("3.0")).commit("v3")
    env.cli("apply", "--yes")
    assert _names(cc) == ["checkout-main-v001", "checkout-main-v002", "legacy"], "keep_disabled=1"
    assert cc.app("legacy")["state"] == "STARTED" and cc.process("legacy")["instances"] == 1, "foreign: untouched"

    env.repo.write("apps/checkout.yaml", _spec("2.0")).commit("revert v3")
    plan = json.loads(env.cli("plan", "--format", "json").out)
    assert {c["action"] for c in plan["changes"] if c["application"] == "checkout"} == {"rollback"}
    env.cli("apply", "--yes")
    assert cc.mapped(route) == ["checkout-main-v001"] and cc.app("checkout-main-v001")["state"] == "STARTED"
    assert cc.app("checkout-main-v002")["state"] == "STOPPED"
    assert env.status()["unreadable"][f"cloudfoundry/broken/{SPACE}"].startswith(f"cloudfoundry/broken/{SPACE}")


def test_a_failed_health_wait_leaves_the_old_app_untouched(env: Env, cc: CloudControllerDouble,
                                                            creds: Path) -> None:
    route = cc.add_route("checkout")
    _config(env, cc, creds)
    env.repo.write("apps/checkout.yaml", _spec("1.0")).commit("v1")
    env.cli("apply", "--yes")
    before = json.dumps([cc.app("checkout-main-v000"), cc.process("checkout-main-v000")], sort_keys=True)

    env.repo.write("apps/checkout.yaml", _spec("1.1-bad", timeout="1s")).commit("a bad image")
    res = env.cli("apply", "--yes")
    assert res.code == 1 and "checkout-main-v001" in res.out and "healthy" in res.out, res.out + res.err
    assert _names(cc) == ["checkout-main-v000"], "the new app was destroyed"
    after = json.dumps([cc.app("checkout-main-v000"), cc.process("checkout-main-v000")], sort_keys=True)
    assert after == before and cc.mapped(route) == ["checkout-main-v000"], "the old app never touched"
    assert cc.counts["route_unmap"] == 0, "the new app was never mapped, so nothing was unmapped"


def test_an_image_pattern_is_refused_as_a_spec_problem_and_nothing_is_created(env: Env, cc: CloudControllerDouble,
                                                                              creds: Path) -> None:
    """Cloud Foundry has no image catalog to search: a pattern holds the space with the reason, others deploy."""
    cc.add_route("checkout")
    _config(env, cc, creds)
    pattern = _spec("1.0").replace('image: "docker://registry.example.com/checkout:1.0"',
                                   'image: {name: "checkout-*", newest: true}')
    env.repo.write("apps/checkout.yaml", pattern).write("apps/cart.yaml", _spec("1.0", name="cart")).commit()

    res = env.cli("apply", "--yes")

    assert (f"apps/checkout.yaml:9: clusters[0].image: cloudfoundry/test/{SPACE}: the cloudfoundry provider does not "
            "resolve image patterns: give image as the string the cloudfoundry provider takes") in res.out + res.err, \
        res.out + res.err
    assert _names(cc) == ["cart-main-v000"], "nothing was created for the pattern"

"""End to end through the CLI: a Git repo deploying regional MIGs to the Compute double."""

from __future__ import annotations

import json

from tests.conftest import Env, app_spec, write_config

REGIONS = ("europe-west1", "us-central1")


def _spec(image: str, account: str = "test", name: str = "checkout") -> str:
    return app_spec(name, image=image, regions=REGIONS, provider="gcp", account=account,
                    extra="load_balancers: [web]\n").replace("m5.large", "e2-medium")


def test_red_black_on_gcp_through_the_cli(env: Env, compute) -> None:
    compute.add_backend_service("web")
    compute.add_foreign_mig("europe-west1", "legacy-v000")
    write_config(env.config, env.repo.path, env.state_dir, providers={"gcp": {"accounts": {
        "test": {"project": "test-project", "endpoint": compute.base, "regions": list(REGIONS), "rate_limit": 0},
        "broken": {"project": "nope", "endpoint": "http://127.0.0.1:9", "max_attempts": 1, "rate_limit": 0}}}})
    img1, img2, img3 = (f"projects/p/global/images/app-{i}" for i in (1, 2, 3))

    env.repo.write("apps/checkout.yaml", _spec(img1)).write("apps/cart.yaml", _spec(img1, "broken", "cart"))
    env.repo.commit("v1")
    res = env.cli("apply", "--yes")
    assert "gcp/broken" in res.out and "live state unreadable" in res.out
    assert sorted(compute.backends_of("web")) == ["checkout-main-v000", "checkout-main-v000"]

    compute.fail_next("migs_insert", 429)
    compute.fail_next("bs_patch", 503)
    env.repo.write("apps/checkout.yaml", _spec(img2)).commit("v2")
    env.cli("apply", "--yes")
    assert sorted(compute.backends_of("web")) == ["checkout-main-v001", "checkout-main-v001"]
    for region in REGIONS:
        assert compute.migs[(region, "checkout-main-v000")]["targetSize"] == 0
    assert compute.template_names("europe-west1") == ["checkout-main-v000", "checkout-main-v001", "legacy-v000"]
    assert compute.template_names("us-central1") == ["checkout-main-v000", "checkout-main-v001"], "no duplicates"

    env.repo.write("apps/checkout.yaml", _spec(img3)).commit("v3")
    env.cli("apply", "--yes")
    assert not any(name == "checkout-main-v000" for _r, name in compute.migs)
    assert "checkout-main-v000" not in compute.template_names()
    assert compute.migs[("europe-west1", "legacy-v000")]["targetSize"] == 1, "the foreign MIG is untouched"

    env.repo.write("apps/checkout.yaml", _spec(img2)).commit("revert v3")
    plan = json.loads(env.cli("plan", "--format", "json").out)
    assert {c["action"] for c in plan["changes"] if c["application"] == "checkout"} == {"rollback"}
    env.cli("apply", "--yes")
    assert sorted(compute.backends_of("web")) == ["checkout-main-v001", "checkout-main-v001"]
    assert env.status()["unreadable"]["gcp/broken/europe-west1"].startswith("gcp/broken/europe-west1")

"""Images by pattern on GCP: the real client lists the Compute double's images (global: every region sees them)."""

from __future__ import annotations

import json

from providers.gcp import GcpProvider
from reconciler.core import images
from tests.conftest import Env, app_spec, write_config
from tests.providers.gcp.conftest import REGIONS
from tests.providers.gcp.fake_compute import ComputeDouble


def test_family_and_labels_are_filtered_by_the_api_and_only_ready_images_count(gcp: GcpProvider,
                                                                                compute: ComputeDouble) -> None:
    compute.add_image("checkout-1-4-2-a", family="checkout", labels={"version": "1-4-2"},
                      created="2026-12-01T10:00:00.000-08:00")
    compute.add_image("checkout-1-4-2-b", family="checkout", labels={"version": "1-4-2"},
                      created="2026-12-02T10:00:00.000-08:00")
    compute.add_image("checkout-1-4-2-c", family="checkout", labels={"version": "1-4-2"}, status="PENDING")
    compute.add_image("checkout-1-4-2-d", family="checkout", labels={"version": "1-4-2"}, deprecated="DEPRECATED")
    compute.add_image("checkout-1-4-1", family="checkout", labels={"version": "1-4-1"})
    compute.add_image("other", family="other", labels={"version": "1-4-2"})
    pattern = images.ImagePattern(family="checkout", tags=(("version", "1-4-2"),), newest=True)

    found = gcp.find_images("europe-west1", pattern)

    assert sorted(i.name for i in found) == ["checkout-1-4-2-a", "checkout-1-4-2-b"]
    chosen = images.choose(pattern, found).image
    assert chosen is not None and chosen.id == "projects/test-project/global/images/checkout-1-4-2-b"
    assert gcp.calls["images.list"] == 1 and compute.counts["images_list"] == 1


def test_a_pattern_deploys_the_newest_image_of_a_family_through_the_cli(env: Env, compute: ComputeDouble) -> None:
    compute.add_image("checkout-20261201", family="checkout", created="2026-12-01T10:00:00.000-08:00")
    compute.add_image("checkout-20261202", family="checkout", created="2026-12-02T10:00:00.000-08:00")
    write_config(env.config, env.repo.path, env.state_dir, providers={"gcp": {"accounts": {
        "test": {"project": "test-project", "endpoint": compute.base, "regions": list(REGIONS), "rate_limit": 0}}}})
    spec = app_spec("checkout", image="x", regions=REGIONS, provider="gcp", account="test").replace(
        'image: "x"', "image: {family: checkout, newest: true}").replace("m5.large", "e2-medium")
    env.repo.write("apps/checkout.yaml", spec).commit("by family")

    plan = json.loads(env.cli("plan", "--format", "json").out)
    want = "projects/test-project/global/images/checkout-20261202"
    assert {(c["region"], c["desired"]["image"]) for c in plan["changes"]} == {(r, want) for r in REGIONS}
    assert plan["changes"][0]["image_resolution"]["pattern"] == {"newest": True, "family": "checkout"}

    env.cli("apply", "--yes")
    for region in REGIONS:
        disk = compute.templates[(region, "checkout-main-v000")]["properties"]["disks"][0]
        assert disk["initializeParams"]["sourceImage"] == want

    compute.add_image("checkout-20261203", family="checkout", created="2026-12-03T10:00:00.000-08:00")
    plan = json.loads(env.cli("plan", "--format", "json").out)
    assert {(c["region"], c["action"]) for c in plan["changes"]} == {(r, "replace") for r in REGIONS}, \
        "a newer bake in the family is a new server group"

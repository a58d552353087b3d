"""The GCP provider's behaviour, with the real google-cloud-compute client against the Compute double."""

from __future__ import annotations

import json

import pytest

from providers.base import CreateRequest
from providers.gcp import GcpProvider, label_value
from reconciler.core import errors, model
from tests.providers.gcp.conftest import REGIONS, MakeGcp
from tests.providers.gcp.fake_compute import ComputeDouble

REGION = "europe-west1"
IMAGE = "projects/debian-cloud/global/images/debian-12"


def request(name: str, *, image: str = IMAGE, lbs: tuple[str, ...] = ("web",), cap: tuple[int, int, int] = (1, 2, 4),
            spec_hash: str = "h1", region: str = REGION, autoscaling: bool = False,
            user_data: str = "#!/bin/sh\necho hi\n") -> CreateRequest:
    return CreateRequest(
        name=name, application="checkout", cluster="checkout-main", region=region,
        launch=model.LaunchSpec(image=image, instance_type="e2-medium", user_data=user_data,
                                security_groups=("allow-http",), load_balancers=lbs,
                                tags=(("team", "Payments Team"), ("9lives", "yes"))),
        capacity=model.Capacity(*cap), spec_hash=spec_hash, commit="c" * 40, autoscaling=autoscaling,
    )


def by_name(gcp: GcpProvider, region: str = REGION) -> dict[str, model.ServerGroup]:
    return {g.name: g for g in gcp.list_server_groups(region)}


def test_create_in_two_regions_makes_a_labelled_template_and_a_mig_in_each(make_gcp: MakeGcp,
                                                                             compute: ComputeDouble) -> None:
    compute.add_backend_service("web")
    gcp = make_gcp(zones={"us-central1": ["us-central1-a", "us-central1-f"]})
    for region in REGIONS:
        sg = gcp.create_server_group(request("checkout-main-v000", region=region))
        assert sg.managed and sg.enabled and sg.spec_hash == "h1" and sg.region == region
    assert compute.backends_of("web") == ["checkout-main-v000", "checkout-main-v000"]
    template = compute.templates[(REGION, "checkout-main-v000")]
    props = template["properties"]
    assert props["labels"] == {"managed-by": "reconciler", "application": "checkout", "cluster": "checkout-main",
                               "spec-hash": "h1", "commit": "c" * 40, "team": label_value("Payments Team"),
                               "k9lives": "yes"}
    assert json.loads(template["description"])["commit"] == "c" * 40
    assert props["metadata"]["items"] == [{"key": "startup-script", "value": "#!/bin/sh\necho hi\n"}]
    assert props["tags"]["items"] == ["allow-http"] and props["machineType"] == "e2-medium"
    assert props["disks"][0]["initializeParams"]["sourceImage"] == IMAGE
    assert "distributionPolicy" not in compute.migs[(REGION, "checkout-main-v000")]
    zones = compute.migs[("us-central1", "checkout-main-v000")]["distributionPolicy"]["zones"]
    assert [z["zone"].rsplit("/", 1)[-1] for z in zones] == ["us-central1-a", "us-central1-f"]
    g = by_name(gcp)["checkout-main-v000"]
    assert (g.capacity, g.launch.instance_type, g.launch.image) == (model.Capacity(1, 2, 4), "e2-medium", IMAGE)
    assert g.launch.security_groups == ("allow-http",) and g.launch.load_balancers == ("web",)
    assert gcp.health(REGION, "checkout-main-v000") == model.Health(healthy=2, desired=2, instances=2)


def test_a_full_red_black_by_provider_calls(gcp: GcpProvider, compute: ComputeDouble) -> None:
    compute.add_backend_service("web")
    gcp.create_server_group(request("checkout-main-v000"))
    gcp.create_server_group(request("checkout-main-v001", image="projects/p/global/images/app-2", spec_hash="h2"))
    assert compute.backends_of("web") == ["checkout-main-v000", "checkout-main-v001"], "attached at creation"
    assert gcp.health(REGION, "checkout-main-v001").satisfies(100)
    gcp.enable(REGION, "checkout-main-v001")
    gcp.disable(REGION, "checkout-main-v000")
    assert compute.backends_of("web") == ["checkout-main-v001"] and compute.counts["bs_update"] == 0
    groups = by_name(gcp)
    assert groups["checkout-main-v001"].enabled and not groups["checkout-main-v000"].enabled
    gcp.resize(REGION, "checkout-main-v000", model.Capacity(0, 0, 0))
    assert compute.migs[(REGION, "checkout-main-v000")]["targetSize"] == 0
    assert by_name(gcp)["checkout-main-v000"].capacity == model.Capacity(0, 0, 0)
    gcp.destroy(REGION, "checkout-main-v000")
    assert (REGION, "checkout-main-v000") not in compute.migs and "checkout-main-v000" not in compute.template_names()
    gcp.destroy(REGION, "checkout-main-v000")  # gone: a no-op
    gcp.disable(REGION, "checkout-main-v001")  # the last backend: a patch cannot send [], so update (PUT)
    assert compute.backends_of("web") == [] and compute.counts["bs_update"] == 1
    assert gcp.health(REGION, "checkout-main-v001").healthy == 2, "out of the backend service: no getHealth"
    gcp.enable(REGION, "checkout-main-v001")
    assert compute.backends_of("web") == ["checkout-main-v001"]


def test_min_and_max_survive_a_resize(gcp: GcpProvider, compute: ComputeDouble) -> None:
    gcp.create_server_group(request("checkout-main-v000", lbs=()))
    gcp.resize(REGION, "checkout-main-v000", model.Capacity(2, 3, 6))
    assert by_name(gcp)["checkout-main-v000"].capacity == model.Capacity(2, 3, 6)
    compute.counts.clear()
    gcp.resize(REGION, "checkout-main-v000", model.Capacity(2, 3, 6))
    assert compute.counts["migs_resize"] == 0, "already that size"


def test_without_backend_services_the_traffic_state_is_recorded(gcp: GcpProvider) -> None:
    gcp.create_server_group(request("checkout-main-v000", lbs=()))
    assert not by_name(gcp)["checkout-main-v000"].enabled
    gcp.enable(REGION, "checkout-main-v000")
    assert by_name(gcp)["checkout-main-v000"].enabled
    gcp.disable(REGION, "checkout-main-v000")
    assert not by_name(gcp)["checkout-main-v000"].enabled
    assert gcp.health(REGION, "checkout-main-v000").healthy == 2


def test_an_autoscaler_is_turned_off_on_disable_and_restored_on_enable(gcp: GcpProvider,
                                                                       compute: ComputeDouble) -> None:
    compute.add_backend_service("web")
    gcp.create_server_group(request("checkout-main-v000", autoscaling=True))
    scaler = compute.autoscalers[(REGION, "checkout-main-v000")]
    assert scaler["autoscalingPolicy"] == {"minNumReplicas": 1, "maxNumReplicas": 4, "mode": "ON"}
    assert dict(by_name(gcp)["checkout-main-v000"].extra) == {"autoscaler": "checkout-main-v000"}
    gcp.resize(REGION, "checkout-main-v000", model.Capacity(2, 3, 5))  # on: bounds only, the autoscaler sizes
    assert scaler["autoscalingPolicy"]["minNumReplicas"] == 2 and compute.counts["migs_resize"] == 0
    gcp.disable(REGION, "checkout-main-v000")
    assert scaler["autoscalingPolicy"]["mode"] == "OFF" and compute.backends_of("web") == []
    gcp.resize(REGION, "checkout-main-v000", model.Capacity(0, 0, 0))  # off: the size; max 0 is not allowed
    assert compute.migs[(REGION, "checkout-main-v000")]["targetSize"] == 0
    assert scaler["autoscalingPolicy"]["maxNumReplicas"] == 5
    assert by_name(gcp)["checkout-main-v000"].capacity == model.Capacity(0, 0, 0)
    gcp.resize(REGION, "checkout-main-v000", model.Capacity(2, 3, 5))
    gcp.enable(REGION, "checkout-main-v000")
    assert scaler["autoscalingPolicy"]["mode"] == "ON" and compute.backends_of("web") == ["checkout-main-v000"]
    gcp.destroy(REGION, "checkout-main-v000")
    assert not compute.autoscalers and not compute.migs and not compute.template_names()


def test_an_unhealthy_image_never_becomes_healthy(gcp: GcpProvider, compute: ComputeDouble) -> None:
    compute.add_backend_service("web")
    gcp.create_server_group(request("checkout-main-v000", image="projects/p/global/images/app-bad"))
    assert gcp.health(REGION, "checkout-main-v000") == model.Health(healthy=0, desired=2, instances=2)
    assert compute.counts["bs_health"] == 1


def test_autohealing_health_states_are_read_from_managed_instances(gcp: GcpProvider, compute: ComputeDouble) -> None:
    gcp.create_server_group(request("checkout-main-v000", lbs=(), image="projects/p/global/images/app-bad",
                                    cap=(0, 150, 200)))
    gcp.page_size = 100
    compute.migs[(REGION, "checkout-main-v000")]["autoHealingPolicies"] = [{"healthCheck": "hc"}]
    assert gcp.health(REGION, "checkout-main-v000") == model.Health(healthy=0, desired=150, instances=150)
    assert compute.counts["migs_instances"] == 2, "150 instances, 100 a page"


def test_create_is_idempotent_after_a_crash(gcp: GcpProvider, compute: ComputeDouble) -> None:
    compute.add_backend_service("web")
    gcp.create_server_group(request("checkout-main-v000"))
    gcp.create_server_group(request("checkout-main-v000"))
    assert compute.template_names() == ["checkout-main-v000"] and len(compute.migs) == 1
    assert compute.backends_of("web") == ["checkout-main-v000"]
    del compute.migs[(REGION, "checkout-main-v000")]  # crash after the template insert, before the MIG
    compute.backend_services["web"]["backends"] = []
    gcp.create_server_group(request("checkout-main-v000"))
    assert compute.template_names() == ["checkout-main-v000"] and (REGION, "checkout-main-v000") in compute.migs
    assert compute.backends_of("web") == ["checkout-main-v000"]


def test_a_name_taken_by_someone_else_is_a_conflict(gcp: GcpProvider, compute: ComputeDouble) -> None:
    compute.add_foreign_mig(REGION, "checkout-main-v000")
    with pytest.raises(errors.Conflict, match="not this deployment's"):
        gcp.create_server_group(request("checkout-main-v000", lbs=()))
    del compute.migs[(REGION, "checkout-main-v000")]  # a foreign template alone
    with pytest.raises(errors.Conflict, match="instance template checkout-main-v000 already exists"):
        gcp.create_server_group(request("checkout-main-v000", lbs=()))
    with pytest.raises(errors.Conflict, match="refusing to delete"):
        gcp.destroy(REGION, "checkout-main-v000")
    assert compute.template_names() == ["checkout-main-v000"] and not compute.migs


def test_a_foreign_mig_is_listed_unmanaged_and_never_changed(gcp: GcpProvider, compute: ComputeDouble) -> None:
    compute.add_foreign_mig(REGION, "legacy-v000")
    (g,) = gcp.list_server_groups(REGION)
    assert not g.managed and g.enabled
    for call in (lambda: gcp.enable(REGION, "legacy-v000"), lambda: gcp.disable(REGION, "legacy-v000"),
                 lambda: gcp.resize(REGION, "legacy-v000", model.Capacity(0, 0, 0)),
                 lambda: gcp.destroy(REGION, "legacy-v000")):
        with pytest.raises(errors.Conflict, match="not managed by reconciler"):
            call()
    assert compute.migs[(REGION, "legacy-v000")]["targetSize"] == 1 and compute.template_names() == ["legacy-v000"]
    writes = [k for k in compute.counts if not k.endswith(("_get", "_list"))]
    assert writes == [], "only reads reached the API"


def test_a_stale_fingerprint_is_read_again(gcp: GcpProvider, compute: ComputeDouble) -> None:
    compute.add_backend_service("web")
    compute.fail_next("bs_patch", 412)
    gcp.create_server_group(request("checkout-main-v000"))
    assert compute.backends_of("web") == ["checkout-main-v000"] and compute.counts["bs_get"] >= 2
    compute.fail_next("bs_patch", 412, times=2)
    with pytest.raises(errors.Conflict, match="keeps changing"):
        gcp.create_server_group(request("checkout-main-v001", spec_hash="h2"))


def test_a_group_whose_backend_service_was_deleted_lists_as_out_of_traffic(gcp: GcpProvider,
                                                                           compute: ComputeDouble) -> None:
    compute.add_backend_service("web")
    gcp.create_server_group(request("checkout-main-v000"))
    del compute.backend_services["web"]
    assert not by_name(gcp)["checkout-main-v000"].enabled
    gcp.disable(REGION, "checkout-main-v000")
    with pytest.raises(errors.NotFound, match=r"backendServices\.get: notFound: HTTP 404"):
        gcp.enable(REGION, "checkout-main-v000")

"""The GCP provider with the real google-cloud-compute client against the Compute double."""

from __future__ import annotations

import pytest

from providers.base import CreateRequest, ProviderContext
from providers.gcp import GcpProvider, label_value
from reconciler import clock as clock_mod
from reconciler import errors, model

REGION = "europe-west1"


def request(name: str, *, image: str = "projects/debian-cloud/global/images/debian-12", lbs=("web",),
            desired: int = 2, spec_hash: str = "h1", user_data: str = "#!/bin/sh\necho hi\n") -> CreateRequest:
    return CreateRequest(
        name=name, application="checkout", cluster="checkout-main", region=REGION,
        launch=model.LaunchSpec(image=image, instance_type="e2-medium", user_data=user_data,
                                security_groups=("allow-http",), load_balancers=tuple(lbs),
                                tags=(("team", "Payments Team"),)),
        capacity=model.Capacity(1, desired, 4), spec_hash=spec_hash, commit="c" * 40,
    )


def by_name(gcp: GcpProvider) -> dict[str, model.ServerGroup]:
    return {g.name: g for g in gcp.list_server_groups(REGION)}


def test_create_joins_the_backend_service_and_is_owned(gcp: GcpProvider, compute) -> None:
    compute.add_backend_service("web")
    sg = gcp.create_server_group(request("checkout-main-v000"))
    assert sg.managed and sg.enabled and sg.spec_hash == "h1"
    assert compute.backends_of("web") == ["checkout-main-v000"]
    tmpl = compute.templates[(REGION, "checkout-main-v000")]["properties"]
    assert tmpl["labels"]["managed-by"] == "reconciler" and tmpl["labels"]["team"] == label_value("Payments Team")
    assert tmpl["metadata"]["items"][0]["key"] == "startup-script" and tmpl["tags"]["items"] == ["allow-http"]
    assert gcp.health(REGION, "checkout-main-v000").satisfies(100)
    g = by_name(gcp)["checkout-main-v000"]
    assert (g.capacity.min, g.capacity.desired, g.capacity.max) == (1, 2, 4) and g.launch.instance_type == "e2-medium"


def test_a_full_red_black_by_provider_calls(gcp: GcpProvider, compute) -> None:
    compute.add_backend_service("web")
    gcp.create_server_group(request("checkout-main-v000"))
    gcp.create_server_group(request("checkout-main-v001", image="projects/p/global/images/app-2", spec_hash="h2"))
    assert gcp.health(REGION, "checkout-main-v001").satisfies(100)
    gcp.enable(REGION, "checkout-main-v001")
    gcp.disable(REGION, "checkout-main-v000")
    assert compute.backends_of("web") == ["checkout-main-v001"]
    groups = by_name(gcp)
    assert groups["checkout-main-v001"].enabled and not groups["checkout-main-v000"].enabled
    gcp.resize(REGION, "checkout-main-v000", model.Capacity(0, 0, 0))
    assert compute.migs[(REGION, "checkout-main-v000")]["targetSize"] == 0
    gcp.disable(REGION, "checkout-main-v001")   # the last backend: removed with update (PUT), not patch
    assert compute.backends_of("web") == [] and compute.counts["bs_update"] == 1
    gcp.enable(REGION, "checkout-main-v001")
    gcp.destroy(REGION, "checkout-main-v000")
    assert (REGION, "checkout-main-v000") not in compute.migs and "checkout-main-v000" not in compute.template_names()
    gcp.destroy(REGION, "checkout-main-v000")   # gone: a no-op


def test_without_backend_services_the_traffic_state_is_recorded(gcp: GcpProvider, compute) -> None:
    gcp.create_server_group(request("checkout-main-v000", lbs=()))
    assert not by_name(gcp)["checkout-main-v000"].enabled
    gcp.enable(REGION, "checkout-main-v000")
    assert by_name(gcp)["checkout-main-v000"].enabled
    assert gcp.health(REGION, "checkout-main-v000").healthy == 2


def test_an_unhealthy_image_never_becomes_healthy(gcp: GcpProvider, compute) -> None:
    compute.add_backend_service("web")
    gcp.create_server_group(request("checkout-main-v000", image="projects/p/global/images/app-bad"))
    h = gcp.health(REGION, "checkout-main-v000")
    assert h.healthy == 0 and h.desired == 2


def test_create_is_idempotent_after_a_crash(gcp: GcpProvider, compute) -> None:
    compute.add_backend_service("web")
    gcp.create_server_group(request("checkout-main-v000"))
    gcp.create_server_group(request("checkout-main-v000"))
    assert compute.template_names() == ["checkout-main-v000"] and len(compute.migs) == 1
    assert compute.backends_of("web") == ["checkout-main-v000"]
    del compute.migs[(REGION, "checkout-main-v000")]  # crash after the template insert, before the MIG
    gcp.create_server_group(request("checkout-main-v000"))
    assert compute.template_names() == ["checkout-main-v000"] and (REGION, "checkout-main-v000") in compute.migs


def test_a_foreign_mig_is_listed_unmanaged_and_never_changed(gcp: GcpProvider, compute) -> None:
    compute.add_foreign_mig(REGION, "legacy-v000")
    (g,) = gcp.list_server_groups(REGION)
    assert not g.managed
    for call in (lambda: gcp.disable(REGION, "legacy-v000"),
                 lambda: gcp.resize(REGION, "legacy-v000", model.Capacity(0, 0, 0)),
                 lambda: gcp.destroy(REGION, "legacy-v000")):
        with pytest.raises(errors.Conflict, match="not managed by reconciler"):
            call()
    assert compute.migs[(REGION, "legacy-v000")]["targetSize"] == 1


def test_listing_pages_with_one_request_per_page(gcp: GcpProvider, compute) -> None:
    for i in range(1200):
        compute.add_foreign_mig(REGION, f"bulk-v{i % 1000:03d}-{i}")
    gcp.calls.clear()
    compute.counts.clear()
    assert len(gcp.list_server_groups(REGION)) == 1200
    assert compute.counts["migs_list"] == 3, "500 a page; never a request per group"
    assert sum(compute.counts.values()) == 3


def test_429_and_503_are_retried_without_duplicates(gcp: GcpProvider, compute) -> None:
    compute.add_backend_service("web")
    compute.fail_next("templates_insert", 503)
    compute.fail_next("migs_insert", 429)
    compute.fail_next("migs_list", 503, times=2)
    compute.fail_next("bs_patch", 429)
    gcp.create_server_group(request("checkout-main-v000"))
    assert [g.name for g in gcp.list_server_groups(REGION)] == ["checkout-main-v000"]
    assert compute.template_names() == ["checkout-main-v000"] and len(compute.migs) == 1
    assert compute.backends_of("web") == ["checkout-main-v000"]
    assert not compute.faults


def test_a_stale_fingerprint_is_read_again(gcp: GcpProvider, compute) -> None:
    compute.add_backend_service("web")
    gcp.create_server_group(request("checkout-main-v000", lbs=()))
    compute.fail_next("bs_patch", 412)
    gcp.create_server_group(request("checkout-main-v001", spec_hash="h2"))
    assert compute.backends_of("web") == ["checkout-main-v001"]


def test_errors_name_status_method_project_and_region(gcp: GcpProvider, compute, tmp_path) -> None:
    with pytest.raises(errors.NotFound, match="does not exist"):
        gcp.enable(REGION, "checkout-main-v042")
    with pytest.raises(errors.NotFound) as info:
        gcp.create_server_group(request("checkout-main-v000", lbs=("no-such-service",)))
    text = str(info.value)
    assert "gcp/test/europe-west1 backendServices.get" in text and "HTTP 404" in text
    assert "project test-project" in text
    with pytest.raises(errors.ProviderError, match="not one of this account's regions"):
        gcp.list_server_groups("europe-wset1")
    ctx = ProviderContext(state_url=f"sqlite:///{tmp_path / 'x.db'}", state_dir=tmp_path, clock=clock_mod.FakeClock())
    with pytest.raises(errors.ConfigError, match="project: required"):
        GcpProvider.from_config("bad", {}, ctx)
    down = GcpProvider.from_config("down", {"project": "p", "endpoint": "http://127.0.0.1:9", "max_attempts": 1,
                                            "rate_limit": 0}, ctx)
    with pytest.raises(errors.Unavailable, match="project p"):
        down.list_server_groups(REGION)
    down.close()
    with pytest.raises(errors.ProviderError, match="credentials_file"):
        GcpProvider.from_config("bad", {"project": "p", "credentials_file": str(tmp_path / "missing.json")}, ctx)


def test_a_wrong_field_name_is_rejected_by_the_double(compute) -> None:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"{compute.base}/compute/v1/projects/p/regions/europe-west1/instanceTemplates",
                                 data=b'{"name": "x", "machineTypo": "e2"}', method="POST",
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req)
    with info.value:
        assert info.value.code == 400


def test_label_values_follow_gce_rules() -> None:
    assert label_value("checkout") == "checkout"
    long = label_value("A" * 100)
    assert len(long) <= 63 and long == long.lower()
    assert label_value("Payments Team") != label_value("payments-team"), "hashed, so distinct values stay distinct"

"""The Azure provider's behaviour, with the real azure-mgmt SDKs and azure-identity against the ARM double."""

from __future__ import annotations

import base64

import pytest

from providers.azure import AzureProvider
from providers.base import CreateRequest
from reconciler.core import errors, model
from tests.providers.azure.conftest import SSH_KEY, MakeAzure
from tests.providers.azure.fake_arm import ArmDouble

REGION = "westeurope"
IMAGE = "/subscriptions/sub-1/resourceGroups/images/providers/Microsoft.Compute/galleries/g/images/app/versions/1.0.0"
IMAGE2 = "/subscriptions/sub-1/resourceGroups/images/providers/Microsoft.Compute/galleries/g/images/app/versions/2.0.0"


def request(name: str, *, image: str = IMAGE, lbs: tuple[str, ...] = ("web",), cap: tuple[int, int, int] = (1, 2, 4),
            spec_hash: str = "h1", region: str = REGION, sgs: tuple[str, ...] = ("web-nsg",),
            user_data: str = "#cloud-config\nruncmd: [echo hi]\n", autoscaling: bool = False) -> CreateRequest:
    return CreateRequest(
        name=name, application="checkout", cluster="checkout-main", region=region,
        launch=model.LaunchSpec(image=image, instance_type="Standard_D2s_v5", user_data=user_data,
                                security_groups=sgs, load_balancers=lbs, tags=(("team", "payments"),)),
        capacity=model.Capacity(*cap), spec_hash=spec_hash, commit="c" * 40, autoscaling=autoscaling)


def by_name(azure: AzureProvider, region: str = REGION) -> dict[str, model.ServerGroup]:
    return {g.name: g for g in azure.list_server_groups(region)}


@pytest.fixture
def net(arm: ArmDouble) -> ArmDouble:
    arm.add_load_balancer("web")
    arm.add_nsg("web-nsg")
    return arm


def test_create_makes_a_tagged_scale_set_in_the_pool_from_the_image(azure: AzureProvider, net: ArmDouble) -> None:
    sg = azure.create_server_group(request("checkout-main-v000"))
    assert sg.managed and sg.enabled and sg.spec_hash == "h1" and sg.capacity == model.Capacity(1, 2, 4)
    doc = net.scale_sets["checkout-main-v000"]
    assert doc["tags"] == {"managed-by": "reconciler", "application": "checkout", "cluster": "checkout-main",
                           "spec-hash": "h1", "commit": "c" * 40, "team": "payments", "reconciler:min": "1",
                           "reconciler:max": "4", "reconciler:load-balancers": "web"}
    assert doc["sku"] == {"name": "Standard_D2s_v5", "tier": "Standard", "capacity": 2}
    profile = doc["properties"]["virtualMachineProfile"]
    assert profile["storageProfile"]["imageReference"] == {"id": IMAGE}
    assert base64.b64decode(profile["osProfile"]["customData"]).decode().startswith("#cloud-config")
    assert profile["osProfile"]["linuxConfiguration"]["ssh"]["publicKeys"][0]["keyData"] == SSH_KEY
    nic = profile["networkProfile"]["networkInterfaceConfigurations"][0]["properties"]
    assert nic["networkSecurityGroup"]["id"] == net.nsgs["web-nsg"]["id"]
    ip = nic["ipConfigurations"][0]["properties"]
    assert ip["subnet"]["id"].endswith("/virtualNetworks/apps-vnet/subnets/apps")
    assert profile["networkProfile"]["healthProbe"]["id"].endswith("/loadBalancers/web/probes/http")
    assert net.members("web") == ["checkout-main-v000/0", "checkout-main-v000/1"], "in the pool at creation"
    g = by_name(azure)["checkout-main-v000"]
    assert (g.launch.image, g.launch.instance_type, g.launch.security_groups, g.launch.load_balancers) == (
        IMAGE, "Standard_D2s_v5", ("web-nsg",), ("web",))
    assert g.launch.tags == (("team", "payments"),) and g.created_at > 0
    assert azure.health(REGION, "checkout-main-v000") == model.Health(healthy=2, desired=2, instances=2)
    assert net.counts["lb_health"] == 1, "the balancer's probe, per load-balancing rule"
    assert net.tokens_issued == 1, "one managed-identity token, cached by the SDK"


def test_a_full_red_black_by_provider_calls(azure: AzureProvider, net: ArmDouble) -> None:
    azure.create_server_group(request("checkout-main-v000"))
    azure.create_server_group(request("checkout-main-v001", image=IMAGE2, spec_hash="h2"))
    assert net.members("web") == ["checkout-main-v000/0", "checkout-main-v000/1", "checkout-main-v001/0",
                                  "checkout-main-v001/1"]
    assert azure.health(REGION, "checkout-main-v001").satisfies(100)
    azure.enable(REGION, "checkout-main-v001")
    azure.disable(REGION, "checkout-main-v000")
    assert net.members("web") == ["checkout-main-v001/0", "checkout-main-v001/1"]
    assert net.counts["vmss_upgrade"] == 1, "the model change applied to the instances once"
    groups = by_name(azure)
    assert groups["checkout-main-v001"].enabled and not groups["checkout-main-v000"].enabled
    assert azure.health(REGION, "checkout-main-v000").healthy == 2, "out of the pool: no probe, still running"
    azure.resize(REGION, "checkout-main-v000", model.Capacity(0, 0, 0))
    assert net.scale_sets["checkout-main-v000"]["sku"]["capacity"] == 0 and net.vms["checkout-main-v000"] == []
    assert by_name(azure)["checkout-main-v000"].capacity == model.Capacity(0, 0, 0)
    net.counts.clear()
    azure.disable(REGION, "checkout-main-v000")
    azure.resize(REGION, "checkout-main-v000", model.Capacity(0, 0, 0))
    assert set(net.counts) <= {"vmss_get", "vms_list"}, "already disabled and at that size: reads only"
    azure.destroy(REGION, "checkout-main-v000")
    assert "checkout-main-v000" not in net.scale_sets
    azure.destroy(REGION, "checkout-main-v000")  # gone: a no-op
    azure.enable(REGION, "checkout-main-v001")
    assert net.members("web") == ["checkout-main-v001/0", "checkout-main-v001/1"]


def test_rollback_resizes_and_reenables_a_retained_group(azure: AzureProvider, net: ArmDouble) -> None:
    azure.create_server_group(request("checkout-main-v000"))
    azure.disable(REGION, "checkout-main-v000")
    azure.resize(REGION, "checkout-main-v000", model.Capacity(0, 0, 0))
    azure.resize(REGION, "checkout-main-v000", model.Capacity(1, 3, 4))
    assert [vm["instanceId"] for vm in net.vms["checkout-main-v000"]] == ["0", "1", "2"]
    azure.enable(REGION, "checkout-main-v000")
    assert net.members("web") == [f"checkout-main-v000/{i}" for i in range(3)]
    assert azure.health(REGION, "checkout-main-v000") == model.Health(healthy=3, desired=3, instances=3)


def test_without_balancers_the_traffic_state_is_a_tag(azure: AzureProvider, arm: ArmDouble) -> None:
    azure.create_server_group(request("checkout-main-v000", lbs=(), sgs=()))
    assert not by_name(azure)["checkout-main-v000"].enabled
    azure.enable(REGION, "checkout-main-v000")
    assert arm.scale_sets["checkout-main-v000"]["tags"]["reconciler:traffic"] == "enabled"
    assert by_name(azure)["checkout-main-v000"].enabled
    azure.disable(REGION, "checkout-main-v000")
    assert not by_name(azure)["checkout-main-v000"].enabled
    assert arm.counts["vmss_upgrade"] == 0 and arm.counts["lb_get"] == 0


def test_an_application_gateway_pool_and_a_named_pool(azure: AzureProvider, arm: ArmDouble) -> None:
    arm.add_gateway("gw", pools=("web",))
    arm.add_load_balancer("internal", pools=("blue", "green"))
    azure.create_server_group(request("checkout-main-v000", lbs=("gw", "internal/green"), sgs=()))
    assert arm.gateway_members("gw") == ["checkout-main-v000/0", "checkout-main-v000/1"]
    assert arm.members("internal", "green") == ["checkout-main-v000/0", "checkout-main-v000/1"]
    azure.disable(REGION, "checkout-main-v000")
    assert arm.gateway_members("gw") == [] and arm.members("internal", "green") == []
    azure.enable(REGION, "checkout-main-v000")
    assert arm.gateway_members("gw") == ["checkout-main-v000/0", "checkout-main-v000/1"]
    with pytest.raises(errors.ProviderError, match="has several backend pools; name one as NAME/POOL"):
        azure.create_server_group(request("checkout-main-v001", lbs=("internal",), sgs=(), spec_hash="h2"))
    with pytest.raises(errors.NotFound, match="no load balancer or application gateway named nope"):
        azure.create_server_group(request("checkout-main-v001", lbs=("nope",), sgs=(), spec_hash="h2"))
    with pytest.raises(errors.NotFound, match="no network security group named web-nsg"):
        azure.create_server_group(request("checkout-main-v001", lbs=(), spec_hash="h2"))
    assert "checkout-main-v001" not in arm.scale_sets


def test_an_unhealthy_image_fails_the_probe_and_the_health_extension(make_azure: MakeAzure, net: ArmDouble) -> None:
    azure = make_azure(health_extension={"protocol": "http", "port": 8080, "request_path": "/healthz"})
    azure.create_server_group(request("checkout-main-v009"))  # a healthy group in the same pool
    azure.create_server_group(request("checkout-main-v000", image="Canonical:ubuntu:24_04-lts-bad:latest"))
    ext = net.scale_sets["checkout-main-v000"]["properties"]["virtualMachineProfile"]["extensionProfile"]
    assert ext["extensions"][0]["properties"]["settings"] == {"protocol": "http", "port": 8080,
                                                             "requestPath": "/healthz"}
    assert azure.health(REGION, "checkout-main-v000") == model.Health(healthy=0, desired=2, instances=2)
    azure.create_server_group(request("checkout-main-v001", lbs=(), spec_hash="h2",
                                      image="Canonical:ubuntu:24_04-lts-bad:latest"))
    assert azure.health(REGION, "checkout-main-v001").healthy == 0, "the extension alone says unhealthy"
    assert by_name(azure)["checkout-main-v000"].launch.image == "Canonical:ubuntu:24_04-lts-bad:latest"


def test_images_and_limits_are_checked_before_any_call(azure: AzureProvider, arm: ArmDouble) -> None:
    cases = [
        (request("checkout-main-v000", image="ami-12345"), "expected a gallery image version ID"),
        (request("checkout-main-v000", sgs=("a", "b")), "takes one network security group"),
        (request("checkout-main-v000", cap=(3, 2, 4)), "0 <= min <= desired <= max"),
        (request("checkout-main-v000", user_data="x" * 60000), "Azure allows 65535"),
    ]
    for req, message in cases:
        with pytest.raises(errors.ProviderError, match=message):
            azure.create_server_group(req)
    assert arm.counts == {}, "refused before any request"


def test_a_crash_between_create_and_enable_resumes_without_duplicates(make_azure: MakeAzure, net: ArmDouble) -> None:
    make_azure().create_server_group(request("checkout-main-v000"))
    again = make_azure()  # a fresh process after the crash
    sg = again.create_server_group(request("checkout-main-v000"))
    assert sg.name == "checkout-main-v000" and net.counts["vmss_put"] == 1, "found by name, not created again"
    again.enable(REGION, "checkout-main-v000")
    assert net.members("web") == ["checkout-main-v000/0", "checkout-main-v000/1"] and len(net.scale_sets) == 1


def test_a_lost_answer_to_the_put_is_not_a_duplicate(azure: AzureProvider, net: ArmDouble) -> None:
    real = net.on_vmss_put

    def put_then_fail(req, name):
        real(req, name)
        net.on_vmss_put = real  # type: ignore[method-assign]
        from tests.providers.azure.fake_arm import ArmError
        raise ArmError(503, "ServiceUnavailable", "the answer was lost")

    net.on_vmss_put = put_then_fail  # type: ignore[method-assign]
    sg = azure.create_server_group(request("checkout-main-v000"))
    assert sg.managed and len(net.scale_sets) == 1 and net.counts["vmss_put"] == 2


def test_an_interrupted_disable_is_finished_by_the_next_one(azure: AzureProvider, net: ArmDouble) -> None:
    azure.create_server_group(request("checkout-main-v000"))
    net.fail_next("vmss_upgrade", 403, code="AuthorizationFailed")  # the model changed, the instances did not
    with pytest.raises(errors.AccessDenied):
        azure.disable(REGION, "checkout-main-v000")
    assert net.members("web") == ["checkout-main-v000/0", "checkout-main-v000/1"]
    assert by_name(azure)["checkout-main-v000"].enabled, "listed as the instances are: still in traffic"
    assert net.scale_sets["checkout-main-v000"]["tags"]["reconciler:traffic"] == "pending"
    net.counts.clear()
    azure.disable(REGION, "checkout-main-v000")
    assert net.members("web") == [] and not by_name(azure)["checkout-main-v000"].enabled
    assert net.counts["vmss_upgrade"] == 1 and net.counts["vmss_patch"] == 1, "no second model change: the tag"
    assert net.scale_sets["checkout-main-v000"]["tags"]["reconciler:traffic"] == "disabled"


def test_a_name_taken_by_someone_else_is_a_conflict(azure: AzureProvider, net: ArmDouble) -> None:
    net.add_foreign_scale_set("checkout-main-v000")
    with pytest.raises(errors.Conflict, match="not this deployment's"):
        azure.create_server_group(request("checkout-main-v000"))
    azure.create_server_group(request("checkout-main-v001"))
    with pytest.raises(errors.Conflict, match="not this deployment's"):
        azure.create_server_group(request("checkout-main-v001", spec_hash="h9"))


def test_a_foreign_scale_set_is_listed_unmanaged_and_never_changed(azure: AzureProvider, arm: ArmDouble) -> None:
    arm.add_foreign_scale_set("legacy-v000")
    arm.add_foreign_scale_set("elsewhere-v000", location="North Europe")
    (g,) = azure.list_server_groups(REGION)
    assert not g.managed and g.enabled and g.launch.image == "Canonical:ubuntu:24_04-lts:latest"
    assert [x.name for x in azure.list_server_groups("northeurope")] == ["elsewhere-v000"]
    for call in (lambda: azure.enable(REGION, "legacy-v000"), lambda: azure.disable(REGION, "legacy-v000"),
                 lambda: azure.resize(REGION, "legacy-v000", model.Capacity(0, 0, 0)),
                 lambda: azure.destroy(REGION, "legacy-v000")):
        with pytest.raises(errors.Conflict, match="not managed by reconciler"):
            call()
    assert set(arm.counts) == {"token", "vmss_list", "vmss_get"}, "only reads reached the API"


def test_an_autoscale_setting_is_turned_off_on_disable_and_back_on_on_enable(azure: AzureProvider,
                                                                              net: ArmDouble) -> None:
    azure.create_server_group(request("checkout-main-v000", autoscaling=True))
    setting = net.autoscale["checkout-main-v000"]
    assert setting["properties"]["enabled"] is True
    assert setting["properties"]["targetResourceUri"] == net.scale_sets["checkout-main-v000"]["id"]
    assert setting["properties"]["profiles"][0]["capacity"] == {"minimum": "1", "maximum": "4", "default": "2"}
    assert dict(by_name(azure)["checkout-main-v000"].extra) == {"autoscaler": "checkout-main-v000"}
    azure.resize(REGION, "checkout-main-v000", model.Capacity(2, 3, 5))  # on: bounds only, the autoscaler sizes
    setting = net.autoscale["checkout-main-v000"]
    assert setting["properties"]["profiles"][0]["capacity"] == {"minimum": "2", "maximum": "5", "default": "2"}
    assert net.scale_sets["checkout-main-v000"]["sku"]["capacity"] == 2
    azure.disable(REGION, "checkout-main-v000")
    assert net.autoscale["checkout-main-v000"]["properties"]["enabled"] is False and net.members("web") == []
    azure.resize(REGION, "checkout-main-v000", model.Capacity(0, 0, 0))  # off: the size; a maximum of 0 is refused
    assert net.scale_sets["checkout-main-v000"]["sku"]["capacity"] == 0
    assert net.autoscale["checkout-main-v000"]["properties"]["profiles"][0]["capacity"]["maximum"] == "5"
    azure.resize(REGION, "checkout-main-v000", model.Capacity(2, 3, 5))
    azure.enable(REGION, "checkout-main-v000")
    assert net.autoscale["checkout-main-v000"]["properties"]["enabled"] is True
    assert net.members("web") == [f"checkout-main-v000/{i}" for i in range(3)]
    net.counts.clear()
    azure.create_server_group(request("checkout-main-v000", autoscaling=True))
    assert net.counts["as_put"] == 0, "found again after a crash: not made twice"
    azure.destroy(REGION, "checkout-main-v000")
    assert not net.autoscale and not net.scale_sets

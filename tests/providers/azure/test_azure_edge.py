"""The Azure provider's edge: paged bulk reads, throttling on the clock, permissions, operations, config."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from providers import base
from providers.azure import AzureProvider
from providers.base import ProviderContext
from reconciler.core import errors, model
from tests.providers.azure.conftest import MakeAzure, account
from tests.providers.azure.fake_arm import ArmDouble
from tests.providers.azure.test_azure_provider import REGION, request

DOC = Path(__file__).resolve().parents[3] / "docs" / "azure.md"


@pytest.fixture
def net(arm: ArmDouble) -> ArmDouble:
    arm.add_load_balancer("web")
    arm.add_nsg("web-nsg")
    return arm


def test_listing_pages_with_one_request_per_page(azure: AzureProvider, net: ArmDouble) -> None:
    azure.create_server_group(request("checkout-main-v000"))
    for i in range(249):
        net.add_foreign_scale_set(f"bulk{i:03d}-v000", location="westeurope" if i % 2 else "northeurope")
    net.page_size = 100
    net.counts.clear()
    azure.calls.clear()
    groups = azure.list_server_groups(REGION)
    assert len(groups) == 125 and sum(g.managed for g in groups) == 1
    assert net.counts == {"vmss_list": 3}, "250 scale sets in the resource group, 100 a page, no call per group"
    assert azure.calls == {"virtualMachineScaleSets.list": 3}


def test_health_pages_instances_and_reads_each_probing_rule_once(azure: AzureProvider, net: ArmDouble) -> None:
    azure.create_server_group(request("checkout-main-v000", cap=(0, 150, 200)))
    net.page_size = 100
    net.counts.clear()
    assert azure.health(REGION, "checkout-main-v000") == model.Health(healthy=150, desired=150, instances=150)
    assert net.counts == {"vmss_get": 1, "vms_list": 2, "lb_get": 1, "lb_health": 1, "op_result": 1}


def test_429_waits_for_retry_after_on_the_injected_clock(azure: AzureProvider, net: ArmDouble,
                                                          ctx: ProviderContext) -> None:
    net.fail_next("vmss_list", 429, retry_after="7")
    net.fail_next("vmss_put", 429, retry_after="3")
    net.fail_next("lb_get", 503)
    start = ctx.clock.now()
    azure.list_server_groups(REGION)
    assert ctx.clock.now() - start == 7.0, "Retry-After, not the backoff"
    azure.create_server_group(request("checkout-main-v000"))
    assert ctx.clock.now() - start == 7.0 + 3.0 + 1.0, "then 3 s, and 1 s of backoff for the 503"
    assert net.counts["vmss_put"] == 2 and len(net.scale_sets) == 1 and not net.faults
    assert azure.calls["virtualMachineScaleSets.createOrUpdate"] == 2


def test_throttling_that_never_ends_gives_up_with_the_call_account_and_region(make_azure: MakeAzure,
                                                                             arm: ArmDouble) -> None:
    azure = make_azure(max_attempts=3)
    arm.fail_next("vmss_list", 429, times=5, retry_after="1")
    with pytest.raises(errors.Throttled, match=r"azure/test/westeurope virtualMachineScaleSets.list: "
                                               r"TooManyRequests: HTTP 429 \(subscription sub-1, resource group "
                                               r"rg-apps\)"):
        azure.list_server_groups(REGION)
    assert arm.counts["vmss_list"] == 3


def test_a_missing_role_names_the_permission_and_the_role_and_is_not_retried(azure: AzureProvider,
                                                                             net: ArmDouble) -> None:
    net.deny("vmss_put")
    with pytest.raises(errors.AccessDenied) as info:
        azure.create_server_group(request("checkout-main-v000"))
    message = str(info.value)
    assert "virtualMachineScaleSets.createOrUpdate: AuthorizationFailed" in message
    assert "permission Microsoft.Compute/virtualMachineScaleSets/write (role Virtual Machine Contributor)" in message
    assert net.counts["vmss_put"] == 1
    net.deny("lb_get")
    with pytest.raises(errors.AccessDenied, match=r"Microsoft.Network/loadBalancers/read \(role Network "
                                                  r"Contributor\)"):
        azure.create_server_group(request("checkout-main-v001", spec_hash="h2"))
    net.denied.clear()
    net.deny("as_put")
    with pytest.raises(errors.AccessDenied, match=r"autoscaleSettings.createOrUpdate: .*Microsoft.Insights/"
                                                  r"autoscalesettings/write \(role Monitoring Contributor\)"):
        azure.create_server_group(request("checkout-main-v002", spec_hash="h3", autoscaling=True))


def test_operations_poll_on_the_clock_and_time_out_on_it(make_azure: MakeAzure, net: ArmDouble,
                                                         ctx: ProviderContext) -> None:
    azure = make_azure(operation_timeout=30)
    net.slow_ops = 3
    start = ctx.clock.now()
    azure.create_server_group(request("checkout-main-v000"))
    assert ctx.clock.now() - start == 3 * 2.0, "three polls answered InProgress with Retry-After: 2"
    assert net.counts["op_status"] == 4
    net.slow_ops = 100
    with pytest.raises(errors.Unavailable, match=r"virtualMachineScaleSets.delete: OperationTimeout: .* not "
                                                 r"finished after 30s"):
        azure.destroy(REGION, "checkout-main-v000")
    assert net.counts["vmss_delete"] == 1, "a timed-out operation is not started again by the provider"


def test_a_region_outside_the_account_is_refused(azure: AzureProvider, arm: ArmDouble) -> None:
    with pytest.raises(errors.ProviderError, match="region 'eastus' is not one of this account's regions"):
        azure.list_server_groups("eastus")
    assert arm.counts == {}


def test_bad_credentials_hide_only_that_account(arm: ArmDouble, ctx: ProviderContext,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "wrong")
    azure = AzureProvider.from_config("test", account(arm), ctx)
    with pytest.raises(errors.AccessDenied, match=r"azure/test/westeurope virtualMachineScaleSets.list: "
                                                  r".*credentials"):
        azure.list_server_groups(REGION)
    azure.close()


@pytest.mark.parametrize(("config", "field"), [
    ({"subscription": ""}, "subscription: required"),
    ({"resource_group": None}, "resource_group: required"),
    ({"subnet": "just-a-name"}, "subnet: a subnet resource ID or VNET/SUBNET"),
    ({"ssh_public_key": 3}, "ssh_public_key: required"),
    ({"regions": "westeurope"}, "regions: expected a list of names, e.g. [westeurope, northeurope]"),
    ({"max_attempts": 0}, "max_attempts: must be from 1 to 100"),
    ({"rate_limit": True}, "rate_limit: expected a number"),
    ({"health_extension": {"protocol": "udp", "port": 1}}, "health_extension: {protocol"),
    ({"endpoint": "http://127.0.0.1:1"}, "endpoint: an https:// URL"),
    ({"credentials": "password"}, "credentials: one of managed_identity, service_principal, cli"),
    ({"credentials": "service_principal"}, "credentials_file: required with credentials: service_principal"),
    ({"credentials_file": "/nonexistent.json"}, "credentials_file: cannot read"),
    ({"zone": "1"}, "zone: unknown field; allowed: admin_username"),
])
def test_config_errors_name_the_field(arm: ArmDouble, ctx: ProviderContext, config: dict[str, object],
                                      field: str) -> None:
    with pytest.raises(errors.ConfigError, match=re.escape(f"providers.azure.accounts.test.{field}")):
        AzureProvider.from_config("test", account(arm, **config), ctx)


def test_a_service_principal_file_is_checked_and_loaded(arm: ArmDouble, ctx: ProviderContext,
                                                        tmp_path: Path) -> None:
    creds = tmp_path / "sp.json"
    creds.write_text(json.dumps({"tenant_id": "t", "client_id": "c", "password": "p"}), encoding="utf-8")
    with pytest.raises(errors.ConfigError, match="must hold tenant_id, client_id and one of client_secret"):
        AzureProvider.from_config("test", account(arm, credentials_file=str(creds)), ctx)
    creds.write_text(json.dumps({"tenant_id": "t", "client_id": "c", "client_secret": "s"}), encoding="utf-8")
    provider = AzureProvider.from_config("test", account(arm, credentials_file=str(creds)), ctx)
    assert type(provider._credential).__name__ == "ClientSecretCredential"
    provider.close()
    cli = AzureProvider.from_config("test", account(arm, credentials="cli"), ctx)
    assert type(cli._credential).__name__ == "AzureCliCredential"
    cli.close()


def test_the_documented_account_settings_are_accepted(ctx: ProviderContext, tmp_path: Path) -> None:
    block = re.search(r"```yaml\n(providers:\n  azure:.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert block, "docs/azure.md shows an account configuration"
    accounts = yaml.safe_load(block.group(1))["providers"]["azure"]["accounts"]
    secret = tmp_path / "sp.json"
    secret.write_text(json.dumps({"tenant_id": "t", "client_id": "c", "client_secret": "s"}), encoding="utf-8")
    kinds = []
    for name, config in accounts.items():
        files = {"credentials_file": str(secret)} if "credentials_file" in config else {}
        provider = AzureProvider.from_config(name, {**config, **files}, ctx)
        kinds.append(type(provider._credential).__name__)
        provider.close()
    assert kinds == ["ManagedIdentityCredential", "ClientSecretCredential"]


def test_without_the_extra_the_registry_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "azure.mgmt.compute", None)
    for name in [m for m in sys.modules if m == "providers.azure" or m.startswith("providers.azure.")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(errors.ProviderMissing, match=r"pip install 'reconciler\[azure\]'"):
        base.load_provider_class("azure")


def test_the_double_rejects_fields_the_sdk_models_do_not_have(azure: AzureProvider, arm: ArmDouble) -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.mgmt.compute import models as cm

    body = cm.VirtualMachineScaleSet({"location": REGION, "sku": {"name": "Standard_B1s", "capacity": 1},
                                      "properties": {"upgradePolicy": {"mode": "Manual", "rollingUpgrade": {}}}})
    with pytest.raises(HttpResponseError, match=r"properties.upgradePolicy.rollingUpgrade: unknown field"):
        azure.compute.virtual_machine_scale_sets.begin_create_or_update(arm.group, "typo-v000", body).result()
    assert not arm.scale_sets

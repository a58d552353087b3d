"""GCP backend services, health checks and firewall rules, with the real client against the Compute double."""

from __future__ import annotations

import dataclasses
import json

import pytest

from providers.base import ResourceRequest
from providers.gcp import GcpProvider
from providers.gcp.resources import firewall_name
from reconciler.core import errors
from reconciler.core.resources import GLOBAL, Kind, LiveResource
from tests.providers.gcp.conftest import MakeGcp
from tests.providers.gcp.fake_compute import ComputeDouble
from tests.providers.gcp.test_gcp_provider import request

LB = {"protocol": "http", "port": "8080", "health_check.protocol": "http", "health_check.port": "8080",
      "health_check.path": "/health", "health_check.interval": "10s", "health_check.timeout": "5s",
      "health_check.healthy_threshold": "2", "health_check.unhealthy_threshold": "3"}
RULES = ("tcp 443 from 0.0.0.0/0", "tcp 8080-8081 from group checkout-lb", "icmp all from 10.0.0.0/8")


def lb(region: str = GLOBAL, spec_hash: str = "h1", **settings: str) -> ResourceRequest:
    return ResourceRequest(kind=Kind.LOAD_BALANCER, name="web", application="checkout", region=region,
                           settings=tuple(sorted({**LB, **settings}.items())), rules=(), spec_hash=spec_hash,
                           commit="c" * 40)


def sg(rules: tuple[str, ...] = RULES, spec_hash: str = "s1", name: str = "checkout") -> ResourceRequest:
    return ResourceRequest(kind=Kind.SECURITY_GROUP, name=name, application="checkout", region=GLOBAL,
                           settings=(("description", "checkout web servers"),), rules=tuple(sorted(rules)),
                           spec_hash=spec_hash, commit="c" * 40)


def live(gcp: GcpProvider, region: str = GLOBAL) -> dict[tuple[Kind, str], LiveResource]:
    return {(r.kind, r.name): r for r in gcp.list_resources(region)}


def test_a_global_balancer_is_a_backend_service_and_its_health_check(gcp: GcpProvider,
                                                                     compute: ComputeDouble) -> None:
    gcp.put_resource(lb())
    hc = compute.health_checks[(GLOBAL, "web")]
    assert (hc["type"], hc["httpHealthCheck"], hc["checkIntervalSec"]) == (
        "HTTP", {"port": 8080, "requestPath": "/health"}, 10)
    bs = compute.backend_service("web")
    assert bs["healthChecks"] == [hc["selfLink"]] and (bs["protocol"], bs["port"]) == ("HTTP", 8080)
    assert json.loads(bs["description"]) == {"managed-by": "reconciler", "application": "checkout",
                                             "spec-hash": "h1", "commit": "c" * 40}
    found = live(gcp)[(Kind.LOAD_BALANCER, "web")]
    assert found.managed and found.application == "checkout" and found.spec_hash == "h1"
    assert dict(found.settings) == LB, "what is read back is what was asked: no diff on the next pass"

    compute.counts.clear()
    gcp.put_resource(lb())
    assert not any(k.endswith(("_insert", "_patch")) for k in compute.counts), "idempotent"


def test_a_health_check_change_patches_it_in_place_and_keeps_the_backends(gcp: GcpProvider,
                                                                          compute: ComputeDouble) -> None:
    gcp.put_resource(lb())
    compute.backend_service("web")["backends"] = [{"group": "projects/p/regions/r/instanceGroups/g"}]
    gcp.put_resource(lb(spec_hash="h2", **{"health_check.path": "/ready"}))
    assert compute.health_checks[(GLOBAL, "web")]["httpHealthCheck"]["requestPath"] == "/ready"
    assert compute.counts["hc_patch"] == 1 and compute.counts["bs_patch"] == 1 and compute.counts["bs_insert"] == 1
    assert compute.backends_of("web") == ["g"], "a patch never drops the server groups"
    assert live(gcp)[(Kind.LOAD_BALANCER, "web")].spec_hash == "h2"


def test_a_regional_balancer_uses_the_regional_apis(gcp: GcpProvider, compute: ComputeDouble) -> None:
    gcp.put_resource(lb("europe-west1", **{"health_check.protocol": "tcp", "protocol": "tcp"}))
    assert ("europe-west1", "web") in compute.region_backend_services and "web" not in compute.backend_services
    assert "tcpHealthCheck" in compute.health_checks[("europe-west1", "web")]
    found = live(gcp, "europe-west1")
    assert set(found) == {(Kind.LOAD_BALANCER, "web")}
    assert "health_check.path" not in dict(found[(Kind.LOAD_BALANCER, "web")].settings)
    assert compute.counts["rbs_list"] == 1 and compute.counts["rhc_list"] == 1 and compute.counts["fw_list"] == 0
    gcp.destroy_resource("europe-west1", Kind.LOAD_BALANCER, "web")
    assert not compute.region_backend_services and not compute.health_checks


def test_a_security_group_is_one_firewall_rule_per_ingress_rule(gcp: GcpProvider, compute: ComputeDouble) -> None:
    gcp.put_resource(sg())
    fws = compute.firewalls_of("checkout")
    assert sorted(fws) == sorted(firewall_name("checkout", r) for r in RULES)
    web = fws[firewall_name("checkout", "tcp 443 from 0.0.0.0/0")]
    assert (web["allowed"], web["sourceRanges"], web["targetTags"], web["direction"]) == (
        [{"IPProtocol": "tcp", "ports": ["443"]}], ["0.0.0.0/0"], ["checkout"], "INGRESS")
    assert fws[firewall_name("checkout", "tcp 8080-8081 from group checkout-lb")]["sourceTags"] == ["checkout-lb"]
    assert fws[firewall_name("checkout", "icmp all from 10.0.0.0/8")]["allowed"] == [{"IPProtocol": "icmp"}]
    found = live(gcp)[(Kind.SECURITY_GROUP, "checkout")]
    assert found.managed and found.rules == tuple(sorted(RULES)) and found.spec_hash == "s1"
    assert dict(found.settings) == {"description": "checkout web servers"}

    narrower = ("tcp 443 from 0.0.0.0/0", "tcp 22 from 10.1.0.0/16")
    gcp.put_resource(sg(narrower, spec_hash="s2"))
    assert sorted(compute.firewalls_of("checkout")) == sorted(firewall_name("checkout", r) for r in narrower)
    assert live(gcp)[(Kind.SECURITY_GROUP, "checkout")].spec_hash == "s2"


def test_a_hand_edited_firewall_rule_is_read_as_it_is_and_patched_back(gcp: GcpProvider,
                                                                      compute: ComputeDouble) -> None:
    gcp.put_resource(sg())
    name = firewall_name("checkout", "tcp 443 from 0.0.0.0/0")
    compute.firewalls[name]["sourceRanges"] = ["0.0.0.0/0", "192.0.2.0/24"]
    assert "tcp 443 from 192.0.2.0/24" in live(gcp)[(Kind.SECURITY_GROUP, "checkout")].rules
    compute.counts.clear()
    gcp.put_resource(sg())
    assert compute.firewalls[name]["sourceRanges"] == ["0.0.0.0/0"]
    assert compute.counts["fw_patch"] == 1 and compute.counts["fw_insert"] == 0 and compute.counts["fw_delete"] == 0


def test_unowned_resources_are_reported_and_never_changed(gcp: GcpProvider, compute: ComputeDouble) -> None:
    compute.add_backend_service("web")
    compute.add_foreign_firewall("allow-ssh", ["bastion"])
    compute.add_foreign_firewall("checkout", ["checkout"])
    found = live(gcp)
    assert not found[(Kind.LOAD_BALANCER, "web")].managed
    ssh = found[(Kind.SECURITY_GROUP, "allow-ssh")]
    assert not ssh.managed and ssh.aliases == ("bastion",) and ssh.rules == ("tcp 22 from 0.0.0.0/0",)
    with pytest.raises(errors.Conflict, match=r"backendServices.patch: backend service web exists and is not managed"):
        gcp.put_resource(lb())
    with pytest.raises(errors.Conflict, match="firewall rule checkout exists and is not managed"):
        gcp.put_resource(sg())
    with pytest.raises(errors.Conflict, match="backend service web exists and is not managed"):
        gcp.destroy_resource(GLOBAL, Kind.LOAD_BALANCER, "web")
    assert "web" in compute.backend_services and (GLOBAL, "web") not in compute.health_checks
    assert set(compute.firewalls) == {"allow-ssh", "checkout"}


def test_destroy_refuses_a_backend_service_with_backends_then_removes_both(gcp: GcpProvider,
                                                                           compute: ComputeDouble) -> None:
    gcp.put_resource(lb())
    gcp.put_resource(sg())
    compute.backend_service("web")["backends"] = [{"group": "projects/p/regions/r/instanceGroups/g"}]
    with pytest.raises(errors.Conflict, match=r"backendServices.delete: backend service web still has 1 backend"):
        gcp.destroy_resource(GLOBAL, Kind.LOAD_BALANCER, "web")
    compute.backend_service("web")["backends"] = []
    gcp.destroy_resource(GLOBAL, Kind.LOAD_BALANCER, "web")
    gcp.destroy_resource(GLOBAL, Kind.SECURITY_GROUP, "checkout")
    assert not compute.backend_services and not compute.health_checks and not compute.firewalls
    gcp.destroy_resource(GLOBAL, Kind.LOAD_BALANCER, "web")  # gone: a no-op
    assert gcp.list_resources(GLOBAL) == []


def test_reads_are_paginated_bulk_lists(make_gcp: MakeGcp, compute: ComputeDouble) -> None:
    gcp = make_gcp()
    gcp.page_size = 100
    for i in range(120):
        gcp.put_resource(sg((f"tcp {1000 + i} from 10.0.0.0/8", f"tcp {2000 + i} from 10.0.0.0/8"), name=f"g{i}"))
    for i in range(3):
        compute.add_backend_service(f"bs{i}")
    compute.counts.clear()
    found = gcp.list_resources(GLOBAL)
    assert len(found) == 123
    assert compute.counts == {"bs_list": 1, "hc_list": 1, "fw_list": 3}, "240 firewall rules in 3 pages"


def test_errors_name_the_call_and_the_resource(gcp: GcpProvider, compute: ComputeDouble) -> None:
    compute.fail_next("hc_insert", 403, message="Required 'compute.healthChecks.create' permission")
    with pytest.raises(errors.AccessDenied, match=r"healthChecks.insert.*compute.healthChecks.create"):
        gcp.put_resource(lb())
    with pytest.raises(errors.ProviderError, match="security group empty: GCE keeps no empty firewall rules"):
        gcp.put_resource(sg((), name="empty"))
    compute.fail_next("fw_list", 503, times=2)
    gcp.put_resource(sg())  # retried
    assert gcp.calls["firewalls.list"] == 3


def test_a_group_joins_a_regional_backend_service_of_its_region(gcp: GcpProvider, compute: ComputeDouble) -> None:
    gcp.put_resource(dataclasses.replace(lb("europe-west1"), name="internal"))
    group = gcp.create_server_group(request("checkout-main-v000", lbs=("internal",)))
    assert group.enabled
    backends = compute.region_backend_services[("europe-west1", "internal")]["backends"]
    assert [b["group"].rsplit("/", 1)[-1] for b in backends] == ["checkout-main-v000"]
    compute.counts.clear()
    assert gcp.health("europe-west1", "checkout-main-v000").healthy == 2
    assert compute.counts["rbs_health"] == 1 and compute.counts["bs_health"] == 0
    gcp.disable("europe-west1", "checkout-main-v000")
    assert compute.region_backend_services[("europe-west1", "internal")]["backends"] == []
    assert compute.counts["rbs_update"] == 1, "the last backend leaves through update (a patch sends no empty list)"
    assert not {g.name: g for g in gcp.list_server_groups("europe-west1")}["checkout-main-v000"].enabled
    gcp.enable("europe-west1", "checkout-main-v000")
    gcp.destroy("europe-west1", "checkout-main-v000")
    gcp.destroy_resource("europe-west1", Kind.LOAD_BALANCER, "internal")
    assert not compute.region_backend_services

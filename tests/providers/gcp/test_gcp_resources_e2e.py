"""Declared backend services and firewall rules on GCP, end to end through the CLI against the Compute double."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from providers.gcp.resources import firewall_name
from tests.conftest import DesiredRepo, Env, app_spec, write_config
from tests.providers.gcp.fake_compute import ComputeDouble

REGIONS = ("europe-west1", "us-central1")
IMAGE = "projects/p/global/images/app-1"
USES = "load_balancers: [web]\nsecurity_groups: [checkout]\n"
DECLARED = """\
load_balancers:
  - name: web
    port: 8080
    health_check: {{path: {path}, interval: 10s}}
security_groups:
  - name: checkout
    ingress:
      - {{protocol: tcp, ports: 8080, cidr: 130.211.0.0/22}}
      - {{protocol: tcp, ports: 22, cidr: 35.235.240.0/20}}
"""
HTTPS_RULE = "tcp 8080 from 130.211.0.0/22"


def spec(*, path: str = "/health", declare: bool = True) -> str:
    cluster = app_spec("checkout", image=IMAGE, regions=REGIONS, provider="gcp", account="test", extra=USES)
    return cluster.replace("m5.large", "e2-medium") + (DECLARED.format(path=path) if declare else "")


@pytest.fixture
def env(tmp_path: Path, compute: ComputeDouble) -> Env:
    repo = DesiredRepo(tmp_path / "desired")
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "config.yaml", repo.path, state, prune=True, providers={"gcp": {"accounts": {
        "test": {"project": "test-project", "endpoint": compute.base, "regions": list(REGIONS), "rate_limit": 0}}}})
    repo.write("apps/keep.yaml", app_spec("keep", regions=("us-east-1",)))
    repo.write("apps/policies.yaml", "defaults: {mass_deletion: {max_share: 1.0}}\n")
    return Env(repo, cfg, state)


def _plan(env: Env) -> dict[str, Any]:
    res = env.cli("plan", "--format", "json")
    assert res.code in (0, 2), res.err
    return dict(json.loads(res.out))


def test_backend_service_and_firewall_rules_follow_the_spec_on_gcp(env: Env, compute: ComputeDouble) -> None:
    env.repo.write("apps/checkout.yaml", spec()).commit("v1")
    res = env.cli("apply", "--yes")
    assert res.code == 0, res.out + res.err
    progress = res.out[res.out.index("Plan: "):]
    assert progress.index("load balancer web global: create") < progress.index("create checkout-main-v000")
    assert progress.index("security group checkout global: create") < progress.index("create checkout-main-v000")
    assert sorted(compute.backends_of("web")) == ["checkout-main-v000", "checkout-main-v000"], "both regions"
    assert compute.health_checks[("global", "web")]["httpHealthCheck"] == {"port": 8080, "requestPath": "/health"}
    assert len(compute.firewalls_of("checkout")) == 2
    assert compute.templates[("europe-west1", "checkout-main-v000")]["properties"]["tags"]["items"] == ["checkout"]
    rows = {(r["kind"], r["name"]): r for r in env.status()["resources"]}
    web = rows[("load_balancer", "web")]
    assert web["region"] == "global" and web["managed"] and web["health"] == "healthy"
    assert sorted(g["server_group"] for g in web["server_groups"]) == ["checkout-main-v000"] * 2
    assert web["healthy"] == 4 and rows[("security_group", "checkout")]["health"] == "healthy"
    assert env.cli("plan").code == 0, "converged: what is read back is what was declared"

    # a health check change: patched in place, no server group replaced
    env.repo.write("apps/checkout.yaml", spec(path="/ready")).commit("v2")
    plan = _plan(env)
    assert [c["action"] for c in plan["changes"]] == []
    [change] = plan["resource_changes"]
    assert change["fields"] == [{"field": "health_check.path", "old": "/health", "new": "/ready"}]
    assert env.cli("apply", "--yes").code == 0
    assert compute.health_checks[("global", "web")]["httpHealthCheck"]["requestPath"] == "/ready"
    assert compute.counts["hc_insert"] == 1 and compute.counts["bs_insert"] == 1 and compute.counts["migs_insert"] == 2

    # hand edits: corrected on the next pass
    compute.health_checks[("global", "web")]["checkIntervalSec"] = 60
    compute.firewalls[firewall_name("checkout", HTTPS_RULE)]["sourceRanges"] = ["0.0.0.0/0"]
    plan = _plan(env)
    assert sorted(c["reason"].split(" was ")[0] for c in plan["resource_changes"]) == [
        "drift: load balancer web", "drift: security group checkout"]
    assert env.cli("apply", "--yes").code == 0
    assert compute.health_checks[("global", "web")]["checkIntervalSec"] == 10
    assert compute.firewalls[firewall_name("checkout", HTTPS_RULE)]["sourceRanges"] == ["130.211.0.0/22"]
    assert env.cli("plan").code == 0

    # no longer declared, still used: kept, naming the groups
    env.repo.write("apps/checkout.yaml", spec(declare=False)).commit("v3")
    plan = _plan(env)
    skipped = {s["name"]: s for s in plan["resource_skipped"]}
    assert skipped["web"]["kind"] == "in_use" and "checkout-main-v000" in skipped["web"]["reason"]
    assert env.cli("apply", "--yes").code == 0
    assert "web" in compute.backend_services and compute.firewalls_of("checkout")

    # the last cluster leaves: its groups go, then (in the same pass) what they used
    env.repo.remove("apps/checkout.yaml").commit("v4")
    assert env.cli("apply", "--yes").code == 0
    assert not compute.migs, "the groups are gone"
    assert "web" not in compute.backend_services and ("global", "web") not in compute.health_checks
    assert not compute.firewalls_of("checkout")
    assert env.cli("plan").code == 0


def test_the_gcp_example_in_the_docs_applies_and_converges(tmp_path: Path, compute: ComputeDouble) -> None:
    text = (Path(__file__).resolve().parents[3] / "docs" / "resources.md").read_text(encoding="utf-8")
    section = text[text.index("## On GCP"):]
    example = section[section.index("```yaml\n") + 8:section.index("```\n", section.index("```yaml\n") + 8)]
    repo = DesiredRepo(tmp_path / "desired")
    cfg = write_config(tmp_path / "config.yaml", repo.path, tmp_path / "state", providers={"gcp": {"accounts": {
        "prod": {"project": "test-project", "endpoint": compute.base, "regions": list(REGIONS), "rate_limit": 0}}}})
    env = Env(repo, cfg, tmp_path / "state")
    compute.add_foreign_firewall("batch-ssh", ["checkout-batch"])  # the tag a rule names, made elsewhere
    repo.write("apps/checkout.yaml", example).commit("example")
    res = env.cli("apply", "--yes")
    assert res.code == 0, res.out + res.err
    assert sorted(compute.backends_of("checkout-web")) == ["checkout-main-v000"] * 2
    assert ("europe-west1", "checkout-internal") in compute.region_backend_services
    assert "tcpHealthCheck" in compute.health_checks[("europe-west1", "checkout-internal")]
    assert len(compute.firewalls_of("checkout")) == 3
    assert env.cli("plan").code == 0


def test_validate_names_what_gcp_resources_cannot_be(env: Env) -> None:
    listener = "    listener: {load_balancer: shop, port: 443, priority: 1, path: /x}\n"
    regional = "  - name: checkout\n    regions: [europe-west1]\n    ingress:"
    bad = spec().replace("    port: 8080\n", "    port: 8080\n" + listener).replace(
        "  - name: checkout\n    ingress:", regional)
    bad += "  - name: empty\n    provider: gcp\n    account: test\n    regions: [global]\n"
    env.repo.write("apps/checkout.yaml", bad)
    env.repo.write("apps/local.yaml", app_spec("local", regions=("us-east-1",)) + (
        "load_balancers:\n  - name: web\n    provider: local\n    account: default\n"
        "    regions: [global, us-east-1]\n"))
    res = env.cli("validate", str(env.repo.path / "apps"))
    assert res.code == 1
    found = res.out.splitlines()
    assert any(line.endswith("load_balancers[0].listener: listener rules are made on AWS only; a GCE backend "
                             "service is reached through its URL map, made elsewhere") for line in found), found
    assert any("security_groups[0].regions: GCE firewall rules belong to the network" in line for line in found)
    assert any("security_groups[1].ingress: a GCE security group is its firewall rules" in line for line in found)
    assert any(line.startswith("apps/local.yaml:") and "load_balancers[0].regions: 'global' is a placement of its "
               "own, only on gcp" in line for line in found), found

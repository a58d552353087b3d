"""Target groups and security groups on moto's AWS: the provider's calls, then end to end through the CLI."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from providers import base
from providers.aws import AwsProvider
from reconciler.core import errors
from reconciler.core.resources import Kind
from tests.conftest import Env, app_spec, write_config
from tests.providers.aws.conftest import Cloud

ONE = ("us-east-1",)


def _request(kind: Kind, name: str, settings: Mapping[str, str] | None = None, *, rules: tuple[str, ...] = (),
             path: str = "/health", spec_hash: str = "h1") -> base.ResourceRequest:
    if kind is Kind.LOAD_BALANCER:
        values = {"protocol": "http", "port": "80", "health_check.protocol": "http", "health_check.port": "80",
                  "health_check.path": path, "health_check.interval": "30s", "health_check.timeout": "5s",
                  "health_check.healthy_threshold": "3", "health_check.unhealthy_threshold": "3", **(settings or {})}
    else:
        values = {"description": "web servers", **(settings or {})}
    return base.ResourceRequest(kind=kind, name=name, application="checkout", region="us-east-1",
                                settings=tuple(sorted(values.items())), rules=rules, spec_hash=spec_hash, commit="c1")


def _by_name(aws: AwsProvider) -> dict[tuple[Kind, str], Any]:
    return {(r.kind, r.name): r for r in aws.list_resources("us-east-1")}


def test_target_groups_and_security_groups_round_trip_with_group_references(aws: AwsProvider, cloud: Cloud) -> None:
    aws.put_resource(_request(Kind.SECURITY_GROUP, "checkout-lb", rules=("tcp 443 from 0.0.0.0/0",)))
    aws.put_resource(_request(Kind.SECURITY_GROUP, "checkout", rules=(
        "tcp 8080-8081 from group checkout-lb", "icmp all from 10.0.0.0/8")))
    aws.put_resource(_request(Kind.LOAD_BALANCER, "checkout-web"))
    found = _by_name(aws)
    web = found[(Kind.LOAD_BALANCER, "checkout-web")]
    assert web.managed and web.application == "checkout" and web.spec_hash == "h1"
    assert dict(web.settings) == dict(_request(Kind.LOAD_BALANCER, "x").settings), "read back as written"
    sg = found[(Kind.SECURITY_GROUP, "checkout")]
    assert sg.rules == ("icmp all from 10.0.0.0/8", "tcp 8080-8081 from group checkout-lb")
    assert not found[(Kind.SECURITY_GROUP, "default")].managed, "the VPC's default group is someone else's"

    aws.put_resource(_request(Kind.LOAD_BALANCER, "checkout-web", path="/ready", spec_hash="h2"))
    aws.put_resource(_request(Kind.SECURITY_GROUP, "checkout", rules=("tcp 8080-8081 from group checkout-lb",),
                              spec_hash="h2"))
    found = _by_name(aws)
    assert dict(found[(Kind.LOAD_BALANCER, "checkout-web")].settings)["health_check.path"] == "/ready"
    assert found[(Kind.SECURITY_GROUP, "checkout")].rules == ("tcp 8080-8081 from group checkout-lb",)
    assert found[(Kind.SECURITY_GROUP, "checkout")].spec_hash == "h2"

    aws.destroy_resource("us-east-1", Kind.LOAD_BALANCER, "checkout-web")
    aws.destroy_resource("us-east-1", Kind.LOAD_BALANCER, "checkout-web")  # gone: a no-op
    aws.destroy_resource("us-east-1", Kind.SECURITY_GROUP, "checkout")
    assert set(_by_name(aws)) == {(Kind.SECURITY_GROUP, "checkout-lb"), (Kind.SECURITY_GROUP, "default")}


def test_reads_are_bulk_whatever_the_number_of_resources(aws: AwsProvider, cloud: Cloud) -> None:
    for i in range(45):
        cloud.target_group(f"tg-{i:02d}")
    for i in range(30):
        cloud.client("ec2").create_security_group(GroupName=f"sg-{i:02d}", Description="x",
                                                  VpcId=cloud.default_vpc())
    aws.calls.clear()
    found = aws.list_resources("us-east-1")
    assert sum(1 for r in found if r.kind is Kind.LOAD_BALANCER) == 45
    assert sum(1 for r in found if r.kind is Kind.SECURITY_GROUP) == 31
    assert aws.calls["DescribeTags"] == 3, "one per 20 target groups"
    assert aws.calls["DescribeTargetGroups"] + aws.calls["DescribeSecurityGroups"] <= 4, dict(aws.calls)
    assert sum(aws.calls.values()) <= 7, dict(aws.calls)


def test_a_foreign_resource_is_never_changed_and_port_changes_are_refused(aws: AwsProvider, cloud: Cloud) -> None:
    cloud.target_group("legacy")
    with pytest.raises(errors.Conflict, match="not managed by reconciler"):
        aws.put_resource(_request(Kind.LOAD_BALANCER, "legacy"))
    with pytest.raises(errors.Conflict, match="not managed by reconciler"):
        aws.destroy_resource("us-east-1", Kind.LOAD_BALANCER, "legacy")
    aws.put_resource(_request(Kind.LOAD_BALANCER, "web"))
    with pytest.raises(errors.Conflict, match="port cannot change in place on AWS; declare the balancer under a new"):
        aws.put_resource(_request(Kind.LOAD_BALANCER, "web", {"port": "8080"}))


USES = "load_balancers: [web]\nsecurity_groups: [checkout]\n"
DECLARE = """\
load_balancers:
  - name: web
    health_check: {{path: {path}}}
    listener: {{load_balancer: shared, port: 80, priority: 10, path: /checkout/*}}
security_groups:
  - name: checkout-lb
    provider: aws
    account: test
    regions: [us-east-1]
    ingress:
      - {{protocol: tcp, ports: 443, cidr: 0.0.0.0/0}}
  - name: checkout
    ingress:
      - {{protocol: tcp, ports: 80, group: checkout-lb}}
"""


def _spec(*, image: str = "ami-12c6146b", path: str = "/health", uses: str = USES, declare: bool = True) -> str:
    text = app_spec(image=image, regions=ONE, provider="aws", account="test", extra=uses).replace("m5.large",
                                                                                                 "t3.micro")
    return text + (DECLARE.format(path=path) if declare else "")


def _plan(env: Env) -> dict[str, Any]:
    res = env.cli("plan", "--format", "json")
    assert res.code in (0, 2), res.err
    return dict(json.loads(res.out))


def test_resources_on_aws_through_the_cli(env: Env, cloud: Cloud) -> None:
    write_config(env.config, env.repo.path, env.state_dir, prune=True, providers={"aws": {"accounts": {
        "test": {"endpoint_url": cloud.endpoint, "regions": list(ONE), "rate_limit": 0}}}})
    env.repo.write("apps/policies.yaml", "defaults: {mass_deletion: {max_share: 1.0}}\n")
    env.repo.write("apps/checkout.yaml", _spec()).commit("v1")
    listener = _shared_alb(cloud)
    res = env.cli("apply", "--yes")
    assert res.code == 0, res.out + res.err
    assert _rules(cloud, listener) == [("10", [("path-pattern", ["/checkout/*"])])], "the listener rule"
    elbv2, ec2 = cloud.client("elbv2"), cloud.client("ec2")
    [tg] = elbv2.describe_target_groups(Names=["web"])["TargetGroups"]
    assert tg["HealthCheckPath"] == "/health"
    asg = cloud.asg("checkout-main-v000")
    assert asg is not None and asg["TargetGroupARNs"] == [tg["TargetGroupArn"]], "created with it, attached"
    groups = {g["GroupName"]: g for g in ec2.describe_security_groups()["SecurityGroups"]}
    [perm] = groups["checkout"]["IpPermissions"]
    assert perm["UserIdGroupPairs"][0]["GroupId"] == groups["checkout-lb"]["GroupId"], "a rule naming a group"
    status = {(r["kind"], r["name"]): r for r in env.status()["resources"]}
    assert status[("load_balancer", "web")]["server_groups"][0]["server_group"] == "checkout-main-v000"
    assert env.cli("plan").code == 0

    env.repo.write("apps/checkout.yaml", _spec(path="/ready")).commit("health check")
    [change] = _plan(env)["resource_changes"]
    assert change["fields"] == [{"field": "health_check.path", "old": "/health", "new": "/ready"}]
    assert env.cli("apply", "--yes").code == 0
    assert elbv2.describe_target_groups(Names=["web"])["TargetGroups"][0]["HealthCheckPath"] == "/ready"

    ec2.authorize_security_group_ingress(GroupId=groups["checkout"]["GroupId"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    [drift] = _plan(env)["resource_changes"]
    assert drift["reason"].startswith("drift: security group checkout") and drift["rules_removed"] == [
        "tcp 22 from 0.0.0.0/0"]
    assert env.cli("apply", "--yes").code == 0
    perms = ec2.describe_security_groups(GroupIds=[groups["checkout"]["GroupId"]])["SecurityGroups"][0]
    assert [p["FromPort"] for p in perms["IpPermissions"]] == [80], "the hand-made rule is gone"

    env.repo.write("apps/checkout.yaml", _spec(image="ami-1e749f67", uses="", declare=False)).commit("v2")
    assert env.cli("apply", "--yes").code == 0
    kept = {s["name"]: s["reason"] for s in _plan(env)["resource_skipped"]}
    assert "used by checkout-main-v000" in kept["web"] and "used by checkout-main-v000" in kept["checkout"]
    assert "security group checkout" in kept["checkout-lb"], "named by checkout's rule"
    env.repo.write("apps/checkout.yaml", _spec(image="ami-12c6146b", uses="", declare=False)).commit("v3")
    plan = _plan(env)  # retiring v000 frees them: destroyed after it, in the same pass
    assert sorted((c["name"], c["after"]) for c in plan["resource_changes"]) == [
        ("checkout", ["aws/test/us-east-1/checkout-main"]), ("web", ["aws/test/us-east-1/checkout-main"])]
    assert env.cli("apply", "--yes").code == 0
    assert [tg["TargetGroupName"] for tg in elbv2.describe_target_groups()["TargetGroups"]] == ["fallback"]
    assert _rules(cloud, listener) == []
    assert [c["name"] for c in _plan(env)["resource_changes"]] == ["checkout-lb"]
    assert env.cli("apply", "--yes").code == 0  # checkout-lb, once checkout's rule naming it is gone
    names = {g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]}
    assert names == {"default"}


def _shared_alb(cloud: Cloud) -> str:
    ec2, elb = cloud.client("ec2"), cloud.client("elbv2")
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
    lb = elb.create_load_balancer(Name="shared", Subnets=subnets, Type="application")["LoadBalancers"][0]
    default = cloud.target_group("fallback")
    listener = elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80,
                                   DefaultActions=[{"Type": "forward", "TargetGroupArn": default}])
    return str(listener["Listeners"][0]["ListenerArn"])


def _rules(cloud: Cloud, listener: str) -> list[tuple[str, list[Any]]]:
    rules = cloud.client("elbv2").describe_rules(ListenerArn=listener)["Rules"]
    return [(r["Priority"], [(c["Field"], c["Values"]) for c in r["Conditions"]]) for r in rules
            if r["Priority"] != "default"]


def test_a_listener_rule_on_a_shared_balancer_follows_the_spec(aws: AwsProvider, cloud: Cloud) -> None:
    listener = _shared_alb(cloud)
    rule = {"listener.load_balancer": "shared", "listener.port": "80", "listener.priority": "10",
            "listener.path": "/checkout/*"}
    aws.put_resource(_request(Kind.LOAD_BALANCER, "web", rule))
    assert _rules(cloud, listener) == [("10", [("path-pattern", ["/checkout/*"])])]
    web = _by_name(aws)[(Kind.LOAD_BALANCER, "web")]
    assert {k: v for k, v in web.settings if k.startswith("listener.")} == rule, "read back as written"
    aws.put_resource(_request(Kind.LOAD_BALANCER, "web", {**rule, "listener.priority": "20",
                                                          "listener.host": "shop.example.com"}))
    assert _rules(cloud, listener) == [("20", [("path-pattern", ["/checkout/*"]),
                                              ("host-header", ["shop.example.com"])])]
    aws.calls.clear()
    aws.list_resources("us-east-1")
    assert aws.calls["DescribeListeners"] == 1 and aws.calls["DescribeRules"] == 1, dict(aws.calls)
    aws.destroy_resource("us-east-1", Kind.LOAD_BALANCER, "web")
    assert _rules(cloud, listener) == [], "the rule went first: AWS refuses to delete a target group in use"
    assert (Kind.LOAD_BALANCER, "web") not in _by_name(aws)

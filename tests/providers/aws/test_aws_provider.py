"""The AWS provider against moto's server: red/black by provider calls, ownership, counts, faults, config."""

from __future__ import annotations

import botocore.awsrequest
import pytest

from providers.aws import AwsProvider
from providers.base import CreateRequest, ProviderContext
from reconciler import clock as clock_mod
from reconciler import errors, model

REGION = "us-east-1"


def request(name: str, *, image: str = "ami-12c6146b", lbs: tuple[str, ...] = ("web",), desired: int = 2,
            spec_hash: str = "h1") -> CreateRequest:
    return CreateRequest(
        name=name, application="checkout", cluster="checkout-main", region=REGION,
        launch=model.LaunchSpec(image=image, instance_type="t3.micro", user_data="#!/bin/sh\necho hi\n",
                                load_balancers=lbs, tags=(("team", "payments"),)),
        capacity=model.Capacity(1, desired, 4), spec_hash=spec_hash, commit="c" * 40,
    )


def by_name(aws: AwsProvider) -> dict[str, model.ServerGroup]:
    return {g.name: g for g in aws.list_server_groups(REGION)}


def test_create_is_owned_attached_healthy_and_idempotent(aws: AwsProvider, cloud) -> None:
    cloud.target_group("web")
    sg = aws.create_server_group(request("checkout-main-v000"))
    assert sg.managed and sg.spec_hash == "h1" and sg.launch.image == "ami-12c6146b"
    again = aws.create_server_group(request("checkout-main-v000"))
    assert again.name == sg.name
    assert cloud.launch_templates() == ["checkout-main-v000"], "one launch template, even after a retried create"
    listed = by_name(aws)["checkout-main-v000"]
    assert listed.enabled, "attached at creation: the target group health-checks its targets"
    assert listed.healthy == 2 and aws.health(REGION, "checkout-main-v000").satisfies(100)
    tags = {t["Key"]: t["Value"] for t in cloud.asg("checkout-main-v000")["Tags"]}
    assert tags["managed-by"] == "reconciler" and tags["cluster"] == "checkout-main" and tags["team"] == "payments"


def test_a_full_red_black_by_provider_calls(aws: AwsProvider, cloud) -> None:
    arn = cloud.target_group("web")
    aws.create_server_group(request("checkout-main-v000"))
    aws.create_server_group(request("checkout-main-v001", image="ami-1e749f67", spec_hash="h2"))
    assert aws.health(REGION, "checkout-main-v001").satisfies(100)
    aws.enable(REGION, "checkout-main-v001")
    aws.disable(REGION, "checkout-main-v000")
    groups = by_name(aws)
    assert groups["checkout-main-v001"].enabled and not groups["checkout-main-v000"].enabled
    old = cloud.asg("checkout-main-v000")
    assert old["TargetGroupARNs"] == []
    assert {p["ProcessName"] for p in old["SuspendedProcesses"]} >= {"AddToLoadBalancer", "AlarmNotification"}
    targets = cloud.client("elbv2").describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
    old_ids = {i["InstanceId"] for i in old["Instances"]}
    assert not old_ids & {t["Target"]["Id"] for t in targets}, "detached instances are deregistered"
    aws.resize(REGION, "checkout-main-v000", model.Capacity(0, 0, 0))
    assert cloud.asg("checkout-main-v000")["DesiredCapacity"] == 0
    aws.disable(REGION, "checkout-main-v000")  # idempotent
    aws.destroy(REGION, "checkout-main-v000")
    assert cloud.asg("checkout-main-v000") is None
    assert cloud.launch_templates() == ["checkout-main-v001"]
    aws.destroy(REGION, "checkout-main-v000")  # gone: a no-op


def test_a_group_without_target_groups_is_out_of_service_until_enabled(aws: AwsProvider, cloud) -> None:
    aws.create_server_group(request("checkout-main-v000", lbs=()))
    assert not by_name(aws)["checkout-main-v000"].enabled
    assert aws.health(REGION, "checkout-main-v000").healthy == 2, "health from the ASG alone"
    aws.enable(REGION, "checkout-main-v000")
    assert by_name(aws)["checkout-main-v000"].enabled


def test_foreign_groups_are_listed_unmanaged_and_never_changed(aws: AwsProvider, cloud) -> None:
    cloud.foreign_asg("legacy-v000")
    (g,) = aws.list_server_groups(REGION)
    assert not g.managed
    for call in (lambda: aws.disable(REGION, "legacy-v000"),
                 lambda: aws.resize(REGION, "legacy-v000", model.Capacity(0, 0, 0)),
                 lambda: aws.destroy(REGION, "legacy-v000")):
        with pytest.raises(errors.Conflict, match="not managed by reconciler"):
            call()
    assert cloud.asg("legacy-v000")["DesiredCapacity"] == 1


def test_unhealthy_instances_are_counted(aws: AwsProvider, cloud) -> None:
    aws.create_server_group(request("checkout-main-v000", lbs=()))
    inst = cloud.asg("checkout-main-v000")["Instances"][0]["InstanceId"]
    cloud.client("autoscaling").set_instance_health(InstanceId=inst, HealthStatus="Unhealthy")
    assert aws.health(REGION, "checkout-main-v000").healthy == 1


def test_listing_250_groups_is_a_handful_of_paginated_calls(aws: AwsProvider, cloud) -> None:
    cloud.target_group("web")
    asg = cloud.client("autoscaling")
    ec2 = cloud.client("ec2")
    ec2.create_launch_template(LaunchTemplateName="bulk", LaunchTemplateData={"ImageId": "ami-12c6146b",
                                                                             "InstanceType": "t3.micro"})
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    for i in range(250):
        asg.create_auto_scaling_group(
            AutoScalingGroupName=f"bulk-v{i:03d}", LaunchTemplate={"LaunchTemplateName": "bulk"}, MinSize=0,
            MaxSize=0, DesiredCapacity=0, VPCZoneIdentifier=subnet,
            Tags=[{"Key": "managed-by", "Value": "reconciler"}, {"Key": "cluster", "Value": "bulk"}])
    aws.calls.clear()
    groups = aws.list_server_groups(REGION)
    assert len(groups) == 250
    assert aws.calls["DescribeAutoScalingGroups"] == 5, "pages of 50; never one call per group"
    assert sum(aws.calls.values()) == 5


def test_throttling_and_5xx_are_retried_without_duplicates(aws: AwsProvider, cloud) -> None:
    cloud.target_group("web")
    failures = {"CreateAutoScalingGroup": 1, "CreateLaunchTemplate": 1, "DescribeAutoScalingGroups": 2}

    def inject(request: botocore.awsrequest.AWSPreparedRequest, event_name: str = "", **_: object):
        operation_name = event_name.rsplit(".", 1)[-1]
        if failures.get(operation_name, 0) > 0:
            failures[operation_name] -= 1
            status = 503 if operation_name == "CreateLaunchTemplate" else 400
            body = (b"<ErrorResponse><Error><Code>Throttling</Code><Message>Rate exceeded</Message></Error>"
                    b"</ErrorResponse>") if status == 400 else b"<Error><Code>ServiceUnavailable</Code></Error>"
            return botocore.awsrequest.AWSResponse(request.url, status, {}, _Raw(body))
        return None

    for service in ("autoscaling", "ec2"):
        aws._client(service, REGION).meta.events.register("before-send", inject)
    aws.create_server_group(request("checkout-main-v000"))
    assert all(v == 0 for v in failures.values())
    assert cloud.launch_templates() == ["checkout-main-v000"]
    assert [g.name for g in aws.list_server_groups(REGION)] == ["checkout-main-v000"]


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: object):  # type: ignore[no-untyped-def]
        yield self.body

    def read(self, *_: object) -> bytes:
        return self.body


def test_errors_name_the_code_call_account_and_region(aws: AwsProvider) -> None:
    with pytest.raises(errors.NotFound) as info:
        aws.enable(REGION, "checkout-main-v042")
    assert "aws/test/us-east-1" in str(info.value)
    with pytest.raises(errors.ProviderError, match="not one of this account's regions"):
        aws.list_server_groups("us-eats-1")


def test_bad_account_config_is_a_clear_error_for_that_account_only(tmp_path, cloud) -> None:
    ctx = ProviderContext(state_url="sqlite://", state_dir=tmp_path, clock=clock_mod.FakeClock())
    with pytest.raises(errors.ProviderError, match="profile 'nope' not found"):
        AwsProvider.from_config("bad", {"profile": "nope"}, ctx)
    with pytest.raises(errors.ConfigError, match=r"providers\.aws\.accounts\.bad\.colour"):
        AwsProvider.from_config("bad", {"colour": "red"}, ctx)
    down = AwsProvider.from_config("down", {"endpoint_url": "http://127.0.0.1:9", "max_attempts": 1}, ctx)
    with pytest.raises(errors.Unavailable, match="aws/down/us-east-1"):
        down.list_server_groups(REGION)
    good = AwsProvider.from_config("good", {"endpoint_url": cloud.endpoint}, ctx)
    assert good.list_server_groups(REGION) == []
    down.close()
    good.close()


def test_role_arn_assumes_the_role_lazily_and_works(cloud, tmp_path) -> None:
    iam = cloud.client("iam")
    role = iam.create_role(RoleName="reconciler", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    ctx = ProviderContext(state_url="sqlite://", state_dir=tmp_path, clock=clock_mod.FakeClock())
    provider = AwsProvider.from_config("assumed", {"endpoint_url": cloud.endpoint, "role_arn": role}, ctx)
    try:
        assert provider.list_server_groups(REGION) == []
        creds = provider.session.get_credentials().get_frozen_credentials()
        assert creds.access_key != "testing", "the assumed role's credentials are used"
    finally:
        provider.close()

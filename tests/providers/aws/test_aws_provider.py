"""The AWS provider against moto's server: red/black by provider calls, ownership, counts, faults, config."""

from __future__ import annotations

import base64
import dataclasses
import math

import pytest

from providers.aws import DISABLE_PROCESSES, AwsProvider
from providers.base import CreateRequest, ProviderContext
from reconciler.core import clock as clock_mod
from reconciler.core import errors, model
from tests.providers.aws.conftest import IMAGE, Cloud, inject_faults

REGION = "us-east-1"


def request(name: str, *, image: str = IMAGE, lbs: tuple[str, ...] = ("web",), desired: int = 2,
            spec_hash: str = "h1", security_groups: tuple[str, ...] = ()) -> CreateRequest:
    return CreateRequest(
        name=name, application="checkout", cluster="checkout-main", region=REGION,
        launch=model.LaunchSpec(image=image, instance_type="t3.micro", user_data="#!/bin/sh\necho hi\n",
                                load_balancers=lbs, security_groups=security_groups, tags=(("team", "payments"),)),
        capacity=model.Capacity(1, desired, 4), spec_hash=spec_hash, commit="c" * 40,
    )


def by_name(aws: AwsProvider) -> dict[str, model.ServerGroup]:
    return {g.name: g for g in aws.list_server_groups(REGION)}


# ---------------------------------------------------------------------------- create


def test_a_created_group_is_owned_attached_and_healthy(aws: AwsProvider, cloud: Cloud) -> None:
    arn = cloud.target_group("web")
    sg = aws.create_server_group(request("checkout-main-v000"))
    assert sg.managed and sg.spec_hash == "h1" and sg.launch.image == IMAGE
    listed = by_name(aws)["checkout-main-v000"]
    assert listed.enabled, "attached at creation: the target group health-checks its targets"
    assert listed.launch.load_balancers == ("web",) and listed.launch.instance_type == "t3.micro"
    assert listed.launch.tags == (("team", "payments"),) and listed.commit == "c" * 40
    assert listed.healthy == 2 and aws.health(REGION, "checkout-main-v000") == model.Health(2, 2, 2)
    asg = cloud.asg("checkout-main-v000")
    assert asg is not None and asg["TargetGroupARNs"] == [arn]
    assert {i["InstanceId"] for i in asg["Instances"]} == cloud.healthy_targets(arn)
    tags = {t["Key"]: (t["Value"], t["PropagateAtLaunch"]) for t in asg["Tags"]}
    assert tags["managed-by"] == ("reconciler", True) and tags["cluster"] == ("checkout-main", True)
    assert tags["team"] == ("payments", True) and tags["reconciler:image"] == (IMAGE, False)
    assert sorted(asg["VPCZoneIdentifier"].split(",")) == sorted(
        s["SubnetId"] for s in cloud.client("ec2").describe_subnets(
            Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]), "the default VPC's subnets"


def test_the_launch_template_carries_image_type_user_data_and_security_groups(aws: AwsProvider,
                                                                              cloud: Cloud) -> None:
    ec2 = cloud.client("ec2")
    by_id = ec2.create_security_group(GroupName="ssh", Description="ssh", VpcId=cloud.default_vpc())["GroupId"]
    by_name_id = ec2.create_security_group(GroupName="checkout", Description="web",
                                           VpcId=cloud.default_vpc())["GroupId"]
    aws.calls.clear()
    aws.create_server_group(request("checkout-main-v000", lbs=(), security_groups=("checkout", by_id)))
    assert aws.calls["DescribeSecurityGroups"] == 1, "names resolved with one call"
    version = ec2.describe_launch_template_versions(LaunchTemplateName="checkout-main-v000")[
        "LaunchTemplateVersions"][0]["LaunchTemplateData"]
    assert version["ImageId"] == IMAGE and version["InstanceType"] == "t3.micro"
    assert base64.b64decode(version["UserData"]).decode() == "#!/bin/sh\necho hi\n"
    assert version["SecurityGroupIds"] == [by_name_id, by_id]
    with pytest.raises(errors.NotFound, match=r"DescribeSecurityGroups: security group\(s\) nope not found"):
        aws.create_server_group(request("checkout-main-v001", lbs=(), security_groups=("nope",), spec_hash="h2"))
    with pytest.raises(errors.NotFound, match=r"DescribeTargetGroups: .*target group\(s\) missing-tg"):
        aws.create_server_group(request("checkout-main-v001", lbs=("missing-tg",), spec_hash="h2"))
    assert cloud.asg("checkout-main-v001") is None


def test_create_twice_makes_one_group_and_one_launch_template(aws: AwsProvider, cloud: Cloud) -> None:
    cloud.target_group("web")
    first = aws.create_server_group(request("checkout-main-v000"))
    aws.calls.clear()
    again = aws.create_server_group(request("checkout-main-v000"))
    assert again.name == first.name and again.spec_hash == first.spec_hash
    assert aws.calls == {"DescribeAutoScalingGroups": 1}, "found by name and tags, nothing created"
    assert cloud.launch_templates() == ["checkout-main-v000"] and list(cloud.asgs()) == ["checkout-main-v000"]


def test_a_crash_between_template_and_group_is_finished_by_the_rerun(aws: AwsProvider, cloud: Cloud) -> None:
    cloud.target_group("web")
    inject_faults(aws, "autoscaling", REGION,
                  lambda op: (403, "AccessDenied") if op == "CreateAutoScalingGroup" else None)
    with pytest.raises(errors.AccessDenied, match="autoscaling:CreateAutoScalingGroup"):
        aws.create_server_group(request("checkout-main-v000"))
    assert cloud.launch_templates() == ["checkout-main-v000"] and cloud.asgs() == {}
    aws.close()  # the process died; a new one reruns the step
    aws.create_server_group(request("checkout-main-v000"))
    assert cloud.launch_templates() == ["checkout-main-v000"] and list(cloud.asgs()) == ["checkout-main-v000"]


def test_a_template_left_by_an_abandoned_attempt_of_another_spec_is_replaced(aws: AwsProvider,
                                                                              cloud: Cloud) -> None:
    cloud.target_group("web")
    inject_faults(aws, "autoscaling", REGION,
                  lambda op: (400, "ValidationError") if op == "CreateAutoScalingGroup" else None)
    with pytest.raises(errors.ProviderError):
        aws.create_server_group(request("checkout-main-v000", image="ami-bad00000", spec_hash="old"))
    aws.close()
    aws.create_server_group(request("checkout-main-v000", spec_hash="new"))
    data = cloud.client("ec2").describe_launch_template_versions(LaunchTemplateName="checkout-main-v000")[
        "LaunchTemplateVersions"]
    assert [v["LaunchTemplateData"]["ImageId"] for v in data] == [IMAGE], "the new spec's image, one version"


def test_a_foreign_launch_template_or_group_of_the_same_name_is_refused(aws: AwsProvider, cloud: Cloud) -> None:
    cloud.client("ec2").create_launch_template(LaunchTemplateName="checkout-main-v000",
                                               LaunchTemplateData={"ImageId": IMAGE})
    with pytest.raises(errors.Conflict, match="launch template checkout-main-v000 exists without the managed-by"):
        aws.create_server_group(request("checkout-main-v000", lbs=()))
    cloud.foreign_asg("checkout-main-v001")
    with pytest.raises(errors.Conflict, match="made by someone else"):
        aws.create_server_group(request("checkout-main-v001", lbs=()))
    aws.create_server_group(request("checkout-main-v002", lbs=()))
    with pytest.raises(errors.Conflict, match="made by another spec"):
        aws.create_server_group(request("checkout-main-v002", lbs=(), spec_hash="other"))


def test_impossible_capacity_and_oversized_tags_fail_before_any_call(aws: AwsProvider) -> None:
    aws.calls.clear()
    bad = request("checkout-main-v000")
    with pytest.raises(errors.ProviderError, match=r"min \(1\) <= desired \(2\) <= max \(0\)"):
        aws.create_server_group(dataclasses.replace(bad, capacity=model.Capacity(1, 2, 0)))
    many = model.LaunchSpec(image=IMAGE, instance_type="t3.micro", tags=tuple((f"k{i}", "v") for i in range(45)))
    with pytest.raises(errors.ProviderError, match="at most 50"):
        aws.create_server_group(dataclasses.replace(bad, launch=many))
    with pytest.raises(errors.ProviderError, match=r"UpdateAutoScalingGroup: capacity must satisfy .*min \(3\)"):
        aws.resize(REGION, "checkout-main-v000", model.Capacity(3, 1, 2))
    assert aws.calls == {}


# ---------------------------------------------------------------------------- red/black


def test_a_full_red_black_by_provider_calls(aws: AwsProvider, cloud: Cloud) -> None:
    arn = cloud.target_group("web")
    aws.create_server_group(request("checkout-main-v000"))
    aws.create_server_group(request("checkout-main-v001", image="ami-1e749f67", spec_hash="h2"))
    assert aws.health(REGION, "checkout-main-v001").satisfies(100)
    aws.enable(REGION, "checkout-main-v001")
    aws.disable(REGION, "checkout-main-v000")
    groups = by_name(aws)
    assert groups["checkout-main-v001"].enabled and not groups["checkout-main-v000"].enabled
    old = cloud.asg("checkout-main-v000")
    assert old is not None and old["TargetGroupARNs"] == []
    assert {p["ProcessName"] for p in old["SuspendedProcesses"]} == set(DISABLE_PROCESSES), \
        "Launch and Terminate keep running so the disabled group can scale down"
    new_ids = {i["InstanceId"] for i in cloud.asg("checkout-main-v001")["Instances"]}  # type: ignore[index]
    assert cloud.healthy_targets(arn) == new_ids, "detached instances are deregistered"
    aws.resize(REGION, "checkout-main-v000", model.Capacity(0, 0, 0))
    assert cloud.asg("checkout-main-v000")["Instances"] == []  # type: ignore[index]
    aws.calls.clear()
    aws.disable(REGION, "checkout-main-v000")  # already disabled
    aws.resize(REGION, "checkout-main-v000", model.Capacity(0, 0, 0))  # already that size
    assert aws.calls == {"DescribeAutoScalingGroups": 2}, "no-ops make no mutating call"
    aws.destroy(REGION, "checkout-main-v000")
    assert cloud.asg("checkout-main-v000") is None
    assert cloud.launch_templates() == ["checkout-main-v001"]
    aws.destroy(REGION, "checkout-main-v000")  # gone: a no-op
    assert [g.name for g in aws.list_server_groups(REGION)] == ["checkout-main-v001"]


def test_rollback_reenables_a_disabled_group(aws: AwsProvider, cloud: Cloud) -> None:
    arn = cloud.target_group("web")
    aws.create_server_group(request("checkout-main-v000"))
    aws.disable(REGION, "checkout-main-v000")
    assert not by_name(aws)["checkout-main-v000"].enabled and cloud.healthy_targets(arn) == set()
    aws.enable(REGION, "checkout-main-v000")
    g = by_name(aws)["checkout-main-v000"]
    assert g.enabled and g.healthy == 2
    assert cloud.asg("checkout-main-v000")["SuspendedProcesses"] == []  # type: ignore[index]


def test_a_group_without_target_groups_is_out_of_service_until_enabled(aws: AwsProvider) -> None:
    aws.create_server_group(request("checkout-main-v000", lbs=()))
    assert not by_name(aws)["checkout-main-v000"].enabled
    assert aws.health(REGION, "checkout-main-v000").healthy == 2, "health from the ASG alone"
    aws.enable(REGION, "checkout-main-v000")
    assert by_name(aws)["checkout-main-v000"].enabled


def test_foreign_groups_are_listed_unmanaged_and_never_changed(aws: AwsProvider, cloud: Cloud) -> None:
    cloud.foreign_asg("legacy-v000")
    (g,) = aws.list_server_groups(REGION)
    assert not g.managed and g.cluster == "legacy" and g.launch.tags == (("team", "other"),)
    for name, call in (("enable", lambda: aws.enable(REGION, "legacy-v000")),
                       ("disable", lambda: aws.disable(REGION, "legacy-v000")),
                       ("resize", lambda: aws.resize(REGION, "legacy-v000", model.Capacity(0, 0, 0))),
                       ("destroy", lambda: aws.destroy(REGION, "legacy-v000"))):
        with pytest.raises(errors.Conflict, match=f"not managed by reconciler; refusing to {name}"):
            call()
    after = cloud.asg("legacy-v000")
    assert after is not None and after["DesiredCapacity"] == 1 and after["SuspendedProcesses"] == []
    assert cloud.launch_templates() == ["legacy-v000"]


# ---------------------------------------------------------------------------- health and reads


def test_unhealthy_instances_are_counted(aws: AwsProvider, cloud: Cloud) -> None:
    arn = cloud.target_group("web")
    aws.create_server_group(request("checkout-main-v000", desired=3))
    ids = [i["InstanceId"] for i in cloud.asg("checkout-main-v000")["Instances"]]  # type: ignore[index]
    cloud.client("autoscaling").set_instance_health(InstanceId=ids[0], HealthStatus="Unhealthy")
    assert aws.health(REGION, "checkout-main-v000") == model.Health(2, 3, 3)
    cloud.client("elbv2").deregister_targets(TargetGroupArn=arn, Targets=[{"Id": ids[1]}])
    assert aws.health(REGION, "checkout-main-v000") == model.Health(1, 3, 3), "healthy in every target group"
    assert by_name(aws)["checkout-main-v000"].healthy == 1


def test_listing_250_groups_is_a_handful_of_paginated_calls(aws: AwsProvider, cloud: Cloud) -> None:
    arns = [cloud.target_group("web"), cloud.target_group("api")]
    asg = cloud.client("autoscaling")
    ec2 = cloud.client("ec2")
    ec2.create_launch_template(LaunchTemplateName="bulk", LaunchTemplateData={"ImageId": IMAGE,
                                                                             "InstanceType": "t3.micro"})
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    for i in range(250):
        asg.create_auto_scaling_group(
            AutoScalingGroupName=f"bulk{i // 10}-v{i % 10:03d}", LaunchTemplate={"LaunchTemplateName": "bulk"},
            MinSize=0, MaxSize=0, DesiredCapacity=0, VPCZoneIdentifier=subnet, TargetGroupARNs=[arns[i % 2]],
            Tags=[{"Key": "managed-by", "Value": "reconciler"}] if i % 3 else [])
    aws.calls.clear()
    groups = aws.list_server_groups(REGION)
    assert len(groups) == 250 and sum(g.managed for g in groups) == 166
    assert aws.calls == {"DescribeAutoScalingGroups": math.ceil(250 / 100), "DescribeTargetHealth": len(arns)}, \
        "pages of 100 (the API's largest) plus one health read per target group in use; never a call per group"


# ---------------------------------------------------------------------------- faults, limits, errors


def test_throttling_and_5xx_are_retried_on_the_clock_without_duplicates(
        aws: AwsProvider, cloud: Cloud, clock: clock_mod.FakeClock) -> None:
    cloud.target_group("web")
    failures = {"CreateAutoScalingGroup": [(400, "Throttling"), (503, "ServiceUnavailable")],
                "CreateLaunchTemplate": [(503, "Unavailable")],
                "DescribeAutoScalingGroups": [(400, "Throttling")],
                "DescribeTargetHealth": [(500, "InternalFailure")]}

    def fault(op: str) -> tuple[int, str] | None:
        return failures[op].pop(0) if failures.get(op) else None

    for service in ("autoscaling", "ec2", "elbv2"):
        inject_faults(aws, service, REGION, fault, deliver=True)  # each failed call took effect; its answer is lost
    start = clock.now()
    aws.create_server_group(request("checkout-main-v000"))
    assert [g.name for g in aws.list_server_groups(REGION)] == ["checkout-main-v000"]
    assert all(not left for left in failures.values())
    assert aws.attempts["CreateAutoScalingGroup"] == 3 and aws.calls["CreateAutoScalingGroup"] == 1
    assert clock.now() > start, "back-off waited on the injected clock, not the wall clock"
    assert cloud.launch_templates() == ["checkout-main-v000"] and list(cloud.asgs()) == ["checkout-main-v000"]


def test_retries_give_up_with_a_retryable_error_naming_call_account_and_region(aws: AwsProvider) -> None:
    inject_faults(aws, "autoscaling", REGION, lambda op: (400, "Throttling"))
    with pytest.raises(errors.Throttled) as info:
        aws.list_server_groups(REGION)
    assert str(info.value).startswith("aws/test/us-east-1 DescribeAutoScalingGroups: Throttling:")
    assert info.value.retryable and aws.attempts["DescribeAutoScalingGroups"] == 3


def test_access_denied_names_the_permission_and_is_not_retried(aws: AwsProvider) -> None:
    inject_faults(aws, "ec2", REGION, lambda op: (403, "UnauthorizedOperation"))
    with pytest.raises(errors.AccessDenied, match=r"the credentials need ec2:CreateLaunchTemplate") as info:
        aws.create_server_group(request("checkout-main-v000", lbs=()))
    assert not info.value.retryable and aws.attempts["CreateLaunchTemplate"] == 1


def test_the_rate_limit_waits_on_the_clock_per_region(cloud: Cloud, context: ProviderContext,
                                                      clock: clock_mod.FakeClock) -> None:
    provider = AwsProvider.from_config("limited", {"endpoint_url": cloud.endpoint, "rate_limit": 2}, context)
    try:
        start = clock.now()
        for _ in range(6):
            provider.list_server_groups(REGION)
        assert clock.now() - start == pytest.approx(2.0), "2 in the bucket, then 4 more at 2 per second"
        provider.list_server_groups("eu-west-1")
        assert clock.now() - start == pytest.approx(2.0), "another region has its own bucket"
    finally:
        provider.close()


def test_subnets_from_config_or_a_tag(cloud: Cloud, context: ProviderContext) -> None:
    ec2 = cloud.client("ec2")
    subnets = sorted(s["SubnetId"] for s in ec2.describe_subnets()["Subnets"])
    ec2.create_tags(Resources=[subnets[1]], Tags=[{"Key": "reconciler", "Value": "yes"}])
    for config, want in (({"subnets": {REGION: subnets[:2]}}, subnets[:2]),
                         ({"subnet_tag": "reconciler"}, [subnets[1]])):
        provider = AwsProvider.from_config("acct", {"endpoint_url": cloud.endpoint, **config}, context)
        name = f"checkout-main-v00{len(want)}"
        provider.create_server_group(request(name, lbs=()))
        provider.close()
        assert cloud.asg(name)["VPCZoneIdentifier"].split(",") == want  # type: ignore[index]
    provider = AwsProvider.from_config("acct", {"endpoint_url": cloud.endpoint, "subnet_tag": "nothing"}, context)
    with pytest.raises(errors.ProviderError, match=r"no subnets found with the tag 'nothing'.*acct\.subnets"):
        provider.create_server_group(request("checkout-main-v009", lbs=()))
    provider.close()


def test_errors_name_the_code_call_account_and_region(aws: AwsProvider) -> None:
    with pytest.raises(errors.NotFound, match="aws/test/us-east-1 enable: Auto Scaling group checkout-main-v042"):
        aws.enable(REGION, "checkout-main-v042")
    with pytest.raises(errors.NotFound, match="aws/test/us-east-1 DescribeAutoScalingGroups"):
        aws.health(REGION, "checkout-main-v042")
    with pytest.raises(errors.ProviderError, match="region 'ap-south-1' is not one of this account's regions"):
        aws.list_server_groups("ap-south-1")


def test_bad_account_config_is_a_clear_error_for_that_account_only(cloud: Cloud, context: ProviderContext) -> None:
    with pytest.raises(errors.ProviderError, match=r"aws/bad: ProfileNotFound: AWS profile 'nope' not found"):
        AwsProvider.from_config("bad", {"profile": "nope"}, context)
    typo = AwsProvider.from_config("typo", {"endpoint_url": cloud.endpoint}, context)
    with pytest.raises(errors.ProviderError, match=r"aws/typo/us-eats-1: UnknownRegion: .*did you mean 'us-east-1'"):
        typo.list_server_groups("us-eats-1")
    assert typo.attempts == {}, "caught before any request"
    down = AwsProvider.from_config("down", {"endpoint_url": "http://127.0.0.1:9", "max_attempts": 2}, context)
    with pytest.raises(errors.Unavailable, match="aws/down/us-east-1 DescribeAutoScalingGroups"):
        down.list_server_groups(REGION)
    good = AwsProvider.from_config("good", {"endpoint_url": cloud.endpoint}, context)
    assert good.list_server_groups(REGION) == [] and typo.list_server_groups(REGION) == []
    for p in (typo, down, good):
        p.close()


@pytest.mark.parametrize(("config", "field"), [
    ({"colour": "red"}, "colour"), ({"retry_mode": "legacy"}, "retry_mode"), ({"regions": "us-east-1"}, "regions"),
    ({"max_attempts": "five"}, "max_attempts"), ({"rate_limit": True}, "rate_limit"),
    ({"subnets": {"us-east-1": "subnet-1"}}, "subnets"),
])
def test_config_errors_name_the_field(config: dict[str, object], field: str, context: ProviderContext) -> None:
    with pytest.raises(errors.ConfigError, match=rf"providers\.aws\.accounts\.bad\.{field}"):
        AwsProvider.from_config("bad", config, context)


def test_role_arn_assumes_the_role_lazily_and_works(cloud: Cloud, context: ProviderContext) -> None:
    iam = cloud.client("iam")
    role = iam.create_role(RoleName="reconciler", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    provider = AwsProvider.from_config("assumed", {"endpoint_url": cloud.endpoint, "role_arn": role}, context)
    try:
        assert provider.attempts == {}, "building the provider made no call"
        assert provider.list_server_groups(REGION) == []
        creds = provider.session.get_credentials()
        assert creds is not None and creds.get_frozen_credentials().access_key != "testing", \
            "the assumed role's credentials are used"
    finally:
        provider.close()

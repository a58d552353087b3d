"""End to end through the CLI: a Git repo deploying to moto's AWS, red/black in two regions."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import Env, app_spec, write_config
from tests.providers.aws.conftest import Cloud

REGIONS = ("us-east-1", "eu-west-1")


def _spec(image: str = "ami-12c6146b", itype: str = "t3.micro", account: str = "test", name: str = "checkout") -> str:
    return app_spec(name, image=image, regions=REGIONS, provider="aws", account=account,
                    extra="load_balancers: [web]\n").replace("m5.large", itype)


def _groups(cloud: Cloud, region: str) -> dict[str, dict[str, Any]]:
    return cloud.asgs(region)


def test_red_black_on_aws_through_the_cli(env: Env, cloud: Cloud) -> None:
    write_config(env.config, env.repo.path, env.state_dir, providers={"aws": {"accounts": {
        "test": {"endpoint_url": cloud.endpoint, "regions": list(REGIONS), "rate_limit": 0},
        "broken": {"endpoint_url": "http://127.0.0.1:9", "regions": list(REGIONS), "max_attempts": 1}}}})
    arns = {region: cloud.target_group("web", region) for region in REGIONS}
    cloud.foreign_asg("legacy-web-v000", "us-east-1")

    env.repo.write("apps/checkout.yaml", _spec()).write("apps/cart.yaml", _spec(name="cart", account="broken"))
    env.repo.commit("v1")
    res = env.cli("apply", "--yes")
    assert "live state unreadable" in res.out and "aws/broken" in res.out, "the broken account is named"
    for region in REGIONS:
        g = _groups(cloud, region)["checkout-main-v000"]
        assert g["TargetGroupARNs"] and g["DesiredCapacity"] == 2

    env.repo.write("apps/checkout.yaml", _spec(image="ami-1e749f67")).commit("v2")
    res = env.cli("apply", "--yes")
    assert "create checkout-main-v001" in res.out, res.out + res.err
    for region in REGIONS:
        groups = _groups(cloud, region)
        assert groups["checkout-main-v001"]["TargetGroupARNs"]
        serving = {i["InstanceId"] for i in groups["checkout-main-v001"]["Instances"]}
        assert cloud.healthy_targets(arns[region], region) == serving, "only v001 takes traffic"
        old = groups["checkout-main-v000"]
        assert old["TargetGroupARNs"] == [] and old["DesiredCapacity"] == 0

    env.repo.write("apps/checkout.yaml", _spec(image="ami-1e749f67", itype="t3.small")).commit("v3")
    env.cli("apply", "--yes")
    east = _groups(cloud, "us-east-1")
    assert "checkout-main-v000" not in east, "destroyed beyond keep_disabled=1"
    assert "checkout-main-v002" in east
    for region in REGIONS:
        assert "checkout-main-v000" not in cloud.launch_templates(region), "its launch template went with it"
    assert "legacy-web-v000" in cloud.launch_templates("us-east-1")
    assert east["legacy-web-v000"]["DesiredCapacity"] == 1 and not any(
        t["Key"] == "managed-by" for t in east["legacy-web-v000"]["Tags"]), "the foreign group is untouched"

    env.repo.write("apps/checkout.yaml", _spec(image="ami-1e749f67")).commit("revert v3")
    plan = json.loads(env.cli("plan", "--format", "json").out)
    assert {c["action"] for c in plan["changes"] if c["application"] == "checkout"} == {"rollback"}
    env.cli("apply", "--yes")
    east = _groups(cloud, "us-east-1")
    assert east["checkout-main-v001"]["TargetGroupARNs"] and east["checkout-main-v001"]["DesiredCapacity"] == 2
    assert east["checkout-main-v002"]["TargetGroupARNs"] == []
    assert not east["legacy-web-v000"]["SuspendedProcesses"]
    status = env.status()
    assert "aws/broken/us-east-1" in status["unreadable"]

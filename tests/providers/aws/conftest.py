"""moto in server mode on 127.0.0.1: boto3 talks real HTTP to it. Reset between tests."""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from providers.aws import AwsProvider
from providers.base import ProviderContext
from reconciler import clock as clock_mod

REGIONS = ("us-east-1", "eu-west-1")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@dataclass
class Cloud:
    endpoint: str
    clients: dict = field(default_factory=dict)

    def client(self, service: str, region: str = "us-east-1"):  # type: ignore[no-untyped-def]
        key = (service, region)
        if key not in self.clients:
            self.clients[key] = boto3.client(service, region_name=region, endpoint_url=self.endpoint)
        return self.clients[key]

    def close(self) -> None:
        for c in self.clients.values():
            c.close()

    def target_group(self, name: str, region: str = "us-east-1") -> str:
        vpc = self.client("ec2", region).describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])
        tg = self.client("elbv2", region).create_target_group(
            Name=name, Protocol="HTTP", Port=80, VpcId=vpc["Vpcs"][0]["VpcId"], TargetType="instance")
        return str(tg["TargetGroups"][0]["TargetGroupArn"])

    def foreign_asg(self, name: str, region: str = "us-east-1") -> None:
        ec2 = self.client("ec2", region)
        ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData={
            "ImageId": "ami-12c6146b", "InstanceType": "t3.micro"})
        subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]]
        self.client("autoscaling", region).create_auto_scaling_group(
            AutoScalingGroupName=name, LaunchTemplate={"LaunchTemplateName": name}, MinSize=1, MaxSize=1,
            DesiredCapacity=1, VPCZoneIdentifier=subnets[0], Tags=[{"Key": "team", "Value": "other"}])

    def asg(self, name: str, region: str = "us-east-1") -> dict | None:
        groups = self.client("autoscaling", region).describe_auto_scaling_groups(AutoScalingGroupNames=[name])
        return groups["AutoScalingGroups"][0] if groups["AutoScalingGroups"] else None

    def launch_templates(self, region: str = "us-east-1") -> list[str]:
        return sorted(t["LaunchTemplateName"] for t in
                      self.client("ec2", region).describe_launch_templates()["LaunchTemplates"])


@pytest.fixture
def cloud(moto_endpoint: str) -> Iterator[Cloud]:
    req = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(req) as r:
        r.read()
    c = Cloud(moto_endpoint)
    yield c
    c.close()


@pytest.fixture
def aws(cloud: Cloud, tmp_path: Path) -> Iterator[AwsProvider]:
    ctx = ProviderContext(state_url=f"sqlite:///{tmp_path / 's.db'}", state_dir=tmp_path, clock=clock_mod.FakeClock())
    provider = AwsProvider.from_config("test", {"endpoint_url": cloud.endpoint, "regions": list(REGIONS),
                                                "rate_limit": 0, "max_attempts": 3}, ctx)
    yield provider
    provider.close()

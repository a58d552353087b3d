"""moto in server mode on 127.0.0.1: boto3 talks real HTTP to it. Reset between tests."""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.awsrequest
import botocore.httpsession
import pytest
from moto.server import ThreadedMotoServer

from providers.aws import AwsProvider
from providers.base import ProviderContext
from reconciler.core import clock as clock_mod
from tests.conftest import provider_context

REGIONS = ("us-east-1", "eu-west-1")
IMAGE = "ami-12c6146b"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
                       "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials")}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@dataclass
class Cloud:
    """Direct boto3 clients on the moto server: the test's own view of the cloud, set up and checked."""

    endpoint: str
    clients: dict[tuple[str, str], Any] = field(default_factory=dict)

    def client(self, service: str, region: str = "us-east-1") -> Any:
        key = (service, region)
        if key not in self.clients:
            make: Any = boto3.client
            self.clients[key] = make(service, region_name=region, endpoint_url=self.endpoint)
        return self.clients[key]

    def close(self) -> None:
        for c in self.clients.values():
            c.close()

    def default_vpc(self, region: str = "us-east-1") -> str:
        vpcs = self.client("ec2", region).describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])
        return str(vpcs["Vpcs"][0]["VpcId"])

    def target_group(self, name: str, region: str = "us-east-1") -> str:
        tg = self.client("elbv2", region).create_target_group(
            Name=name, Protocol="HTTP", Port=80, VpcId=self.default_vpc(region), TargetType="instance")
        return str(tg["TargetGroups"][0]["TargetGroupArn"])

    def foreign_asg(self, name: str, region: str = "us-east-1") -> None:
        ec2 = self.client("ec2", region)
        ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData={
            "ImageId": IMAGE, "InstanceType": "t3.micro"})
        subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]]
        self.client("autoscaling", region).create_auto_scaling_group(
            AutoScalingGroupName=name, LaunchTemplate={"LaunchTemplateName": name}, MinSize=1, MaxSize=1,
            DesiredCapacity=1, VPCZoneIdentifier=subnets[0], Tags=[{"Key": "team", "Value": "other"}])

    def asg(self, name: str, region: str = "us-east-1") -> dict[str, Any] | None:
        groups = self.client("autoscaling", region).describe_auto_scaling_groups(AutoScalingGroupNames=[name])
        return groups["AutoScalingGroups"][0] if groups["AutoScalingGroups"] else None

    def asgs(self, region: str = "us-east-1") -> dict[str, dict[str, Any]]:
        pages = self.client("autoscaling", region).get_paginator("describe_auto_scaling_groups").paginate()
        return {g["AutoScalingGroupName"]: g for page in pages for g in page["AutoScalingGroups"]}

    def launch_templates(self, region: str = "us-east-1") -> list[str]:
        return sorted(t["LaunchTemplateName"] for t in
                      self.client("ec2", region).describe_launch_templates()["LaunchTemplates"])

    def healthy_targets(self, arn: str, region: str = "us-east-1") -> set[str]:
        descs = self.client("elbv2", region).describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
        return {d["Target"]["Id"] for d in descs if d["TargetHealth"]["State"] == "healthy"}


@pytest.fixture
def cloud(moto_endpoint: str) -> Iterator[Cloud]:
    req = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(req) as r:
        r.read()
    c = Cloud(moto_endpoint)
    yield c
    c.close()


@pytest.fixture
def clock() -> clock_mod.FakeClock:
    return clock_mod.FakeClock()


@pytest.fixture
def context(tmp_path: Path, clock: clock_mod.FakeClock) -> ProviderContext:
    return provider_context(f"sqlite:///{tmp_path / 's.db'}", tmp_path, clock)


@pytest.fixture
def aws(cloud: Cloud, context: ProviderContext) -> Iterator[AwsProvider]:
    provider = AwsProvider.from_config("test", {"endpoint_url": cloud.endpoint, "regions": list(REGIONS),
                                                "rate_limit": 0, "max_attempts": 3}, context)
    yield provider
    provider.close()


# ---------------------------------------------------------------------------- fault injection

Fault = Callable[[str], "tuple[int, str] | None"]


def inject_faults(provider: AwsProvider, service: str, region: str, fault: Fault, *, deliver: bool = False) -> None:
    """A botocore ``before-send`` hook: ``fault(operation)`` -> (HTTP status, AWS error code) or None.

    With ``deliver`` the request still reaches moto first, so the call took effect and only its
    response is lost (the crash-after-the-call case every create must survive).
    """
    http = botocore.httpsession.URLLib3Session()

    def hook(request: botocore.awsrequest.AWSPreparedRequest, event_name: str = "",
             **_: Any) -> botocore.awsrequest.AWSResponse | None:
        failure = fault(event_name.rsplit(".", 1)[-1])
        if failure is None:
            return None
        if deliver:
            http.send(request)
        status, code = failure
        error = f"<Error><Code>{code}</Code><Message>injected {code}</Message></Error>"
        body = (f"<Response><Errors>{error}</Errors><RequestID>x</RequestID></Response>" if service == "ec2"
                else f"<ErrorResponse>{error}<RequestId>x</RequestId></ErrorResponse>").encode()
        return botocore.awsrequest.AWSResponse(request.url, status, botocore.awsrequest.HTTPHeaders(), _Raw(body))

    provider.edge.client(service, region).meta.events.register("before-send", hook)


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: object) -> Iterator[bytes]:
        yield self.body

    def read(self, *_: object) -> bytes:
        return self.body

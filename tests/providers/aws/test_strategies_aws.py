"""Highlander and rolling red/black on AWS (moto, server mode) through the CLI.

A sampler reads the Auto Scaling groups throughout each apply: the serving capacity (desired instances of
groups attached to the target group) never drops below the spec's desired capacity.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3

from tests.conftest import Env, app_spec, write_config
from tests.providers.aws.conftest import Cloud

REGION = "us-east-1"


class Serving(threading.Thread):
    def __init__(self, endpoint: str) -> None:
        super().__init__(daemon=True)
        self.client = boto3.client("autoscaling", region_name=REGION, endpoint_url=endpoint)
        self.stop = threading.Event()
        self.timeline: list[int] = []

    def run(self) -> None:
        while not self.stop.is_set():
            groups = self.client.describe_auto_scaling_groups()["AutoScalingGroups"]
            ours = [g for g in groups if g["AutoScalingGroupName"].startswith("checkout-main-")]
            if ours:
                self.timeline.append(sum(g["DesiredCapacity"] for g in ours if g["TargetGroupARNs"]))

    def __enter__(self) -> Serving:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join()
        self.client.close()


def _spec(image: str, extra: str = "", desired: int = 4) -> str:
    return app_spec(image=image, regions=(REGION,), provider="aws", account="test", desired=desired,
                    extra="load_balancers: [web]\n" + extra).replace("m5.large", "t3.micro")


def _setup(env: Env, cloud: Cloud) -> None:
    write_config(env.config, env.repo.path, env.state_dir, providers={"aws": {"accounts": {
        "test": {"endpoint_url": cloud.endpoint, "regions": [REGION], "rate_limit": 0}}}})
    cloud.target_group("web", REGION)
    env.repo.write("apps/checkout.yaml", _spec("ami-12c6146b")).commit("v1")
    res = env.cli("apply", "--yes")
    assert res.code == 0, res.out + res.err


def _ours(cloud: Cloud) -> dict[str, dict[str, Any]]:
    return {n: g for n, g in cloud.asgs(REGION).items() if n.startswith("checkout-main-")}


def test_rolling_red_black_on_aws_grows_and_shrinks_without_dropping_below_the_desired_capacity(
        env: Env, cloud: Cloud) -> None:
    _setup(env, cloud)
    env.repo.write("apps/checkout.yaml", _spec("ami-1e749f67", "strategy: {type: rolling_red_black, steps: "
                                                               "[25, 50, 100]}\n")).commit("v2 rolling")
    with Serving(cloud.endpoint) as serving:
        res = env.cli("apply", "--yes")
    assert res.code == 0, res.out + res.err
    assert serving.timeline and min(serving.timeline) >= 4, serving.timeline
    assert max(serving.timeline) <= 8
    groups = _ours(cloud)
    assert groups["checkout-main-v001"]["DesiredCapacity"] == 4 and groups["checkout-main-v001"]["TargetGroupARNs"]
    old = groups["checkout-main-v000"]
    assert old["DesiredCapacity"] == 0 and old["TargetGroupARNs"] == []
    assert env.cli("plan").code == 0


def test_highlander_on_aws_destroys_the_older_groups_once_the_new_one_serves(env: Env, cloud: Cloud) -> None:
    _setup(env, cloud)
    env.repo.write("apps/checkout.yaml", _spec("ami-1e749f67")).commit("v2 red/black")
    assert env.cli("apply", "--yes").code == 0
    env.repo.write("apps/checkout.yaml", _spec("ami-2e749f67", "strategy: {type: highlander}\n")).commit("v3")
    with Serving(cloud.endpoint) as serving:
        res = env.cli("apply", "--yes")
    assert res.code == 0, res.out + res.err
    assert serving.timeline and min(serving.timeline) >= 4, serving.timeline
    assert list(_ours(cloud)) == ["checkout-main-v002"]
    assert not any(t.startswith(("checkout-main-v000", "checkout-main-v001")) for t in cloud.launch_templates(REGION))
    assert env.cli("plan").code == 0

"""Images by pattern on AWS (moto server): AMIs registered per region, resolved per region, one region missing."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pygit2

from providers.aws import AwsProvider
from reconciler.core import images
from tests.conftest import DesiredRepo, Env, run_cli, write_config
from tests.providers.aws.conftest import REGIONS, Cloud

SPEC = textwrap.dedent("""\
    application: checkout
    owner: team@example.com
    version: "{version}"
    clusters:
      - stack: main
        provider: aws
        account: test
        regions: [us-east-1, eu-west-1]
        image: {{name: "checkout-{{version}}-*", newest: true, tags: {{baked-by: ci}}}}
        instance_type: t3.micro
        capacity: {{min: 1, desired: 1, max: 2}}
        health: {{healthy_percent: 100, timeout: 5s}}
    """)


def _register(cloud: Cloud, region: str, name: str, tags: dict[str, str] | None = None) -> str:
    ec2 = cloud.client("ec2", region)
    ami = str(ec2.register_image(Name=name, RootDeviceName="/dev/sda1")["ImageId"])
    ec2.create_tags(Resources=[ami], Tags=[{"Key": k, "Value": v} for k, v in (tags or {"baked-by": "ci"}).items()])
    return ami


def _image_of(cloud: Cloud, region: str, group: str) -> str:
    lt = cloud.client("ec2", region).describe_launch_template_versions(LaunchTemplateName=group)
    return str(lt["LaunchTemplateVersions"][0]["LaunchTemplateData"]["ImageId"])


def test_find_images_filters_by_name_tags_and_owner_in_one_call_per_region(aws: AwsProvider, cloud: Cloud) -> None:
    wanted = _register(cloud, "us-east-1", "checkout-1.4.2-a")
    _register(cloud, "us-east-1", "checkout-1.4.2-b", {"baked-by": "someone-else"})
    _register(cloud, "us-east-1", "cart-1.4.2-a")
    pattern = images.ImagePattern(name="checkout-1.4.2-*", tags=(("baked-by", "ci"),))
    found = aws.find_images("us-east-1", pattern)
    assert [i.id for i in found] == [wanted]
    assert found[0].name == "checkout-1.4.2-a" and found[0].created > 0
    assert images.choose(pattern, found).image == found[0]
    assert aws.find_images("eu-west-1", pattern) == []
    assert aws.calls["DescribeImages"] == 2


def test_a_region_without_the_image_is_held_and_the_other_deploys(env: Env, cloud: Cloud) -> None:
    write_config(env.config, env.repo.path, env.state_dir, providers={"aws": {"accounts": {
        "test": {"endpoint_url": cloud.endpoint, "regions": list(REGIONS), "rate_limit": 0}}}})
    _register(cloud, "us-east-1", "checkout-1.4.2-a")
    east = _register(cloud, "us-east-1", "checkout-1.4.2-b")  # same second: the name breaks the tie
    env.repo.write("apps/checkout.yaml", SPEC.format(version="1.4.2")).commit("checkout 1.4.2")

    res = env.cli("plan", "--format", "json")
    assert res.code == 1, "a spec problem: the exit says so, and the rest is planned"
    plan = json.loads(res.out)
    (change,) = plan["changes"]
    assert change["region"] == "us-east-1" and change["desired"]["image"] == east
    assert change["image_resolution"] == {
        "pattern": {"name": "checkout-1.4.2-*", "newest": True, "tags": {"baked-by": "ci"}},
        "image": east, "name": "checkout-1.4.2-b", "created": change["image_resolution"]["created"]}
    (problem,) = plan["problems"]
    assert problem["file"] == "apps/checkout.yaml" and problem["line"] == 9
    assert problem["field"] == "clusters[0].image"
    assert problem["message"].startswith("aws/test/eu-west-1: no image matches name checkout-1.4.2-*")
    assert "held in eu-west-1" in problem["message"]

    res = env.cli("apply", "--yes")
    assert "apps/checkout.yaml:9: clusters[0].image: aws/test/eu-west-1" in res.out
    assert _image_of(cloud, "us-east-1", "checkout-main-v000") == east
    assert cloud.asgs("eu-west-1") == {}, "nothing is created where the image does not resolve"
    status = env.status()
    assert any("eu-west-1" in p for p in status["problems"])

    west = _register(cloud, "eu-west-1", "checkout-1.4.2-a")  # the bake reached the second region
    env.cli("apply", "--yes")
    assert _image_of(cloud, "eu-west-1", "checkout-main-v000") == west
    assert env.status()["problems"] == []
    assert json.loads(env.cli("plan", "--format", "json").out)["changes"] == [], "each region keeps its image"


def test_promote_refuses_a_version_whose_image_does_not_resolve(tmp_path: Path, cloud: Cloud) -> None:
    for region in REGIONS:
        _register(cloud, region, "checkout-1.4.2-a")
    _register(cloud, "us-east-1", "checkout-1.4.3-a")
    work = DesiredRepo(tmp_path / "work")
    work.write("apps/checkout.yaml", SPEC.format(version="1.4.2")).commit("checkout 1.4.2")
    bare = tmp_path / "desired.git"
    pygit2.clone_repository(str(work.path), str(bare), bare=True)
    cfg = write_config(tmp_path / "config.yaml", bare, tmp_path / "state", providers={"aws": {"accounts": {
        "test": {"endpoint_url": cloud.endpoint, "regions": list(REGIONS), "rate_limit": 0}}}})
    before = _head(bare)

    res = run_cli("promote", "checkout", "1.4.3", "--config", str(cfg))
    assert res.code == 1
    assert "refusing to promote checkout to 1.4.3" in res.err
    assert "apps/checkout.yaml:9: clusters[0].image: aws/test/eu-west-1: no image matches name checkout-1.4.3-*" \
        in res.err
    assert _head(bare) == before, "nothing was pushed"

    _register(cloud, "eu-west-1", "checkout-1.4.3-a")  # the bake finished there too
    res = run_cli("promote", "checkout", "1.4.3", "--config", str(cfg))
    assert res.code == 0, res.err
    assert _head(bare) != before


def _head(bare: Path) -> str:
    return str(pygit2.Repository(str(bare)).references["refs/heads/main"].target)

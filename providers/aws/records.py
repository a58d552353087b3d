"""The AWS provider's records: how an Auto Scaling group's tags and state map to and from the model.

Ownership and provenance are ASG tags (managed-by, application, cluster, spec-hash, commit), plus
``reconciler:image``, ``reconciler:instance-type``, ``reconciler:target-groups`` and
``reconciler:security-groups``, so one paginated ``DescribeAutoScalingGroups`` per region describes every
group without a launch-template read per group. Pure functions of the API's dictionaries: no client here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from providers import base
from providers.aws.edge import NAME
from reconciler.core import model

DISABLE_PROCESSES = ("AddToLoadBalancer", "AlarmNotification", "ScheduledActions", "AZRebalance")
"""Suspended by ``disable``; Launch and Terminate keep running so a disabled group can still scale down."""
TAG_IMAGE = "reconciler:image"
TAG_TYPE = "reconciler:instance-type"
TAG_TGS = "reconciler:target-groups"
TAG_SGS = "reconciler:security-groups"
OWN_TAGS = {model.TAG_MANAGED_BY, model.TAG_APPLICATION, model.TAG_CLUSTER, model.TAG_SPEC_HASH, model.TAG_COMMIT}
MAX_TAGS, MAX_TAG_VALUE = 50, 256  # Auto Scaling limits, checked before any call
DELETING = "Delete in progress"


def tags(resource: Mapping[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def split(value: str) -> tuple[str, ...]:
    return tuple(v for v in value.split(",") if v)


def target_group_name(arn: str) -> str:
    """``arn:…:targetgroup/NAME/ID`` -> ``NAME`` (no call needed)."""
    parts = arn.split(":", 5)[-1].split("/")
    return parts[1] if len(parts) >= 3 else arn


def group_tags(request: base.CreateRequest) -> dict[str, str]:
    """The tags a new group carries: the spec's, ownership, and what ``to_model`` reads back."""
    launch = request.launch
    return {**dict(launch.tags), **request.ownership_tags(), TAG_IMAGE: launch.image,
            TAG_TYPE: launch.instance_type, TAG_TGS: ",".join(launch.load_balancers),
            TAG_SGS: ",".join(launch.security_groups)}


def asg_tag_list(group: Mapping[str, str]) -> list[dict[str, Any]]:
    """``Tags`` for CreateAutoScalingGroup: the spec's tags reach the instances, ours stay on the group."""
    return [{"Key": k, "Value": v, "PropagateAtLaunch": not k.startswith("reconciler:")} for k, v in group.items()]


def capacity_problem(cap: model.Capacity) -> str | None:
    """What AWS (and moto) would accept but we refuse: min > desired or desired > max."""
    if 0 <= cap.min <= cap.desired <= cap.max:
        return None
    return f"capacity must satisfy 0 <= min ({cap.min}) <= desired ({cap.desired}) <= max ({cap.max})"


def tags_problem(group: Mapping[str, str]) -> str | None:
    """Auto Scaling's tag limits, checked before any call so the error names the spec, not a half-made group."""
    if len(group) > MAX_TAGS:
        return (f"{len(group)} tags; an Auto Scaling group takes at most {MAX_TAGS}, and the reconciler adds 9 of "
                "its own to the spec's tags")
    for key, value in group.items():
        if len(value) > MAX_TAG_VALUE:
            return (f"tag {key!r} would be {len(value)} characters; AWS allows {MAX_TAG_VALUE} (fewer or shorter "
                    "names)")
    return None


def to_model(account: str, region: str, g: Mapping[str, Any], health: Mapping[str, set[str]]) -> model.ServerGroup:
    """An ASG as a server group; ``health`` is the healthy instance ids per target group ARN.

    An instance counts as healthy when Auto Scaling says InService/Healthy and every attached target
    group says healthy; a group is enabled when ``AddToLoadBalancer`` runs and its target groups are attached.
    """
    found = tags(g)
    arns = list(g.get("TargetGroupARNs", []))
    suspended = {p["ProcessName"] for p in g.get("SuspendedProcesses", [])}
    healthy = 0
    for inst in g.get("Instances", []):
        if inst.get("LifecycleState") != "InService" or inst.get("HealthStatus") != "Healthy":
            continue
        if all(inst["InstanceId"] in health.get(arn, set()) for arn in arns):
            healthy += 1
    wanted_tgs = split(found.get(TAG_TGS, ""))
    attached = {target_group_name(arn) for arn in arns}
    enabled = "AddToLoadBalancer" not in suspended and set(wanted_tgs) <= attached
    extra = tuple(sorted((k, v) for k, v in found.items() if k not in OWN_TAGS and not k.startswith("reconciler:")))
    created = g.get("CreatedTime")
    managed = base.tags_say_managed(found)
    return model.ServerGroup(
        name=g["AutoScalingGroupName"], provider=NAME, account=account, region=region,
        cluster=found.get(model.TAG_CLUSTER) or model.cluster_of(g["AutoScalingGroupName"]),
        application=found.get(model.TAG_APPLICATION, ""), managed=managed,
        launch=model.LaunchSpec(image=found.get(TAG_IMAGE, ""), instance_type=found.get(TAG_TYPE, ""),
                                security_groups=split(found.get(TAG_SGS, "")),
                                load_balancers=wanted_tgs if managed
                                else tuple(sorted(attached)),  # what a foreign group uses, for guards
                                tags=extra),
        capacity=model.Capacity(int(g["MinSize"]), int(g["DesiredCapacity"]), int(g["MaxSize"])),
        enabled=enabled, healthy=healthy, instances=len(g.get("Instances", [])),
        spec_hash=found.get(model.TAG_SPEC_HASH, ""), commit=found.get(model.TAG_COMMIT, ""),
        created_at=created.timestamp() if isinstance(created, datetime) else 0.0,
    )

"""AWS: a server group is an Auto Scaling group with its own launch template, behind ELBv2 target groups.

* Ownership and provenance are ASG tags (managed-by, application, cluster, spec-hash, commit), plus
  ``reconciler:image``, ``reconciler:instance-type``, ``reconciler:target-groups`` and
  ``reconciler:security-groups``, so one paginated ``DescribeAutoScalingGroups`` per region describes
  every group without a launch-template read per group.
* Target groups health-check their targets, so a new group is attached at creation (as Spinnaker
  does): traffic reaches only instances that pass. ``disable`` suspends ``AddToLoadBalancer`` and the
  scaling processes and detaches the target groups; ``enable`` attaches and resumes. A group without
  target groups is kept out of service by the suspended ``AddToLoadBalancer`` process until enabled.
* Every error is mapped here, in ``map_error``, to the project's exception tree with the AWS error
  code, the call, the account and the region.
* Creating a client does no network I/O; the rate limit and botocore's retry back-off wait on the
  injected clock, so shutdown interrupts them and tests never sleep.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import difflib
import functools
import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import botocore.parsers
import botocore.session
from botocore.credentials import DeferredRefreshableCredentials

from providers import aws_images, aws_resources, base
from reconciler.core import clock as clock_mod
from reconciler.core import errors, model

log = logging.getLogger(__name__)

NAME = "aws"
_KEYS = {"profile", "role_arn", "external_id", "regions", "endpoint_url", "subnets", "subnet_tag", "retry_mode",
         "max_attempts", "rate_limit"}
DISABLE_PROCESSES = ("AddToLoadBalancer", "AlarmNotification", "ScheduledActions", "AZRebalance")
"""Suspended by ``disable``; Launch and Terminate keep running so a disabled group can still scale down."""
TAG_IMAGE = "reconciler:image"
TAG_TYPE = "reconciler:instance-type"
TAG_TGS = "reconciler:target-groups"
TAG_SGS = "reconciler:security-groups"
_OWN_TAGS = {model.TAG_MANAGED_BY, model.TAG_APPLICATION, model.TAG_CLUSTER, model.TAG_SPEC_HASH, model.TAG_COMMIT}
_MAX_TAGS, _MAX_TAG_VALUE = 50, 256  # Auto Scaling limits, checked before any call
_DELETING = "Delete in progress"
_THROTTLE = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
             "RequestThrottled", "RequestThrottledException", "SlowDown"}
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedAccess"}
_UNAVAILABLE = {"ServiceUnavailable", "InternalFailure", "InternalError", "RequestTimeout",
                "RequestTimeoutException"}
_IAM_PREFIX = {"autoscaling": "autoscaling", "ec2": "ec2", "elbv2": "elasticloadbalancing", "sts": "sts"}
_SERVICE_OF = {
    "DescribeAutoScalingGroups": "autoscaling", "CreateAutoScalingGroup": "autoscaling",
    "UpdateAutoScalingGroup": "autoscaling", "DeleteAutoScalingGroup": "autoscaling",
    "SuspendProcesses": "autoscaling", "ResumeProcesses": "autoscaling",
    "AttachLoadBalancerTargetGroups": "autoscaling", "DetachLoadBalancerTargetGroups": "autoscaling",
    "CreateLaunchTemplate": "ec2", "DeleteLaunchTemplate": "ec2", "DescribeLaunchTemplates": "ec2",
    "DescribeSubnets": "ec2", "DescribeSecurityGroups": "ec2",
    "DescribeTargetGroups": "elbv2", "DescribeTargetHealth": "elbv2", "AssumeRole": "sts",
    **aws_resources.SERVICE_OF,
    **aws_images.SERVICE_OF,
}
"""Every call this provider makes, with its service: the IAM actions documented in docs/aws.md."""
_PAGE_SIZE = {"DescribeAutoScalingGroups": 100, "DescribeSubnets": 1000}
"""The largest page each list call accepts (MaxRecords / MaxResults): the API's default is 50."""


def permission(call: str) -> str:
    """The IAM action a call needs, e.g. ``autoscaling:CreateAutoScalingGroup``."""
    service = _SERVICE_OF.get(call)
    return f"{_IAM_PREFIX[service]}:{call}" if service else call


class _Bucket:
    """A token bucket: at most ``rate`` requests per second per (account, region), on the injected clock."""

    def __init__(self, rate: float, clock: clock_mod.Clock) -> None:
        self.rate = rate
        self.clock = clock
        self.tokens = rate
        self.last = clock.now()
        self.lock = threading.Lock()

    def take(self) -> None:
        if self.rate <= 0:
            return
        with self.lock:
            now = self.clock.now()
            self.tokens = min(self.rate, self.tokens + max(now - self.last, 0.0) * self.rate)
            self.last = now
            wait = 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate
            self.tokens -= 1
        if wait > 0:
            self.clock.sleep(wait)


@functools.cache
def _known_regions() -> frozenset[str]:
    """Every region botocore's bundled endpoint data knows, in every partition (no network)."""
    session = botocore.session.get_session()
    return frozenset(region for partition in session.get_available_partitions()
                     for service in ("autoscaling", "ec2")
                     for region in session.get_available_regions(service, partition))


class AwsProvider(aws_resources.AwsResources, aws_images.AwsImages):
    """One AWS account: clients per (service, region), made lazily, counted and rate limited; its target groups
    and security groups are managed by ``aws_resources``."""

    name = NAME

    def __init__(self, account: str, context: base.ProviderContext, *, session: boto3.Session,
                 regions: tuple[str, ...] = (), endpoint_url: str | None = None,
                 subnets: Mapping[str, list[str]] | None = None, subnet_tag: str | None = None,
                 retry_mode: str = "standard", max_attempts: int = 5, rate_limit: float = 10.0) -> None:
        self.account = account
        self.context = context
        self.session = session
        self._regions = regions
        self.endpoint_url = endpoint_url
        self.subnets = dict(subnets or {})
        self.subnet_tag = subnet_tag
        retries: Any = {"mode": retry_mode, "total_max_attempts": max_attempts}  # first try included
        self.retry = botocore.config.Config(retries=retries, connect_timeout=5, read_timeout=30)
        self.rate_limit = rate_limit
        self.calls: collections.Counter[str] = collections.Counter()
        """API calls by operation name (one per call, however many attempts)."""
        self.attempts: collections.Counter[str] = collections.Counter()
        """HTTP attempts by operation name (retries included)."""
        self._clients: dict[tuple[str, str], Any] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._cache: dict[tuple[str, str, str], Any] = {}
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()

    @classmethod
    def check_settings(cls, account: str, config: Mapping[str, Any]) -> list[base.SettingsProblem]:
        """Types and ranges of the account settings, at config load (no session, no call)."""
        check = base.SettingsCheck(config)
        check.keys(_KEYS)
        for key in ("profile", "role_arn", "external_id", "endpoint_url", "subnet_tag"):
            check.text(key)
        check.choice("retry_mode", ("standard", "adaptive"))
        check.strings("regions", example="[us-east-1]")
        check.string_lists("subnets", example="{us-east-1: [subnet-0abc]}")
        check.number("max_attempts", low=1, high=100, whole=True)
        check.number("rate_limit", low=0)
        return check.problems

    @classmethod
    def from_config(cls, account: str, config: Mapping[str, Any], context: base.ProviderContext) -> AwsProvider:
        where = f"providers.aws.accounts.{account}"
        base.raise_problems(NAME, account, cls.check_settings(account, config))
        mode = config.get("retry_mode") or "standard"
        regions = config.get("regions") or []
        subnets = config.get("subnets") or {}
        max_attempts = int(config.get("max_attempts") or 5)
        rate_limit = float(10 if config.get("rate_limit") is None else config["rate_limit"])
        try:
            session = boto3.Session(profile_name=config["profile"]) if config.get("profile") else boto3.Session()
        except botocore.exceptions.ProfileNotFound as exc:
            raise errors.ProviderError(f"AWS profile {config.get('profile')!r} not found ({where}.profile)",
                                       provider=NAME, account=account, code="ProfileNotFound") from exc
        if config.get("role_arn"):
            session = _assume_role_session(session, account, str(config["role_arn"]), config.get("external_id"),
                                           config.get("endpoint_url"), regions[0] if regions else "us-east-1")
        return cls(account, context, session=session, regions=tuple(regions), endpoint_url=config.get("endpoint_url"),
                   subnets=subnets, subnet_tag=config.get("subnet_tag"), retry_mode=mode,
                   max_attempts=max_attempts, rate_limit=rate_limit)

    # ------------------------------------------------------------------ plumbing

    def _error(self, cls: type[errors.ProviderError], message: str, call: str, region: str,
               code: str = "") -> errors.ProviderError:
        return cls(message, provider=NAME, call=call, account=self.account, region=region, code=code)

    def _check_region(self, region: str) -> None:
        where = f"providers.aws.accounts.{self.account}.regions"
        if self._regions and region not in self._regions:
            raise self._error(errors.ProviderError, f"region {region!r} is not one of this account's regions "
                              f"({', '.join(self._regions)}; {where})", "", region, "RegionNotConfigured")
        if region not in _known_regions():
            near = difflib.get_close_matches(region, sorted(_known_regions()), n=1)
            hint = f"did you mean {near[0]!r}? " if near else ""
            raise self._error(errors.ProviderError, f"unknown AWS region {region!r}; {hint}(a region newer than "
                              "this boto3 needs an upgrade)", "", region, "UnknownRegion")

    def _client(self, service: str, region: str) -> Any:
        key = (service, region)
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                return client
            self._check_region(region)
            try:
                make: Any = self.session.client  # typed per service by the stubs; we pick services by name
                client = make(service, region_name=region, endpoint_url=self.endpoint_url, config=self.retry)
            except (botocore.exceptions.BotoCoreError, ValueError) as exc:
                raise self._error(errors.ProviderError, f"cannot create the {service} client: {exc}", "",
                                  region, type(exc).__name__) from exc
            bucket = self._buckets.setdefault(region, _Bucket(self.rate_limit, self.context.clock))
            client.meta.events.register("before-call", self._count_call)
            client.meta.events.register("before-send", self._before_send(bucket))
            _retry_waits_on(client, self.context.clock)
            self._clients[key] = client
            return client

    def _count_call(self, model: Any = None, **_: Any) -> None:
        with self._count_lock:  # regions are read from several threads
            self.calls[model.name if model is not None else "?"] += 1

    def _before_send(self, bucket: _Bucket) -> Callable[..., None]:
        def hook(event_name: str = "", **_: Any) -> None:
            with self._count_lock:
                self.attempts[event_name.rsplit(".", 1)[-1]] += 1
            bucket.take()

        return hook

    def _call(self, region: str, op: str, **kwargs: Any) -> Any:
        client = self._client(_SERVICE_OF[op], region)
        try:
            return getattr(client, _snake(op))(**kwargs)
        except Exception as exc:
            raise map_error(exc, call=op, account=self.account, region=region) from exc

    def _pages(self, region: str, op: str, key: str, **kwargs: Any) -> list[Any]:
        """Every page of a list call, each as large as the API allows (fewer calls, fewer throttles)."""
        client = self._client(_SERVICE_OF[op], region)
        out: list[Any] = []
        paging = {"PageSize": _PAGE_SIZE[op]} if op in _PAGE_SIZE else {}
        try:
            for page in client.get_paginator(_snake(op)).paginate(**kwargs, PaginationConfig=paging):
                out += page.get(key, [])
        except Exception as exc:
            raise map_error(exc, call=op, account=self.account, region=region) from exc
        return out

    # ------------------------------------------------------------------ lookups

    def _subnets(self, region: str) -> list[str]:
        if self.subnets.get(region):
            return list(self.subnets[region])
        key = ("subnets", region, self.subnet_tag or "")
        if key not in self._cache:
            filters = [{"Name": "tag-key", "Values": [self.subnet_tag]}] if self.subnet_tag else \
                [{"Name": "default-for-az", "Values": ["true"]}]
            found = [s["SubnetId"] for s in self._pages(region, "DescribeSubnets", "Subnets", Filters=filters)]
            if not found:
                lookup = f"with the tag {self.subnet_tag!r}" if self.subnet_tag else "(no default VPC?)"
                raise self._error(errors.ProviderError, f"no subnets found {lookup}; set providers.aws.accounts."
                                  f"{self.account}.subnets.{region} or subnet_tag", "DescribeSubnets", region)
            self._cache[key] = sorted(found)
        return list(self._cache[key])

    def _target_group_arns(self, region: str, names: tuple[str, ...]) -> list[str]:
        """Names to ARNs with one call for the names not yet cached (target groups outlive server groups)."""
        missing = [n for n in names if ("tg", region, n) not in self._cache]
        if missing:
            try:
                found = self._call(region, "DescribeTargetGroups", Names=missing)["TargetGroups"]
            except errors.NotFound as exc:
                raise self._error(errors.NotFound, f"target group(s) {', '.join(missing)}: {exc}",
                                  "DescribeTargetGroups", region, exc.code) from exc
            for tg in found:
                self._cache[("tg", region, tg["TargetGroupName"])] = tg["TargetGroupArn"]
        return [self._cache[("tg", region, n)] for n in names]

    def _security_group_ids(self, region: str, names: tuple[str, ...]) -> list[str]:
        """Ids pass through; names are resolved with one DescribeSecurityGroups."""
        known: dict[str, str] = {}
        by_name = [n for n in names if not n.startswith("sg-")]
        if by_name:
            found = self._call(region, "DescribeSecurityGroups",
                               Filters=[{"Name": "group-name", "Values": by_name}])["SecurityGroups"]
            known = {g["GroupName"]: g["GroupId"] for g in found}
            unknown = sorted(set(by_name) - set(known))
            if unknown:
                raise self._error(errors.NotFound, f"security group(s) {', '.join(unknown)} not found",
                                  "DescribeSecurityGroups", region)
        return [n if n.startswith("sg-") else known[n] for n in names]

    def _describe(self, region: str, name: str) -> dict[str, Any] | None:
        groups = self._call(region, "DescribeAutoScalingGroups", AutoScalingGroupNames=[name])["AutoScalingGroups"]
        live = [g for g in groups if g.get("Status") != _DELETING]
        return live[0] if live else None

    def _launch_template(self, region: str, name: str) -> dict[str, Any] | None:
        found = self._call(region, "DescribeLaunchTemplates",
                           Filters=[{"Name": "launch-template-name", "Values": [name]}])["LaunchTemplates"]
        return found[0] if found else None

    # ------------------------------------------------------------------ reads

    def regions(self) -> tuple[str, ...]:
        return self._regions

    def list_server_groups(self, region: str) -> list[model.ServerGroup]:
        """ceil(groups / 100) DescribeAutoScalingGroups plus one DescribeTargetHealth per target group in use."""
        asgs = [g for g in self._pages(region, "DescribeAutoScalingGroups", "AutoScalingGroups")
                if g.get("Status") != _DELETING]
        health = self._target_health(region, {arn for g in asgs for arn in g.get("TargetGroupARNs", [])})
        return [self._to_model(region, g, health) for g in asgs]

    def _target_health(self, region: str, arns: set[str]) -> dict[str, set[str]]:
        """Healthy instance ids per target group: one call per target group, not per server group."""
        out: dict[str, set[str]] = {}
        for arn in sorted(arns):
            descs = self._call(region, "DescribeTargetHealth", TargetGroupArn=arn)["TargetHealthDescriptions"]
            out[arn] = {d["Target"]["Id"] for d in descs if d["TargetHealth"]["State"] == "healthy"}
        return out

    def _to_model(self, region: str, g: dict[str, Any], health: dict[str, set[str]]) -> model.ServerGroup:
        tags = _tags(g)
        arns = list(g.get("TargetGroupARNs", []))
        suspended = {p["ProcessName"] for p in g.get("SuspendedProcesses", [])}
        healthy = 0
        for inst in g.get("Instances", []):
            if inst.get("LifecycleState") != "InService" or inst.get("HealthStatus") != "Healthy":
                continue
            if all(inst["InstanceId"] in health.get(arn, set()) for arn in arns):
                healthy += 1
        wanted_tgs = _split(tags.get(TAG_TGS, ""))
        attached = {_target_group_name(arn) for arn in arns}
        enabled = "AddToLoadBalancer" not in suspended and set(wanted_tgs) <= attached
        extra = tuple(sorted((k, v) for k, v in tags.items() if k not in _OWN_TAGS and not k.startswith("reconciler:")))
        created = g.get("CreatedTime")
        return model.ServerGroup(
            name=g["AutoScalingGroupName"], provider=NAME, account=self.account, region=region,
            cluster=tags.get(model.TAG_CLUSTER) or model.cluster_of(g["AutoScalingGroupName"]),
            application=tags.get(model.TAG_APPLICATION, ""), managed=base.tags_say_managed(tags),
            launch=model.LaunchSpec(image=tags.get(TAG_IMAGE, ""), instance_type=tags.get(TAG_TYPE, ""),
                                    security_groups=_split(tags.get(TAG_SGS, "")),
                                    load_balancers=wanted_tgs if base.tags_say_managed(tags)
                                    else tuple(sorted(attached)),  # what a foreign group uses, for guards
                                    tags=extra),
            capacity=model.Capacity(int(g["MinSize"]), int(g["DesiredCapacity"]), int(g["MaxSize"])),
            enabled=enabled, healthy=healthy, instances=len(g.get("Instances", [])),
            spec_hash=tags.get(model.TAG_SPEC_HASH, ""), commit=tags.get(model.TAG_COMMIT, ""),
            created_at=created.timestamp() if isinstance(created, datetime) else 0.0,
        )

    def health(self, region: str, name: str) -> model.Health:
        g = self._describe(region, name)
        if g is None:
            raise self._error(errors.NotFound, f"Auto Scaling group {name} does not exist",
                              "DescribeAutoScalingGroups", region)
        sg = self._to_model(region, g, self._target_health(region, set(g.get("TargetGroupARNs", []))))
        return model.Health(sg.healthy, sg.capacity.desired, sg.instances)

    # ------------------------------------------------------------------ mutations

    def create_server_group(self, request: base.CreateRequest) -> model.ServerGroup:
        """Launch template, then the ASG attached to its target groups; a re-run after a crash reuses both."""
        region, name, launch = request.region, request.name, request.launch
        self._check_capacity(request.capacity, "CreateAutoScalingGroup", region)
        tags = {**dict(launch.tags), **request.ownership_tags(), TAG_IMAGE: launch.image,
                TAG_TYPE: launch.instance_type, TAG_TGS: ",".join(launch.load_balancers),
                TAG_SGS: ",".join(launch.security_groups)}
        self._check_tags(tags, region)
        existing = self._describe(region, name)
        if existing is not None:
            return self._to_model(region, self._ours(existing, request, region), {})
        self._ensure_launch_template(request)
        arns = self._target_group_arns(region, launch.load_balancers) if launch.load_balancers else []
        cap = request.capacity
        params: dict[str, Any] = {
            "AutoScalingGroupName": name,
            "LaunchTemplate": {"LaunchTemplateName": name, "Version": "$Latest"},
            "MinSize": cap.min, "MaxSize": cap.max, "DesiredCapacity": cap.desired,
            "VPCZoneIdentifier": ",".join(self._subnets(region)),
            "Tags": [{"Key": k, "Value": v, "PropagateAtLaunch": not k.startswith("reconciler:")}
                     for k, v in tags.items()],
        }
        if arns:
            params["TargetGroupARNs"] = arns
        log.info("creating %s in aws/%s/%s (target groups: %s)", name, self.account, region,
                 ", ".join(launch.load_balancers) or "none")
        try:
            self._call(region, "CreateAutoScalingGroup", **params)
        except errors.Conflict:
            log.info("%s already exists (an earlier attempt made it); checking it is ours", name)
        if not arns:
            self._call(region, "SuspendProcesses", AutoScalingGroupName=name, ScalingProcesses=["AddToLoadBalancer"])
        created = self._describe(region, name)
        if created is None:
            raise self._error(errors.Unavailable, f"Auto Scaling group {name} not visible after creation",
                              "CreateAutoScalingGroup", region)
        return self._to_model(region, self._ours(created, request, region), {})

    def _ours(self, g: dict[str, Any], request: base.CreateRequest, region: str) -> dict[str, Any]:
        tags = _tags(g)
        if base.tags_say_managed(tags) and tags.get(model.TAG_SPEC_HASH) == request.spec_hash:
            return g
        owner = "another spec" if base.tags_say_managed(tags) else "someone else (no managed-by tag)"
        raise self._error(errors.Conflict, f"Auto Scaling group {request.name} already exists, made by {owner}",
                          "CreateAutoScalingGroup", region)

    def _ensure_launch_template(self, request: base.CreateRequest) -> None:
        """Create the group's own template; reuse ours for this spec, replace an orphan of another spec."""
        region, name, launch = request.region, request.name, request.launch
        data: dict[str, Any] = {"ImageId": launch.image, "InstanceType": launch.instance_type}
        if launch.user_data:
            data["UserData"] = base64.b64encode(launch.user_data.encode()).decode()
        if launch.security_groups:
            data["SecurityGroupIds"] = self._security_group_ids(region, launch.security_groups)
        token = hashlib.sha256(f"{name}/{request.spec_hash}".encode()).hexdigest()[:64]
        params = {"LaunchTemplateName": name, "LaunchTemplateData": data, "ClientToken": token,
                  "TagSpecifications": [{"ResourceType": "launch-template", "Tags": [
                      {"Key": k, "Value": v} for k, v in request.ownership_tags().items()]}]}
        with contextlib.suppress(errors.Conflict):  # it exists already: checked to be ours below
            self._call(region, "CreateLaunchTemplate", **params)
            return
        current = self._launch_template(region, name)
        if current is None:  # deleted since: make it now
            self._call(region, "CreateLaunchTemplate", **params)
            return
        tags = _tags(current)
        if not base.tags_say_managed(tags):
            raise self._error(errors.Conflict, f"launch template {name} exists without the managed-by tag; "
                              "refusing to use or replace it", "CreateLaunchTemplate", region)
        if tags.get(model.TAG_SPEC_HASH) == request.spec_hash:
            log.info("reusing launch template %s from an earlier attempt", name)
            return
        # Ours, for another spec, and no ASG uses it (checked by the caller): an abandoned attempt.
        log.warning("replacing launch template %s left by an abandoned attempt (spec %s)", name,
                    tags.get(model.TAG_SPEC_HASH))
        self._call(region, "DeleteLaunchTemplate", LaunchTemplateName=name)
        self._call(region, "CreateLaunchTemplate", **params)

    def _owned(self, region: str, name: str, call: str) -> dict[str, Any] | None:
        g = self._describe(region, name)
        if g is None:
            return None
        if not base.tags_say_managed(_tags(g)):
            raise self._error(errors.Conflict, f"Auto Scaling group {name} is not managed by reconciler; "
                              f"refusing to {call}", call, region)
        return g

    def enable(self, region: str, name: str) -> None:
        g = self._owned(region, name, "enable")
        if g is None:
            raise self._error(errors.NotFound, f"Auto Scaling group {name} does not exist", "enable", region)
        wanted = _split(_tags(g).get(TAG_TGS, ""))
        arns = self._target_group_arns(region, wanted) if wanted else []
        missing = [a for a in arns if a not in g.get("TargetGroupARNs", [])]
        suspended = [p["ProcessName"] for p in g.get("SuspendedProcesses", [])
                     if p["ProcessName"] in DISABLE_PROCESSES]
        if suspended:
            self._call(region, "ResumeProcesses", AutoScalingGroupName=name, ScalingProcesses=sorted(suspended))
        if missing:
            self._call(region, "AttachLoadBalancerTargetGroups", AutoScalingGroupName=name, TargetGroupARNs=missing)
        if suspended or missing:
            log.info("enabled %s in aws/%s/%s", name, self.account, region)

    def disable(self, region: str, name: str) -> None:
        g = self._owned(region, name, "disable")
        if g is None:
            return
        suspended = {p["ProcessName"] for p in g.get("SuspendedProcesses", [])}
        if set(DISABLE_PROCESSES) - suspended:
            self._call(region, "SuspendProcesses", AutoScalingGroupName=name, ScalingProcesses=list(DISABLE_PROCESSES))
        if g.get("TargetGroupARNs"):
            self._call(region, "DetachLoadBalancerTargetGroups", AutoScalingGroupName=name,
                       TargetGroupARNs=g["TargetGroupARNs"])
        log.info("disabled %s in aws/%s/%s", name, self.account, region)

    def resize(self, region: str, name: str, capacity: model.Capacity) -> None:
        self._check_capacity(capacity, "UpdateAutoScalingGroup", region)
        g = self._owned(region, name, "resize")
        if g is None:
            raise self._error(errors.NotFound, f"Auto Scaling group {name} does not exist", "resize", region)
        if (g["MinSize"], g["DesiredCapacity"], g["MaxSize"]) == (capacity.min, capacity.desired, capacity.max):
            return
        self._call(region, "UpdateAutoScalingGroup", AutoScalingGroupName=name,
                   MinSize=capacity.min, MaxSize=capacity.max, DesiredCapacity=capacity.desired)
        log.info("resized %s in aws/%s/%s to %s", name, self.account, region, capacity.as_dict())

    def destroy(self, region: str, name: str) -> None:
        """Force-delete the ASG, then its launch template (only if it carries our tag); gone is done."""
        g = self._owned(region, name, "destroy")
        if g is not None:
            with contextlib.suppress(errors.NotFound):  # deleted concurrently: the goal is reached
                self._call(region, "DeleteAutoScalingGroup", AutoScalingGroupName=name, ForceDelete=True)
            log.info("destroyed %s in aws/%s/%s", name, self.account, region)
        template = self._launch_template(region, name)
        if template is None:
            return
        if not base.tags_say_managed(_tags(template)):
            log.warning("leaving launch template %s in aws/%s/%s: it has no managed-by tag", name, self.account,
                        region)
            return
        with contextlib.suppress(errors.NotFound):
            self._call(region, "DeleteLaunchTemplate", LaunchTemplateName=name)

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()

    # ------------------------------------------------------------------ checks (moto and AWS accept less)

    def _check_capacity(self, cap: model.Capacity, call: str, region: str) -> None:
        if not 0 <= cap.min <= cap.desired <= cap.max:
            raise self._error(errors.ProviderError, f"capacity must satisfy 0 <= min ({cap.min}) <= desired "
                              f"({cap.desired}) <= max ({cap.max})", call, region)

    def _check_tags(self, tags: Mapping[str, str], region: str) -> None:
        if len(tags) > _MAX_TAGS:
            raise self._error(errors.ProviderError, f"{len(tags)} tags; an Auto Scaling group takes at most "
                              f"{_MAX_TAGS}, and the reconciler adds 9 of its own to the spec's tags",
                              "CreateAutoScalingGroup", region)
        for key, value in tags.items():
            if len(value) > _MAX_TAG_VALUE:
                raise self._error(errors.ProviderError, f"tag {key!r} would be {len(value)} characters; AWS allows "
                                  f"{_MAX_TAG_VALUE} (fewer or shorter names)", "CreateAutoScalingGroup", region)


def _tags(resource: Mapping[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def _split(value: str) -> tuple[str, ...]:
    return tuple(v for v in value.split(",") if v)


def _target_group_name(arn: str) -> str:
    """``arn:…:targetgroup/NAME/ID`` -> ``NAME`` (no call needed)."""
    parts = arn.split(":", 5)[-1].split("/")
    return parts[1] if len(parts) >= 3 else arn


def _snake(op: str) -> str:
    out = []
    for i, ch in enumerate(op):
        if ch.isupper() and i and not op[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def _retry_waits_on(client: Any, clock: clock_mod.Clock) -> None:
    """Make botocore's retry back-off wait on our clock (interruptible at shutdown, instant in tests).

    botocore computes the delay in its ``needs-retry`` handler and then calls ``time.sleep`` itself;
    we wrap that handler, wait the delay on ``clock`` and hand botocore a delay of 0. The handler is
    found by the unique id botocore registers it under; if a botocore release moves it, retries keep
    working with botocore's own sleep (logged once per client).
    """
    events = client.meta.events
    service = client.meta.service_model.service_id.hyphenize()
    uid = f"retry-config-{service}"
    entry = getattr(getattr(events, "_emitter", events), "_unique_id_handlers", {}).get(uid)
    if not entry or "handler" not in entry:
        log.debug("botocore retry handler %s not found; retries sleep on the wall clock", uid)
        return
    inner = entry["handler"]

    def needs_retry(**kwargs: Any) -> float | None:
        delay = inner(**kwargs)
        if delay is None:
            return None
        clock.sleep(float(delay))
        return 0.0

    events.unregister(f"needs-retry.{service}", unique_id=uid)
    events.register(f"needs-retry.{service}", needs_retry, unique_id=uid)


def map_error(exc: BaseException, *, call: str, account: str, region: str) -> errors.ProviderError:
    """The one place that turns botocore's failures into the project's exception tree."""
    kw = {"provider": NAME, "call": call, "account": account, "region": region}
    if isinstance(exc, errors.ProviderError):
        return exc
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        message = str(err.get("Message", "")) or str(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _THROTTLE or status == 429:
            return errors.Throttled(message, code=code, **kw)
        if code in _DENIED or status == 403:
            return errors.AccessDenied(f"{message} (the credentials need {permission(call)})", code=code, **kw)
        if "AlreadyExists" in code or "Duplicate" in code:
            return errors.Conflict(message, code=code, **kw)
        if "NotFound" in code or "not found" in message.lower():
            return errors.NotFound(message, code=code, **kw)
        if status >= 500 or code in _UNAVAILABLE:
            return errors.Unavailable(message, code=code, **kw)
        return errors.ProviderError(message, code=code, **kw)
    if isinstance(exc, botocore.exceptions.EndpointConnectionError | botocore.exceptions.ConnectTimeoutError
                  | botocore.exceptions.ReadTimeoutError | botocore.exceptions.ConnectionClosedError
                  | botocore.parsers.ResponseParserError):
        return errors.Unavailable(f"{exc} (after retries)", code=type(exc).__name__, **kw)
    if isinstance(exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.NoRegionError
                  | botocore.exceptions.ProfileNotFound | botocore.exceptions.PartialCredentialsError):
        return errors.ProviderError(f"{exc} (check the account's profile or role_arn)", code=type(exc).__name__,
                                    **kw)
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return errors.ProviderError(str(exc), code=type(exc).__name__, **kw)
    raise exc


def _assume_role_session(source: boto3.Session, account: str, role_arn: str, external_id: Any,
                         endpoint_url: Any, region: str) -> boto3.Session:
    """Credentials from STS AssumeRole (session name ``reconciler``), refreshed before they expire.

    Deferred: no STS call until the first API call needs credentials, so building a provider does no I/O.
    """

    def refresh() -> dict[str, str]:
        sts = source.client("sts", region_name=region, endpoint_url=endpoint_url)
        params: dict[str, Any] = {"RoleArn": role_arn, "RoleSessionName": "reconciler"}
        if external_id:
            params["ExternalId"] = str(external_id)
        try:
            creds = sts.assume_role(**params)["Credentials"]
        except Exception as exc:
            raise map_error(exc, call="AssumeRole", account=account, region=region) from exc
        finally:
            sts.close()
        expiry = creds["Expiration"]
        return {"access_key": creds["AccessKeyId"], "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"],
                "expiry_time": (expiry if isinstance(expiry, datetime) else datetime.now(UTC)).isoformat()}

    bc = botocore.session.get_session()
    bc._credentials = DeferredRefreshableCredentials(  # type: ignore[attr-defined]  # botocore has no public setter
        refresh_using=refresh, method="sts-assume-role")
    return boto3.Session(botocore_session=bc)

"""AWS: a server group is an Auto Scaling group with its own launch template, behind ELBv2 target groups.

* Ownership and provenance are ASG tags (managed-by, application, cluster, spec-hash, commit), plus
  ``image``, ``instance-type`` and ``target-groups`` so one paginated ``DescribeAutoScalingGroups``
  per region describes every group without per-group calls.
* Target groups health-check their targets, so a new group is attached at creation (as Spinnaker
  does): traffic reaches only instances that pass. ``disable`` suspends ``AddToLoadBalancer`` and the
  scaling processes and detaches the target groups; ``enable`` attaches and resumes. A group without
  target groups is kept out of service by the suspended ``AddToLoadBalancer`` process until enabled.
* Every error is mapped here to the project's exception tree with the AWS error code, the call, the
  account and the region.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import hashlib
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import botocore.session
from botocore.credentials import DeferredRefreshableCredentials

from providers import base
from reconciler import clock as clock_mod
from reconciler import errors, model

NAME = "aws"
_KEYS = {"profile", "role_arn", "external_id", "regions", "endpoint_url", "subnets", "subnet_tag", "retry_mode",
         "max_attempts", "rate_limit"}
DISABLE_PROCESSES = ["AddToLoadBalancer", "AlarmNotification", "ScheduledActions", "AZRebalance"]
TAG_IMAGE = "reconciler:image"
TAG_TYPE = "reconciler:instance-type"
TAG_TGS = "reconciler:target-groups"
TAG_SGS = "reconciler:security-groups"
_THROTTLE = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
             "RequestThrottled", "SlowDown"}
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedAccess"}
_PERMISSION = {
    "DescribeAutoScalingGroups": "autoscaling:DescribeAutoScalingGroups",
    "CreateAutoScalingGroup": "autoscaling:CreateAutoScalingGroup",
    "UpdateAutoScalingGroup": "autoscaling:UpdateAutoScalingGroup",
    "DeleteAutoScalingGroup": "autoscaling:DeleteAutoScalingGroup",
    "SuspendProcesses": "autoscaling:SuspendProcesses",
    "ResumeProcesses": "autoscaling:ResumeProcesses",
    "AttachLoadBalancerTargetGroups": "autoscaling:AttachLoadBalancerTargetGroups",
    "DetachLoadBalancerTargetGroups": "autoscaling:DetachLoadBalancerTargetGroups",
    "CreateLaunchTemplate": "ec2:CreateLaunchTemplate",
    "DeleteLaunchTemplate": "ec2:DeleteLaunchTemplate",
    "DescribeLaunchTemplates": "ec2:DescribeLaunchTemplates",
    "DescribeSubnets": "ec2:DescribeSubnets",
    "DescribeSecurityGroups": "ec2:DescribeSecurityGroups",
    "DescribeTargetGroups": "elasticloadbalancing:DescribeTargetGroups",
    "DescribeTargetHealth": "elasticloadbalancing:DescribeTargetHealth",
}


class _Bucket:
    """A token bucket: at most ``rate`` calls per second per (account, region), with the injected clock."""

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
            self.tokens = min(self.rate, self.tokens + (now - self.last) * self.rate)
            self.last = now
            wait = 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate
            self.tokens -= 1
        if wait > 0:
            self.clock.sleep(wait)


class AwsProvider:
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
        retries: Any = {"mode": retry_mode, "max_attempts": max_attempts}
        self.retry = botocore.config.Config(retries=retries, connect_timeout=5, read_timeout=30)
        self.rate_limit = rate_limit
        self.calls: collections.Counter[str] = collections.Counter()
        self._clients: dict[tuple[str, str], Any] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._cache: dict[tuple[str, str, str], Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, account: str, config: Mapping[str, Any], context: base.ProviderContext) -> AwsProvider:
        where = f"providers.aws.accounts.{account}"
        base.check_keys(NAME, account, config, _KEYS)
        mode = config.get("retry_mode", "standard")
        if mode not in ("standard", "adaptive", "legacy"):
            raise errors.ConfigError(f"{where}.retry_mode: {mode!r}; use standard or adaptive")
        regions = tuple(config.get("regions") or ())
        try:
            session = boto3.Session(profile_name=config.get("profile")) if config.get("profile") else boto3.Session()
        except botocore.exceptions.ProfileNotFound as exc:
            raise errors.ProviderError(f"AWS profile {config.get('profile')!r} not found ({where}.profile)",
                                       provider=NAME, account=account, code="ProfileNotFound") from exc
        if config.get("role_arn"):
            session = _assume_role_session(session, str(config["role_arn"]), config.get("external_id"),
                                           config.get("endpoint_url"), regions[0] if regions else "us-east-1")
        return cls(account, context, session=session, regions=regions, endpoint_url=config.get("endpoint_url"),
                   subnets=config.get("subnets"), subnet_tag=config.get("subnet_tag"), retry_mode=mode,
                   max_attempts=int(config.get("max_attempts", 5)), rate_limit=float(config.get("rate_limit", 10)))

    # ------------------------------------------------------------------ plumbing

    def _client(self, service: str, region: str) -> Any:
        if self._regions and region not in self._regions:
            raise errors.ProviderError(
                f"region {region!r} is not one of this account's regions ({', '.join(self._regions)})",
                provider=NAME, account=self.account, region=region, code="RegionNotConfigured")
        key = (service, region)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                try:
                    make: Any = self.session.client  # typed per service by the stubs; we pick services by name
                    client = make(service, region_name=region, endpoint_url=self.endpoint_url, config=self.retry)
                except (botocore.exceptions.BotoCoreError, ValueError) as exc:
                    raise errors.ProviderError(f"cannot create the {service} client: {exc}", provider=NAME,
                                               account=self.account, region=region) from exc
                client.meta.events.register("before-call", self._before_call(region))
                self._clients[key] = client
            return client

    def _before_call(self, region: str) -> Callable[..., None]:
        bucket = self._buckets.setdefault(region, _Bucket(self.rate_limit, self.context.clock))

        def hook(model: Any = None, **_: Any) -> None:
            bucket.take()
            self.calls[model.name if model is not None else "?"] += 1

        return hook

    def _call(self, service: str, region: str, op: str, **kwargs: Any) -> Any:
        client = self._client(service, region)
        try:
            return getattr(client, _snake(op))(**kwargs)
        except Exception as exc:
            raise map_error(exc, call=op, account=self.account, region=region) from exc

    def _pages(self, service: str, region: str, op: str, key: str, **kwargs: Any) -> list[Any]:
        client = self._client(service, region)
        out: list[Any] = []
        try:
            for page in client.get_paginator(_snake(op)).paginate(**kwargs):
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
            filters = [{"Name": f"tag:{self.subnet_tag}", "Values": ["*"]}] if self.subnet_tag else \
                [{"Name": "default-for-az", "Values": ["true"]}]
            found = [s["SubnetId"] for s in self._pages("ec2", region, "DescribeSubnets", "Subnets", Filters=filters)]
            if not found:
                raise errors.ProviderError(
                    "no subnets found (no default VPC?); set providers.aws.accounts."
                    f"{self.account}.subnets.{region} or subnet_tag", provider=NAME, call="DescribeSubnets",
                    account=self.account, region=region)
            self._cache[key] = sorted(found)
        return list(self._cache[key])

    def _target_group_arns(self, region: str, names: tuple[str, ...]) -> list[str]:
        missing = [n for n in names if ("tg", region, n) not in self._cache]
        if missing:
            for tg in self._call("elbv2", region, "DescribeTargetGroups", Names=missing)["TargetGroups"]:
                self._cache[("tg", region, tg["TargetGroupName"])] = tg["TargetGroupArn"]
        return [self._cache[("tg", region, n)] for n in names]

    def _security_group_ids(self, region: str, names: tuple[str, ...]) -> list[str]:
        ids = [n for n in names if n.startswith("sg-")]
        by_name = [n for n in names if not n.startswith("sg-")]
        if by_name:
            found = self._call("ec2", region, "DescribeSecurityGroups",
                               Filters=[{"Name": "group-name", "Values": by_name}])["SecurityGroups"]
            known = {g["GroupName"]: g["GroupId"] for g in found}
            unknown = sorted(set(by_name) - set(known))
            if unknown:
                raise errors.NotFound(f"security group(s) {', '.join(unknown)} not found", provider=NAME,
                                      call="DescribeSecurityGroups", account=self.account, region=region)
            ids += [known[n] for n in by_name]
        return ids

    def _describe(self, region: str, name: str) -> dict[str, Any] | None:
        groups = self._call("autoscaling", region, "DescribeAutoScalingGroups",
                            AutoScalingGroupNames=[name])["AutoScalingGroups"]
        return groups[0] if groups else None

    # ------------------------------------------------------------------ Provider

    def regions(self) -> tuple[str, ...]:
        return self._regions

    def list_server_groups(self, region: str) -> list[model.ServerGroup]:
        asgs = self._pages("autoscaling", region, "DescribeAutoScalingGroups", "AutoScalingGroups")
        health = self._target_health(region, {arn for g in asgs for arn in g.get("TargetGroupARNs", [])})
        return [self._to_model(region, g, health) for g in asgs]

    def _target_health(self, region: str, arns: set[str]) -> dict[str, set[str]]:
        """Healthy instance ids per target group: one call per target group, not per group."""
        out: dict[str, set[str]] = {}
        for arn in sorted(arns):
            descs = self._call("elbv2", region, "DescribeTargetHealth", TargetGroupArn=arn)["TargetHealthDescriptions"]
            out[arn] = {d["Target"]["Id"] for d in descs if d["TargetHealth"]["State"] == "healthy"}
        return out

    def _to_model(self, region: str, g: dict[str, Any], health: dict[str, set[str]]) -> model.ServerGroup:
        tags = {t["Key"]: t["Value"] for t in g.get("Tags", [])}
        arns = g.get("TargetGroupARNs", [])
        suspended = {p["ProcessName"] for p in g.get("SuspendedProcesses", [])}
        healthy = 0
        for inst in g.get("Instances", []):
            if inst.get("LifecycleState") != "InService" or inst.get("HealthStatus") != "Healthy":
                continue
            if all(inst["InstanceId"] in health.get(arn, set()) for arn in arns):
                healthy += 1
        wanted_tgs = tuple(t for t in tags.get(TAG_TGS, "").split(",") if t)
        extra = tuple(sorted((k, v) for k, v in tags.items() if not k.startswith("reconciler:") and k not in (
            model.TAG_MANAGED_BY, model.TAG_APPLICATION, model.TAG_CLUSTER, model.TAG_SPEC_HASH, model.TAG_COMMIT)))
        enabled = "AddToLoadBalancer" not in suspended and (bool(arns) or not wanted_tgs)
        created = g.get("CreatedTime")
        return model.ServerGroup(
            name=g["AutoScalingGroupName"], provider=NAME, account=self.account, region=region,
            cluster=tags.get(model.TAG_CLUSTER) or model.cluster_of(g["AutoScalingGroupName"]),
            application=tags.get(model.TAG_APPLICATION, ""), managed=base.tags_say_managed(tags),
            launch=model.LaunchSpec(
                image=tags.get(TAG_IMAGE, ""), instance_type=tags.get(TAG_TYPE, ""),
                security_groups=tuple(s for s in tags.get(TAG_SGS, "").split(",") if s),
                load_balancers=wanted_tgs, tags=extra),
            capacity=model.Capacity(int(g["MinSize"]), int(g["DesiredCapacity"]), int(g["MaxSize"])),
            enabled=enabled, healthy=healthy, instances=len(g.get("Instances", [])),
            spec_hash=tags.get(model.TAG_SPEC_HASH, ""), commit=tags.get(model.TAG_COMMIT, ""),
            created_at=created.timestamp() if isinstance(created, datetime) else 0.0,
        )

    def health(self, region: str, name: str) -> model.Health:
        g = self._describe(region, name)
        if g is None:
            raise errors.NotFound(f"Auto Scaling group {name} does not exist", provider=NAME,
                                  call="DescribeAutoScalingGroups", account=self.account, region=region)
        sg = self._to_model(region, g, self._target_health(region, set(g.get("TargetGroupARNs", []))))
        return model.Health(sg.healthy, sg.capacity.desired, sg.instances)

    def create_server_group(self, request: base.CreateRequest) -> model.ServerGroup:
        region, name, launch = request.region, request.name, request.launch
        cap = request.capacity
        if not cap.min <= cap.desired <= cap.max:
            raise errors.ProviderError(f"capacity min {cap.min} <= desired {cap.desired} <= max {cap.max} violated",
                                       provider=NAME, call="CreateAutoScalingGroup", account=self.account,
                                       region=region)
        existing = self._describe(region, name)
        if existing is not None:
            tags = {t["Key"]: t["Value"] for t in existing.get("Tags", [])}
            if base.tags_say_managed(tags) and tags.get(model.TAG_SPEC_HASH) == request.spec_hash:
                return self._to_model(region, existing, {})
            raise errors.Conflict(f"Auto Scaling group {name} already exists and is not this deployment's",
                                  provider=NAME, call="CreateAutoScalingGroup", account=self.account, region=region)
        tags = {**dict(launch.tags), **request.ownership_tags(), TAG_IMAGE: launch.image,
                TAG_TYPE: launch.instance_type, TAG_TGS: ",".join(launch.load_balancers),
                TAG_SGS: ",".join(launch.security_groups)}
        data: dict[str, Any] = {"ImageId": launch.image, "InstanceType": launch.instance_type}
        if launch.user_data:
            data["UserData"] = base64.b64encode(launch.user_data.encode()).decode()
        if launch.security_groups:
            data["SecurityGroupIds"] = self._security_group_ids(region, launch.security_groups)
        token = hashlib.sha256(f"{name}/{request.spec_hash}".encode()).hexdigest()[:64]
        with contextlib.suppress(errors.Conflict):  # an earlier attempt (crash after the call) made it: reuse
            self._call("ec2", region, "CreateLaunchTemplate", LaunchTemplateName=name, LaunchTemplateData=data,
                       ClientToken=token, TagSpecifications=[{"ResourceType": "launch-template", "Tags": [
                           {"Key": k, "Value": v} for k, v in request.ownership_tags().items()]}])
        arns = self._target_group_arns(region, launch.load_balancers) if launch.load_balancers else []
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
        with contextlib.suppress(errors.Conflict):  # AlreadyExists: an earlier attempt made it; checked below
            self._call("autoscaling", region, "CreateAutoScalingGroup", **params)
        if not arns:
            self._call("autoscaling", region, "SuspendProcesses", AutoScalingGroupName=name,
                       ScalingProcesses=["AddToLoadBalancer"])
        created = self._describe(region, name)
        if created is None:
            raise errors.Unavailable(f"Auto Scaling group {name} not visible after creation", provider=NAME,
                                     call="CreateAutoScalingGroup", account=self.account, region=region)
        return self._to_model(region, created, {})

    def _owned(self, region: str, name: str, call: str) -> dict[str, Any] | None:
        g = self._describe(region, name)
        if g is None:
            return None
        tags = {t["Key"]: t["Value"] for t in g.get("Tags", [])}
        if not base.tags_say_managed(tags):
            raise errors.Conflict(f"Auto Scaling group {name} is not managed by reconciler; refusing to {call}",
                                  provider=NAME, call=call, account=self.account, region=region)
        return g

    def enable(self, region: str, name: str) -> None:
        g = self._owned(region, name, "enable")
        if g is None:
            raise errors.NotFound(f"Auto Scaling group {name} does not exist", provider=NAME, call="enable",
                                  account=self.account, region=region)
        tags = {t["Key"]: t["Value"] for t in g.get("Tags", [])}
        wanted = tuple(t for t in tags.get(TAG_TGS, "").split(",") if t)
        arns = self._target_group_arns(region, wanted) if wanted else []
        missing = [a for a in arns if a not in g.get("TargetGroupARNs", [])]
        if missing:
            self._call("autoscaling", region, "AttachLoadBalancerTargetGroups", AutoScalingGroupName=name,
                       TargetGroupARNs=missing)
        if g.get("SuspendedProcesses"):
            self._call("autoscaling", region, "ResumeProcesses", AutoScalingGroupName=name)

    def disable(self, region: str, name: str) -> None:
        g = self._owned(region, name, "disable")
        if g is None:
            return
        suspended = {p["ProcessName"] for p in g.get("SuspendedProcesses", [])}
        if set(DISABLE_PROCESSES) - suspended:
            self._call("autoscaling", region, "SuspendProcesses", AutoScalingGroupName=name,
                       ScalingProcesses=DISABLE_PROCESSES)
        if g.get("TargetGroupARNs"):
            self._call("autoscaling", region, "DetachLoadBalancerTargetGroups", AutoScalingGroupName=name,
                       TargetGroupARNs=g["TargetGroupARNs"])

    def resize(self, region: str, name: str, capacity: model.Capacity) -> None:
        g = self._owned(region, name, "resize")
        if g is None:
            raise errors.NotFound(f"Auto Scaling group {name} does not exist", provider=NAME, call="resize",
                                  account=self.account, region=region)
        if (g["MinSize"], g["DesiredCapacity"], g["MaxSize"]) == (capacity.min, capacity.desired, capacity.max):
            return
        self._call("autoscaling", region, "UpdateAutoScalingGroup", AutoScalingGroupName=name,
                   MinSize=capacity.min, MaxSize=capacity.max, DesiredCapacity=capacity.desired)

    def destroy(self, region: str, name: str) -> None:
        g = self._owned(region, name, "destroy")
        if g is not None:
            self._call("autoscaling", region, "DeleteAutoScalingGroup", AutoScalingGroupName=name, ForceDelete=True)
        templates = self._call("ec2", region, "DescribeLaunchTemplates",
                               Filters=[{"Name": "launch-template-name", "Values": [name]}])["LaunchTemplates"]
        if templates:
            with contextlib.suppress(errors.NotFound):  # deleted concurrently: the goal is reached
                self._call("ec2", region, "DeleteLaunchTemplate", LaunchTemplateName=name)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


def _snake(op: str) -> str:
    out = []
    for i, ch in enumerate(op):
        if ch.isupper() and i and not op[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def map_error(exc: BaseException, *, call: str, account: str, region: str) -> errors.ProviderError:
    """One place that turns botocore's failures into the project's exception tree."""
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
            perm = _PERMISSION.get(call, call)
            return errors.AccessDenied(f"{message} (the credentials need {perm})", code=code, **kw)
        if "AlreadyExists" in code or "Duplicate" in code:
            return errors.Conflict(message, code=code, **kw)
        if "NotFound" in code or code.endswith(".NotFound") or "not found" in message.lower():
            return errors.NotFound(message, code=code, **kw)
        if status >= 500 or code in ("ServiceUnavailable", "InternalFailure", "InternalError"):
            return errors.Unavailable(message, code=code, **kw)
        return errors.ProviderError(message, code=code, **kw)
    if isinstance(exc, botocore.exceptions.EndpointConnectionError | botocore.exceptions.ConnectTimeoutError
                  | botocore.exceptions.ReadTimeoutError | botocore.exceptions.ConnectionClosedError):
        return errors.Unavailable(str(exc), code=type(exc).__name__, **kw)
    if isinstance(exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.NoRegionError
                  | botocore.exceptions.ProfileNotFound | botocore.exceptions.PartialCredentialsError):
        return errors.ProviderError(str(exc), code=type(exc).__name__, **kw)
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return errors.ProviderError(str(exc), code=type(exc).__name__, **kw)
    raise exc


def _assume_role_session(source: boto3.Session, role_arn: str, external_id: Any, endpoint_url: Any,
                         region: str) -> boto3.Session:
    """Credentials from STS AssumeRole, refreshed before they expire; the first call is deferred."""

    def refresh() -> dict[str, str]:
        sts = source.client("sts", region_name=region, endpoint_url=endpoint_url)
        params: dict[str, Any] = {"RoleArn": role_arn, "RoleSessionName": "reconciler"}
        if external_id:
            params["ExternalId"] = str(external_id)
        creds = sts.assume_role(**params)["Credentials"]
        expiry = creds["Expiration"]
        return {"access_key": creds["AccessKeyId"], "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"],
                "expiry_time": (expiry if isinstance(expiry, datetime) else datetime.now(UTC)).isoformat()}

    bc = botocore.session.get_session()
    bc._credentials = DeferredRefreshableCredentials(  # type: ignore[attr-defined]  # botocore has no public setter
        refresh_using=refresh, method="sts-assume-role")
    return boto3.Session(botocore_session=bc)

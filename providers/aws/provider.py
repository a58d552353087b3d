"""AWS: a server group is an Auto Scaling group with its own launch template, behind ELBv2 target groups.

``AwsProvider`` is the Provider implementation; the boto3 plumbing (clients, paging, retries, the rate
limit, error mapping) is in ``edge``, the tag and state mapping to the model in ``records``.

* Target groups health-check their targets, so a new group is attached at creation (as Spinnaker
  does): traffic reaches only instances that pass. ``disable`` suspends ``AddToLoadBalancer`` and the
  scaling processes and detaches the target groups; ``enable`` attaches and resumes. A group without
  target groups is kept out of service by the suspended ``AddToLoadBalancer`` process until enabled.
* Target groups and security groups as declared resources come from the ``aws_resources`` mixin, which
  uses ``_call``, ``_pages``, ``_error``, ``_cache`` and ``_subnets`` from here; another AWS feature
  module hooks in the same way (a base class of ``AwsProvider``, its calls in ``edge.SERVICE_OF``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
from collections.abc import Mapping
from typing import Any

import boto3
import botocore.exceptions

from providers import aws_images, aws_resources, base
from providers.aws import edge, records
from providers.aws.records import DISABLE_PROCESSES, TAG_TGS
from reconciler.core import errors, model

log = logging.getLogger(__name__)

NAME = edge.NAME
_KEYS = {"profile", "role_arn", "external_id", "regions", "endpoint_url", "subnets", "subnet_tag", "retry_mode",
         "max_attempts", "rate_limit"}


class AwsProvider(aws_resources.AwsResources, aws_images.AwsImages):
    """One AWS account. Its clients (per service and region, made lazily, counted and rate limited) are
    ``self.edge``; its target groups and security groups are managed by ``aws_resources``."""

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
        self.rate_limit = rate_limit
        self.edge = edge.Edge(account, session, context.clock, regions=regions, endpoint_url=endpoint_url,
                              retry_mode=retry_mode, max_attempts=max_attempts, rate_limit=rate_limit)
        self.calls = self.edge.calls
        """API calls by operation name (one per call, however many attempts)."""
        self.attempts = self.edge.attempts
        """HTTP attempts by operation name (retries included)."""
        self._cache: dict[tuple[str, str, str], Any] = {}

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
            session = edge.assume_role_session(session, account, str(config["role_arn"]), config.get("external_id"),
                                                config.get("endpoint_url"), regions[0] if regions else "us-east-1")
        return cls(account, context, session=session, regions=tuple(regions), endpoint_url=config.get("endpoint_url"),
                   subnets=subnets, subnet_tag=config.get("subnet_tag"), retry_mode=mode,
                   max_attempts=max_attempts, rate_limit=rate_limit)

    # ------------------------------------------------------------------ plumbing (the edge does the I/O)

    def _error(self, cls: type[errors.ProviderError], message: str, call: str, region: str,
               code: str = "") -> errors.ProviderError:
        return self.edge.error(cls, message, call, region, code)

    def _client(self, service: str, region: str) -> Any:
        return self.edge.client(service, region)

    def _call(self, region: str, op: str, **kwargs: Any) -> Any:
        return self.edge.call(region, op, **kwargs)

    def _pages(self, region: str, op: str, key: str, **kwargs: Any) -> list[Any]:
        return self.edge.pages(region, op, key, **kwargs)

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
        live = [g for g in groups if g.get("Status") != records.DELETING]
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
                if g.get("Status") != records.DELETING]
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
        return records.to_model(self.account, region, g, health)

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
        tags = records.group_tags(request)
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
            "Tags": records.asg_tag_list(tags),
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
        tags = records.tags(g)
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
        tags = records.tags(current)
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
        if not base.tags_say_managed(records.tags(g)):
            raise self._error(errors.Conflict, f"Auto Scaling group {name} is not managed by reconciler; "
                              f"refusing to {call}", call, region)
        return g

    def enable(self, region: str, name: str) -> None:
        g = self._owned(region, name, "enable")
        if g is None:
            raise self._error(errors.NotFound, f"Auto Scaling group {name} does not exist", "enable", region)
        wanted = records.split(records.tags(g).get(TAG_TGS, ""))
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
        if not base.tags_say_managed(records.tags(template)):
            log.warning("leaving launch template %s in aws/%s/%s: it has no managed-by tag", name, self.account,
                        region)
            return
        with contextlib.suppress(errors.NotFound):
            self._call(region, "DeleteLaunchTemplate", LaunchTemplateName=name)

    def close(self) -> None:
        self.edge.close()

    # ------------------------------------------------------------------ checks (moto and AWS accept less)

    def _check_capacity(self, cap: model.Capacity, call: str, region: str) -> None:
        problem = records.capacity_problem(cap)
        if problem:
            raise self._error(errors.ProviderError, problem, call, region)

    def _check_tags(self, tags: Mapping[str, str], region: str) -> None:
        problem = records.tags_problem(tags)
        if problem:
            raise self._error(errors.ProviderError, problem, "CreateAutoScalingGroup", region)

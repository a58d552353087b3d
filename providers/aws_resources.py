"""AWS load balancers and security groups: ELBv2 target groups with their health checks, and EC2 security
groups with ingress rules that may name other groups.

Reads are bulk: per region one ``DescribeTargetGroups`` paginator, one ``DescribeTags`` per 20 target
groups (the API's limit) and one ``DescribeSecurityGroups`` paginator, whatever the number of resources;
listener rules on shared load balancers (``listener:``) add one ``DescribeLoadBalancers`` per 20 balancers
some target group is behind and one read per such balancer's listener.
Ownership is the same tags as on Auto Scaling groups. A target group's protocol and port cannot change in
place on AWS: such an update is refused with a message saying so (declare a new name). A security group's
description is fixed at creation; its rules are authorized and revoked one difference at a time, so a
re-run after a crash only does what is left.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from providers import base
from reconciler.core import errors, model
from reconciler.core.resources import Kind, LiveResource, Rule

SERVICE_OF = {
    "CreateTargetGroup": "elbv2", "ModifyTargetGroup": "elbv2", "DeleteTargetGroup": "elbv2",
    "DescribeTags": "elbv2", "AddTags": "elbv2", "DescribeLoadBalancers": "elbv2", "DescribeListeners": "elbv2",
    "DescribeRules": "elbv2", "CreateRule": "elbv2", "ModifyRule": "elbv2", "SetRulePriorities": "elbv2",
    "DeleteRule": "elbv2",
    "CreateSecurityGroup": "ec2", "DeleteSecurityGroup": "ec2", "AuthorizeSecurityGroupIngress": "ec2",
    "RevokeSecurityGroupIngress": "ec2", "CreateTags": "ec2", "DescribeVpcs": "ec2",
}
"""The calls this module adds to the provider's (docs/aws.md lists the IAM actions)."""

_HC = {"health_check.protocol": "HealthCheckProtocol", "health_check.port": "HealthCheckPort",
       "health_check.path": "HealthCheckPath", "health_check.interval": "HealthCheckIntervalSeconds",
       "health_check.timeout": "HealthCheckTimeoutSeconds",
       "health_check.healthy_threshold": "HealthyThresholdCount",
       "health_check.unhealthy_threshold": "UnhealthyThresholdCount"}
_FIXED = ("protocol", "port")
_TAGS_PER_CALL = 20
_CONDITIONS = {"listener.path": "path-pattern", "listener.host": "host-header"}


class AwsResources:
    """Mixed into ``AwsProvider`` (which brings ``_call``, ``_pages``, ``_error``, ``_cache`` and ``_subnets``)."""

    name: str
    account: str
    _cache: dict[tuple[str, str, str], Any]
    _call: Callable[..., Any]
    _pages: Callable[..., list[Any]]
    _error: Callable[..., errors.ProviderError]
    _subnets: Callable[[str], list[str]]

    # ------------------------------------------------------------------ reads

    def list_resources(self, region: str) -> list[LiveResource]:
        tgs = self._pages(region, "DescribeTargetGroups", "TargetGroups")
        tags: dict[str, dict[str, str]] = {}
        arns = [tg["TargetGroupArn"] for tg in tgs]
        for i in range(0, len(arns), _TAGS_PER_CALL):
            for d in self._call(region, "DescribeTags", ResourceArns=arns[i:i + _TAGS_PER_CALL])["TagDescriptions"]:
                tags[d["ResourceArn"]] = {t["Key"]: t["Value"] for t in d.get("Tags", [])}
        rules = self._listener_rules(region, {a for tg in tgs for a in tg.get("LoadBalancerArns", [])})
        out = [self._lb(region, tg, tags.get(tg["TargetGroupArn"], {}), rules.get(tg["TargetGroupArn"]))
               for tg in tgs]
        for tg in tgs:
            self._cache[("tg", region, tg["TargetGroupName"])] = tg["TargetGroupArn"]
        sgs = self._pages(region, "DescribeSecurityGroups", "SecurityGroups")
        names = {g["GroupId"]: g["GroupName"] for g in sgs}
        out += [self._sg(region, g, names) for g in sgs]
        return out

    def _live(self, region: str, kind: Kind, name: str, tags: Mapping[str, str], settings: dict[str, str],
              rules: list[str], aliases: tuple[str, ...] = ()) -> LiveResource:
        return LiveResource(kind=kind, name=name, provider=self.name, account=self.account, region=region,
                            managed=base.tags_say_managed(tags), application=tags.get(model.TAG_APPLICATION, ""),
                            settings=tuple(sorted(settings.items())), rules=tuple(sorted(rules)),
                            spec_hash=tags.get(model.TAG_SPEC_HASH, ""), commit=tags.get(model.TAG_COMMIT, ""),
                            aliases=aliases)

    def _listener_rules(self, region: str, lb_arns: set[str]) -> dict[str, dict[str, Any]]:
        """Target group ARN -> the listener rule forwarding to it: one read per shared balancer and listener
        (only balancers some target group is behind), not per target group."""
        if not lb_arns:
            return {}
        arns, names = sorted(lb_arns), {}
        for i in range(0, len(arns), _TAGS_PER_CALL):
            for lb in self._call(region, "DescribeLoadBalancers", LoadBalancerArns=arns[i:i + _TAGS_PER_CALL]
                                 )["LoadBalancers"]:
                names[lb["LoadBalancerArn"]] = lb["LoadBalancerName"]
        out: dict[str, dict[str, Any]] = {}
        for lb_arn in arns:
            for listener in self._pages(region, "DescribeListeners", "Listeners", LoadBalancerArn=lb_arn):
                for rule in self._pages(region, "DescribeRules", "Rules", ListenerArn=listener["ListenerArn"]):
                    if rule.get("IsDefault") or rule.get("Priority") == "default":
                        continue
                    for action in rule.get("Actions", []):
                        if action.get("Type") != "forward" or not action.get("TargetGroupArn"):
                            continue
                        found = {"listener.load_balancer": names.get(lb_arn, lb_arn),
                                 "listener.port": str(listener["Port"]), "listener.priority": str(rule["Priority"])}
                        for c in rule.get("Conditions", []):
                            key = next((k for k, f in _CONDITIONS.items() if f == c.get("Field")), None)
                            if key and c.get("Values"):
                                found[key] = str(c["Values"][0])
                        out[action["TargetGroupArn"]] = {"settings": found, "rule": rule["RuleArn"],
                                                         "listener": listener["ListenerArn"]}
        return out

    def _lb(self, region: str, tg: dict[str, Any], tags: Mapping[str, str],
            rule: Mapping[str, Any] | None = None) -> LiveResource:
        settings = {"protocol": str(tg.get("Protocol", "")).lower(), "port": str(tg.get("Port", ""))}
        settings.update((rule or {}).get("settings", {}))
        for ours, theirs in _HC.items():
            if tg.get(theirs) is not None:
                value = tg[theirs]
                settings[ours] = (f"{value}s" if ours in ("health_check.interval", "health_check.timeout")
                                  else str(value).lower() if ours == "health_check.protocol" else str(value))
        if settings.get("health_check.port") == "traffic-port":
            settings["health_check.port"] = settings["port"]
        if settings.get("health_check.protocol") == "tcp":
            settings.pop("health_check.path", None)
        return self._live(region, Kind.LOAD_BALANCER, tg["TargetGroupName"], tags, settings, [])

    def _sg(self, region: str, g: dict[str, Any], names: Mapping[str, str]) -> LiveResource:
        rules = []
        for p in g.get("IpPermissions", []):
            protocol = "all" if p.get("IpProtocol") == "-1" else str(p.get("IpProtocol"))
            low, high = p.get("FromPort"), p.get("ToPort")
            ports = "all" if low in (None, -1) or (low == 0 and high == 65535) or protocol in ("all", "icmp") \
                else str(low) if low == high else f"{low}-{high}"
            rules += [Rule(protocol, ports, cidr=r["CidrIp"]).line() for r in p.get("IpRanges", [])]
            rules += [Rule(protocol, ports, group=names.get(u["GroupId"], u["GroupId"])).line()
                      for u in p.get("UserIdGroupPairs", [])]
        tags = {t["Key"]: t["Value"] for t in g.get("Tags", [])}
        return self._live(region, Kind.SECURITY_GROUP, g["GroupName"], tags,
                          {"description": str(g.get("Description", ""))}, rules, (str(g["GroupId"]),))

    # ------------------------------------------------------------------ writes

    def put_resource(self, request: base.ResourceRequest) -> None:
        if request.kind is Kind.LOAD_BALANCER:
            self._put_target_group(request)
        else:
            self._put_security_group(request)

    def _tag_list(self, request: base.ResourceRequest) -> list[dict[str, str]]:
        return [{"Key": k, "Value": v} for k, v in request.ownership_tags().items()]

    def _current(self, region: str, kind: Kind, name: str) -> tuple[LiveResource | None, dict[str, Any] | None]:
        """The live resource and its raw description (one lookup by name)."""
        if kind is Kind.LOAD_BALANCER:
            try:
                found = self._call(region, "DescribeTargetGroups", Names=[name])["TargetGroups"]
            except errors.NotFound:
                return None, None
            tags = self._call(region, "DescribeTags", ResourceArns=[found[0]["TargetGroupArn"]])["TagDescriptions"]
            tag_map = {t["Key"]: t["Value"] for d in tags for t in d.get("Tags", [])}
            rule = self._listener_rules(region, set(found[0].get("LoadBalancerArns", []))).get(
                found[0]["TargetGroupArn"])
            return self._lb(region, found[0], tag_map, rule), {**found[0], "rule": rule}
        groups = self._call(region, "DescribeSecurityGroups",
                            Filters=[{"Name": "group-name", "Values": [name]}])["SecurityGroups"]
        if not groups:
            return None, None
        names = {g["GroupId"]: g["GroupName"] for g in groups}
        refs = sorted({u["GroupId"] for p in groups[0].get("IpPermissions", []) for u in p.get("UserIdGroupPairs", [])}
                      - set(names))
        if refs:  # the groups its rules name, by name as the spec does
            found = self._call(region, "DescribeSecurityGroups", GroupIds=refs)["SecurityGroups"]
            names |= {g["GroupId"]: g["GroupName"] for g in found}
        return self._sg(region, groups[0], names), groups[0]

    def _refuse_foreign(self, live: LiveResource, call: str, region: str) -> None:
        if not live.managed:
            raise self._error(errors.Conflict, f"{live.kind.label} {live.name} exists and is not managed by "
                              "reconciler; refusing to change it", call, region)

    def _vpc(self, region: str) -> str:
        key = ("vpc", region, "")
        if key not in self._cache:
            subnet = self._subnets(region)[0]
            found = self._call(region, "DescribeSubnets", SubnetIds=[subnet])["Subnets"]
            self._cache[key] = found[0]["VpcId"]
        return str(self._cache[key])

    def _put_target_group(self, request: base.ResourceRequest) -> None:
        region, s = request.region, dict(request.settings)
        live, raw = self._current(region, Kind.LOAD_BALANCER, request.name)
        hc: dict[str, Any] = {
            "HealthCheckProtocol": s["health_check.protocol"].upper(), "HealthCheckPort": s["health_check.port"],
            "HealthCheckIntervalSeconds": int(float(s["health_check.interval"].rstrip("s"))),
            "HealthCheckTimeoutSeconds": int(float(s["health_check.timeout"].rstrip("s"))),
            "HealthyThresholdCount": int(s["health_check.healthy_threshold"]),
            "UnhealthyThresholdCount": int(s["health_check.unhealthy_threshold"]),
        }
        if "health_check.path" in s:
            hc["HealthCheckPath"] = s["health_check.path"]
        if live is None or raw is None:
            made = self._call(region, "CreateTargetGroup", Name=request.name, Protocol=s["protocol"].upper(),
                              Port=int(s["port"]), VpcId=self._vpc(region), TargetType="instance",
                              Tags=self._tag_list(request), **hc)["TargetGroups"][0]
            self._cache.pop(("tg", region, request.name), None)
            self._sync_rule(region, made["TargetGroupArn"], s, None)
            return
        self._refuse_foreign(live, "ModifyTargetGroup", region)
        now = dict(live.settings)
        fixed = [f for f in _FIXED if now.get(f) != s.get(f)]
        if fixed:
            raise self._error(errors.Conflict, f"target group {request.name}: {', '.join(fixed)} cannot change in "
                              "place on AWS; declare the balancer under a new name", "ModifyTargetGroup", region)
        if any(now.get(k) != s.get(k) for k in _HC):
            self._call(region, "ModifyTargetGroup", TargetGroupArn=raw["TargetGroupArn"], **hc)
        self._sync_rule(region, raw["TargetGroupArn"], s, raw.get("rule"))
        if (live.spec_hash, live.commit) != (request.spec_hash, request.commit):
            self._call(region, "AddTags", ResourceArns=[raw["TargetGroupArn"]], Tags=self._tag_list(request))

    def _sync_rule(self, region: str, tg_arn: str, wanted: Mapping[str, str], rule: Mapping[str, Any] | None) -> None:
        """Make the listener rule forwarding to ``tg_arn`` match ``listener.*`` (create, modify, or delete)."""
        want = {k: v for k, v in wanted.items() if k.startswith("listener.")}
        have = dict((rule or {}).get("settings", {}))
        if want == have:
            return
        conditions = [{"Field": f, "Values": [want[k]]} for k, f in _CONDITIONS.items() if k in want]
        same_listener = rule is not None and want and all(
            want.get(k) == have.get(k) for k in ("listener.load_balancer", "listener.port"))
        if rule is not None and same_listener:
            if any(want.get(k) != have.get(k) for k in _CONDITIONS):
                self._call(region, "ModifyRule", RuleArn=rule["rule"], Conditions=conditions)
            if want["listener.priority"] != have.get("listener.priority"):
                self._call(region, "SetRulePriorities", RulePriorities=[
                    {"RuleArn": rule["rule"], "Priority": int(want["listener.priority"])}])
            return
        if rule is not None:
            self._call(region, "DeleteRule", RuleArn=rule["rule"])
        if want:
            self._call(region, "CreateRule", ListenerArn=self._listener(region, want), Conditions=conditions,
                       Priority=int(want["listener.priority"]),
                       Actions=[{"Type": "forward", "TargetGroupArn": tg_arn}])

    def _listener(self, region: str, want: Mapping[str, str]) -> str:
        name, port = want["listener.load_balancer"], int(want["listener.port"])
        try:
            lbs = self._call(region, "DescribeLoadBalancers", Names=[name])["LoadBalancers"]
        except errors.NotFound as exc:
            raise self._error(errors.NotFound, f"load balancer {name} (named by a listener rule) does not exist",
                              "DescribeLoadBalancers", region) from exc
        arn = lbs[0]["LoadBalancerArn"]
        for listener in self._pages(region, "DescribeListeners", "Listeners", LoadBalancerArn=arn):
            if int(listener["Port"]) == port:
                return str(listener["ListenerArn"])
        raise self._error(errors.NotFound, f"load balancer {name} has no listener on port {port}",
                          "DescribeListeners", region)

    def _put_security_group(self, request: base.ResourceRequest) -> None:
        region = request.region
        live, raw = self._current(region, Kind.SECURITY_GROUP, request.name)
        if live is None or raw is None:
            created = self._call(region, "CreateSecurityGroup", GroupName=request.name,
                                 Description=dict(request.settings)["description"], VpcId=self._vpc(region),
                                 TagSpecifications=[{"ResourceType": "security-group",
                                                     "Tags": self._tag_list(request)}])
            group_id, current = str(created["GroupId"]), set[str]()
        else:
            self._refuse_foreign(live, "AuthorizeSecurityGroupIngress", region)
            group_id, current = str(raw["GroupId"]), set(live.rules)
            if (live.spec_hash, live.commit) != (request.spec_hash, request.commit):
                self._call(region, "CreateTags", Resources=[group_id], Tags=self._tag_list(request))
        wanted = set(request.rules)
        add, remove = sorted(wanted - current), sorted(current - wanted)
        if add:
            self._call(region, "AuthorizeSecurityGroupIngress", GroupId=group_id,
                       IpPermissions=self._permissions(region, add))
        if remove:
            self._call(region, "RevokeSecurityGroupIngress", GroupId=group_id,
                       IpPermissions=self._permissions(region, remove))

    def _permissions(self, region: str, lines: list[str]) -> list[dict[str, Any]]:
        rules = [Rule.parse(line) for line in lines]
        refs = sorted({r.group for r in rules if r.group})
        ids: dict[str, str] = {}
        if refs:
            found = self._call(region, "DescribeSecurityGroups",
                               Filters=[{"Name": "group-name", "Values": refs}])["SecurityGroups"]
            ids = {g["GroupName"]: g["GroupId"] for g in found}
            missing = [n for n in refs if n not in ids]
            if missing:
                raise self._error(errors.NotFound, f"security group(s) {', '.join(missing)} named by a rule do "
                                  "not exist", "DescribeSecurityGroups", region)
        out = []
        for r in rules:
            perm: dict[str, Any] = {"IpProtocol": "-1" if r.protocol == "all" else r.protocol}
            if r.protocol in ("tcp", "udp"):
                perm["FromPort"], perm["ToPort"] = r.port_range()
            elif r.protocol == "icmp":
                perm["FromPort"], perm["ToPort"] = -1, -1
            if r.group:
                perm["UserIdGroupPairs"] = [{"GroupId": ids[r.group]}]
            else:
                perm["IpRanges"] = [{"CidrIp": r.cidr}]
            out.append(perm)
        return out

    def destroy_resource(self, region: str, kind: Kind, name: str) -> None:
        live, raw = self._current(region, kind, name)
        if live is None or raw is None:
            return
        call = "DeleteTargetGroup" if kind is Kind.LOAD_BALANCER else "DeleteSecurityGroup"
        if not live.managed:
            raise self._error(errors.Conflict, f"{kind.label} {name} is not managed by reconciler; refusing to "
                              "destroy it", call, region)
        if kind is Kind.LOAD_BALANCER:
            if raw.get("rule"):  # a target group a rule forwards to cannot be deleted: the rule goes first
                self._call(region, "DeleteRule", RuleArn=raw["rule"]["rule"])
            self._call(region, call, TargetGroupArn=raw["TargetGroupArn"])
            self._cache.pop(("tg", region, name), None)
        else:
            self._call(region, call, GroupId=raw["GroupId"])

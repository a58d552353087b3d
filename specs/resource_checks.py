"""``load_balancers:`` and ``security_groups:`` of a spec: the rules cerberus cannot express, and the model.

Where a resource lives defaults to where the clusters naming it run, so the common case is one line per
balancer; defaults are filled in here, once, so every later diff compares complete values.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from reconciler.core import model
from reconciler.core.resources import GLOBAL, GLOBAL_PROVIDERS, Kind, Placement, ResourceSpec, Rule
from specs import yamlnodes

Bad = Callable[[str, str], None]

_PLACEMENT_KEYS = ("provider", "account", "regions")


def check(doc: dict[str, Any], bad: Bad) -> None:
    """Names unique per kind, ports and CIDRs well formed, one source per rule, a placement for each."""
    clusters = [c for c in (doc.get("clusters") or []) if isinstance(c, dict)]
    for kind in Kind:
        seen: dict[str, int] = {}
        for i, r in enumerate(doc.get(kind.spec_field) or []):
            if not isinstance(r, dict) or not isinstance(r.get("name"), str):
                continue
            at = f"{kind.spec_field}[{i}]"
            name = r["name"]
            if name in seen:
                bad(f"{at}.name", f"{kind.label} {name!r} is declared twice (also {kind.spec_field}[{seen[name]}])")
            seen.setdefault(name, i)
            users = [c for c in clusters if name in (c.get(kind.spec_field) or [])]
            if not users and not all(r.get(k) for k in _PLACEMENT_KEYS):
                bad(at, f"{kind.label} {name!r} is named by no cluster of this application; give provider, "
                        "account and regions")
            _check_global(at, kind, r, users, bad)
            if kind is Kind.SECURITY_GROUP:
                for j, rule in enumerate(r.get("ingress") or []):
                    _check_rule(f"{at}.ingress[{j}]", rule, bad)
            hc = r.get("health_check") or {}
            if hc.get("path") and (hc.get("protocol") or r.get("protocol") or "http") == "tcp":
                bad(f"{at}.health_check.path", "a tcp health check has no path")
            listener = r.get("listener")
            if isinstance(listener, dict) and not (listener.get("path") or listener.get("host")):
                bad(f"{at}.listener", "a listener rule matches a path, a host or both; give at least one")


def _check_global(at: str, kind: Kind, r: dict[str, Any], users: list[dict[str, Any]], bad: Bad) -> None:
    """``regions: [global]`` only where the provider has account-wide resources; GCE firewall rules are always
    global (a network's), and listener rules are an AWS notion."""
    providers = {str(r["provider"])} if r.get("provider") else {str(c.get("provider")) for c in users}
    regions = [str(x) for x in (r.get("regions") or [])]
    if GLOBAL in regions and (len(regions) > 1 or not providers <= GLOBAL_PROVIDERS):
        bad(f"{at}.regions", f"'{GLOBAL}' is a placement of its own, only on {', '.join(sorted(GLOBAL_PROVIDERS))}; "
                             "give it alone")
    on_global = providers & GLOBAL_PROVIDERS
    if on_global and kind is Kind.SECURITY_GROUP and regions and regions != [GLOBAL]:
        bad(f"{at}.regions", "GCE firewall rules belong to the network, not a region: leave regions out "
                             f"(or give [{GLOBAL}])")
    if on_global and kind is Kind.SECURITY_GROUP and not r.get("ingress"):
        bad(f"{at}.ingress", "a GCE security group is its firewall rules: give at least one ingress rule")
    if on_global and kind is Kind.LOAD_BALANCER and r.get("listener"):
        bad(f"{at}.listener", "listener rules are made on AWS only; a GCE backend service is reached through "
                              "its URL map, made elsewhere")


def _check_rule(at: str, rule: dict[str, Any], bad: Bad) -> None:
    if bool(rule.get("cidr")) == bool(rule.get("group")):
        bad(at, "give exactly one source: cidr (addresses) or group (another security group)")
    cidr = rule.get("cidr")
    if isinstance(cidr, str) and cidr:
        try:
            ipaddress.IPv4Network(cidr, strict=True)
        except ValueError as exc:
            bad(f"{at}.cidr", f"not a network: {exc}")
    ports = rule.get("ports", "all")
    try:
        low, high = Rule("tcp", str(ports)).port_range()
    except ValueError:
        return  # the pattern rule reports it
    if not 0 <= low <= high <= 65535 or (isinstance(ports, int) and not 0 < ports <= 65535):
        bad(f"{at}.ports", f"ports must be within 1-65535, low to high; got {ports}")
    if rule.get("protocol") in ("icmp", "all") and str(ports) != "all":
        bad(f"{at}.ports", f"protocol {rule['protocol']} has no ports; leave ports out")


def to_model(doc: dict[str, Any], lines: dict[str, int], file: str,
             clusters: tuple[model.ClusterSpec, ...]) -> tuple[ResourceSpec, ...]:
    """The resources of one validated spec, defaults filled in."""
    out: list[ResourceSpec] = []
    app = str(doc["application"])
    for kind in Kind:
        for i, r in enumerate(doc.get(kind.spec_field) or []):
            at = f"{kind.spec_field}[{i}]"
            name = str(r["name"])
            users = [c for c in clusters if name in (c.launch.load_balancers if kind is Kind.LOAD_BALANCER
                                                     else c.launch.security_groups)]
            rules = tuple(_rule(x) for x in r.get("ingress") or [])
            paths = [f"{at}.ingress[{j}].group" for j in range(len(rules))]
            out.append(ResourceSpec(
                kind=kind, name=name, application=app, placements=_placements(r, users),
                settings=_lb_settings(r) if kind is Kind.LOAD_BALANCER else _sg_settings(r, app),
                rules=rules, path=at,
                source=model.SourceRef(file, yamlnodes.line_of(lines, at),
                                       fields=tuple((p, yamlnodes.line_of(lines, p)) for p in paths)),
            ))
    return tuple(out)


def _placements(r: dict[str, Any], users: list[model.ClusterSpec]) -> tuple[Placement, ...]:
    provider, account, regions = r.get("provider"), r.get("account"), list(r.get("regions") or [])
    if provider and account and regions:
        return tuple((str(provider), str(account), str(reg)) for reg in regions)
    out: dict[Placement, None] = {}
    for c in users:
        prov = str(provider or c.provider)
        for reg in regions or ([GLOBAL] if prov in GLOBAL_PROVIDERS else c.regions):
            out[(str(provider or c.provider), str(account or c.account), str(reg))] = None
    return tuple(out)


def _seconds(value: Any, default: str) -> str:
    from specs import schema  # noqa: PLC0415 - schema imports this module

    return f"{schema.parse_seconds(default if value is None else value):g}s"


def _lb_settings(r: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    protocol = str(r.get("protocol") or "http")
    port = int(r.get("port") or 80)
    hc = r.get("health_check") or {}
    hc_protocol = str(hc.get("protocol") or (protocol if protocol != "tcp" else "tcp"))
    settings = {
        "protocol": protocol,
        "port": str(port),
        "health_check.protocol": hc_protocol,
        "health_check.port": str(int(hc.get("port") or port)),
        "health_check.interval": _seconds(hc.get("interval"), "30s"),
        "health_check.timeout": _seconds(hc.get("timeout"), "5s"),
        "health_check.healthy_threshold": str(int(hc.get("healthy_threshold") or 3)),
        "health_check.unhealthy_threshold": str(int(hc.get("unhealthy_threshold") or 3)),
    }
    if hc_protocol != "tcp":
        settings["health_check.path"] = str(hc.get("path") or "/")
    listener = r.get("listener") or {}
    for key in ("load_balancer", "port", "priority", "path", "host"):
        if listener.get(key) is not None:
            settings[f"listener.{key}"] = str(listener[key])
    return tuple(sorted(settings.items()))


def _sg_settings(r: dict[str, Any], app: str) -> tuple[tuple[str, str], ...]:
    return (("description", str(r.get("description") or f"{app}: managed by reconciler")),)


def _rule(x: dict[str, Any]) -> Rule:
    protocol = str(x["protocol"])
    ports = str(x.get("ports", "all"))
    return Rule(protocol, ports, cidr=str(x.get("cidr") or ""), group=str(x.get("group") or ""))

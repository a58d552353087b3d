"""GCP load balancers and security groups: backend services with their health checks, and firewall rules.

* A load balancer is a backend service and a health check of the same name: global ones at the placement
  ``global`` (the default on GCP), regional ones (``regionBackendServices``, ``regionHealthChecks``) in a
  region. The server groups of the clusters naming it join it as backends (``provider.py``).
* A security group is a set of firewall rules on the account's network, one per ingress rule, named
  ``NAME-<hash of the rule>``, each targeting the network tag ``NAME`` (the tag the templates of the groups
  naming it carry). A rule naming another group becomes ``sourceTags``. Firewall rules are global.
* GCE keeps no labels on backend services, health checks or firewall rules: ownership (managed-by,
  application, spec hash, commit) lives in their ``description`` as JSON, as on MIGs. A resource without it
  is reported unmanaged and never changed or deleted.
* Reads are bulk: per placement one paginated list per kind (global: backend services, health checks and
  firewalls; a region: its backend services and health checks), whatever the number of resources.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from google.cloud import compute_v1

from providers import base
from providers.gcp import edge
from reconciler.core import errors, model
from reconciler.core.resources import GLOBAL, Kind, LiveResource, Rule

_HC_TYPES = {"http": "HTTP", "https": "HTTPS", "tcp": "TCP"}
_HC_FIELD = {"HTTP": "http_health_check", "HTTPS": "https_health_check", "TCP": "tcp_health_check"}
FIREWALL_PRIORITY = 1000


class Clients:
    """The Compute clients resources need, built with the provider's client options."""

    def __init__(self, **kw: Any) -> None:
        self.health_checks = compute_v1.HealthChecksClient(**kw)
        self.region_backends = compute_v1.RegionBackendServicesClient(**kw)
        self.region_health_checks = compute_v1.RegionHealthChecksClient(**kw)
        self.firewalls = compute_v1.FirewallsClient(**kw)

    def close(self) -> None:
        for client in (self.health_checks, self.region_backends, self.region_health_checks, self.firewalls):
            client.transport.close()  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class Scope:
    """One scope's backend-service and health-check calls: global, or one region's."""

    region: str
    backends: Any
    health_checks: Any
    prefix: str  # "" or "region" in the API's method names
    where: dict[str, str]  # the scope's request fields

    def method(self, kind: str, verb: str) -> str:
        name = f"{self.prefix}{kind[0].upper()}{kind[1:]}" if self.prefix else kind
        return f"{name}.{verb}"

    def request(self, name: str) -> Any:
        """A request type by its global name: ``InsertBackendServiceRequest`` or its regional twin."""
        if self.prefix:
            name = name.replace("BackendService", "RegionBackendService").replace("HealthCheck",
                                                                                "RegionHealthCheck")
        return getattr(compute_v1, name)


def _ownership(request: base.ResourceRequest, **extra: str) -> str:
    return json.dumps({**request.ownership_tags(), **extra}, sort_keys=True, separators=(",", ":"))


def _meta(description: str) -> dict[str, Any]:
    try:
        meta = json.loads(description or "{}")
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def firewall_name(group: str, line: str) -> str:
    """``NAME-<hash>``: one firewall rule per ingress rule, found again by name after a crash."""
    return f"{group}-{hashlib.sha256(line.encode()).hexdigest()[:10]}"


def _firewall_lines(fw: compute_v1.Firewall) -> list[str]:
    out = []
    for a in fw.allowed:
        protocol = str(a.I_p_protocol).lower()
        ports = list(a.ports) if protocol in ("tcp", "udp") and a.ports else ["all"]
        for p in ports:
            out += [Rule(protocol, p, cidr=c).line() for c in fw.source_ranges]
            out += [Rule(protocol, p, group=t).line() for t in fw.source_tags]
    return out


class GcpResources:
    """Mixed into ``GcpProvider`` (which brings ``_run``, ``_pages``, ``_mutate``, ``project``, ``network``,
    ``backends`` and ``rc``)."""

    name: str
    account: str
    project: str
    network: str
    backends: compute_v1.BackendServicesClient
    rc: Clients
    _run: Callable[..., Any]
    _pages: Callable[..., Iterator[Any]]
    _mutate: Callable[..., None]

    def _api(self, region: str) -> Scope:
        if region == GLOBAL:
            return Scope(GLOBAL, self.backends, self.rc.health_checks, "", {"project": self.project})
        return Scope(region, self.rc.region_backends, self.rc.region_health_checks, "region",
                    {"project": self.project, "region": region})

    def _find_backend(self, region: str, bs: str) -> tuple[compute_v1.BackendService, Scope]:
        """The backend service a group in ``region`` joins by that name: the global one, else the region's own
        (one request more, for regional ones only). Neither: the global lookup's NotFound."""
        missing: errors.NotFound | None = None
        for api in (self._api(GLOBAL), self._api(region)):
            try:
                svc = self._run(api.method("backendServices", "get"), region, api.backends.get, **api.where,
                                backend_service=bs)
            except errors.NotFound as exc:
                missing = missing or exc
                continue
            return svc, api
        assert missing is not None
        raise missing

    def _err(self, cls: type[errors.ProviderError], message: str, call: str, region: str) -> errors.ProviderError:
        return cls(f"{message} (project {self.project})", provider=self.name, call=call, account=self.account,
                   region=region)

    # ------------------------------------------------------------------ reads

    def list_resources(self, region: str) -> list[LiveResource]:
        """Every backend service (with its health check) of the placement, and at ``global`` every firewall
        rule: one paginated list per kind."""
        api = self._api(region)
        services = self._list(api, "backendServices", api.backends, "ListBackendServicesRequest")
        checks = {edge.rel(h.self_link): h
                  for h in self._list(api, "healthChecks", api.health_checks, "ListHealthChecksRequest")}
        out = [self._lb(region, s, checks) for s in services]
        if region == GLOBAL:
            out += self._security_groups(self._firewalls())
        return out

    def _list(self, api: Scope, kind: str, client: Any, request: str) -> list[Any]:
        req = api.request(request)(**api.where)
        return [i for page in self._pages(api.method(kind, "list"), api.region, client.list, req) for i in page.items]

    def _firewalls(self) -> list[compute_v1.Firewall]:
        req = compute_v1.ListFirewallsRequest(project=self.project)
        return [f for page in self._pages("firewalls.list", GLOBAL, self.rc.firewalls.list, req) for f in page.items]

    def _live(self, region: str, kind: Kind, name: str, meta: Mapping[str, Any], settings: Mapping[str, str],
              rules: list[str], aliases: tuple[str, ...] = ()) -> LiveResource:
        return LiveResource(kind=kind, name=name, provider=self.name, account=self.account, region=region,
                            managed=meta.get(model.TAG_MANAGED_BY) == model.MANAGED_BY,
                            application=str(meta.get(model.TAG_APPLICATION, "")),
                            settings=tuple(sorted(settings.items())), rules=tuple(sorted(rules)),
                            spec_hash=str(meta.get(model.TAG_SPEC_HASH, "")),
                            commit=str(meta.get(model.TAG_COMMIT, "")), aliases=aliases)

    def _lb(self, region: str, svc: compute_v1.BackendService,
            checks: Mapping[str, compute_v1.HealthCheck]) -> LiveResource:
        settings = {"protocol": str(svc.protocol).lower(), "port": str(svc.port or 80)}
        hc = next((checks[edge.rel(link)] for link in svc.health_checks if edge.rel(link) in checks), None)
        if hc is not None:
            settings.update(_hc_settings(hc))
        return self._live(region, Kind.LOAD_BALANCER, svc.name, _meta(svc.description), settings, [])

    def _security_groups(self, firewalls: list[compute_v1.Firewall]) -> list[LiveResource]:
        """Ours grouped by the security group they belong to; every other one as an unmanaged group of its own,
        known also by the network tags it targets (clusters name those)."""
        ours: dict[str, list[compute_v1.Firewall]] = {}
        out = []
        for fw in firewalls:
            meta = _meta(fw.description)
            if meta.get(model.TAG_MANAGED_BY) == model.MANAGED_BY and meta.get("security-group"):
                ours.setdefault(str(meta["security-group"]), []).append(fw)
            else:
                out.append(self._live(GLOBAL, Kind.SECURITY_GROUP, fw.name, meta,
                                      {"description": str(fw.description)}, _firewall_lines(fw),
                                      tuple(t for t in fw.target_tags if t != fw.name)))
        for group, fws in sorted(ours.items()):
            metas = [_meta(f.description) for f in fws]
            meta = dict(metas[0])
            if len({(m.get(model.TAG_SPEC_HASH), m.get(model.TAG_COMMIT)) for m in metas}) > 1:
                meta[model.TAG_SPEC_HASH] = meta[model.TAG_COMMIT] = ""  # half updated: not a drift
            out.append(self._live(GLOBAL, Kind.SECURITY_GROUP, group, meta,
                                  {"description": str(meta.get("description", ""))},
                                  [line for f in fws for line in _firewall_lines(f)]))
        return out

    # ------------------------------------------------------------------ writes

    def put_resource(self, request: base.ResourceRequest) -> None:
        if request.kind is Kind.LOAD_BALANCER:
            self._put_backend_service(request)
        else:
            self._put_firewalls(request)

    def _res_get(self, api: Scope, kind: str, client: Any, **name: str) -> Any:
        try:
            return self._run(api.method(kind, "get"), api.region, client.get, **api.where, **name)
        except errors.NotFound:
            return None

    def _refuse_foreign(self, found: Any, what: str, call: str, region: str) -> None:
        if _meta(found.description).get(model.TAG_MANAGED_BY) != model.MANAGED_BY:
            raise self._err(errors.Conflict, f"{what} exists and is not managed by reconciler; refusing to change "
                            "it", call, region)

    def _put_backend_service(self, request: base.ResourceRequest) -> None:
        """The health check first (the backend service names it), then the backend service; each created,
        or patched where it differs. A patch keeps the backends (the server groups') as they are."""
        api, name, s = self._api(request.region), request.name, dict(request.settings)
        if any(k.startswith("listener.") for k in s):
            raise self._err(errors.ProviderError, f"load balancer {name}: listener rules are made on AWS only",
                            api.method("backendServices", "insert"), api.region)
        svc = self._res_get(api, "backendServices", api.backends, backend_service=name)
        if svc is not None:
            self._refuse_foreign(svc, f"backend service {name}", api.method("backendServices", "patch"), api.region)
        hc = self._res_get(api, "healthChecks", api.health_checks, health_check=name)
        wanted_hc = _health_check(name, s, _ownership(request))
        if hc is None:
            self._mutate(api.method("healthChecks", "insert"), api.region, api.health_checks.insert_unary,
                         api.request("InsertHealthCheckRequest"), **api.where, health_check_resource=wanted_hc)
            hc = self._res_get(api, "healthChecks", api.health_checks, health_check=name)
            if hc is None:
                raise self._err(errors.NotFound, f"health check {name} is gone right after its creation",
                                api.method("healthChecks", "get"), api.region)
        else:
            self._refuse_foreign(hc, f"health check {name}", api.method("healthChecks", "patch"), api.region)
            if _hc_settings(hc) != _hc_settings(wanted_hc) or hc.description != wanted_hc.description:
                self._mutate(api.method("healthChecks", "patch"), api.region, api.health_checks.patch_unary,
                             api.request("PatchHealthCheckRequest"), **api.where, health_check=name,
                             health_check_resource=wanted_hc)
        wanted = compute_v1.BackendService(name=name, protocol=s["protocol"].upper(), port=int(s["port"]),
                                           health_checks=[hc.self_link], description=_ownership(request))
        if svc is None:
            self._mutate(api.method("backendServices", "insert"), api.region, api.backends.insert_unary,
                         api.request("InsertBackendServiceRequest"), **api.where, backend_service_resource=wanted)
            return
        for _ in range(2):
            same = (svc.protocol, svc.port, [edge.rel(x) for x in svc.health_checks], svc.description) == (
                wanted.protocol, wanted.port, [edge.rel(hc.self_link)], wanted.description)
            if same:
                return
            wanted.fingerprint = svc.fingerprint
            try:
                self._mutate(api.method("backendServices", "patch"), api.region, api.backends.patch_unary,
                             api.request("PatchBackendServiceRequest"), **api.where, backend_service=name,
                             backend_service_resource=wanted)
                return
            except errors.Conflict:  # a stale fingerprint: read it again once
                svc = self._res_get(api, "backendServices", api.backends, backend_service=name)
                if svc is None:
                    break
        raise self._err(errors.Conflict, f"backend service {name} keeps changing (stale fingerprint twice); try "
                        "again", api.method("backendServices", "patch"), api.region)

    def _put_firewalls(self, request: base.ResourceRequest) -> None:
        """One firewall rule per ingress rule: missing ones inserted, edited ones patched back, extra ones
        deleted last (so the group never lets less through than both the old and the new rules agree on)."""
        name = request.name
        if not request.rules:
            raise self._err(errors.ProviderError, f"security group {name}: GCE keeps no empty firewall rules; give "
                            "at least one ingress rule", "firewalls.insert", GLOBAL)
        names = {firewall_name(name, line) for line in request.rules}
        mine: dict[str, compute_v1.Firewall] = {}
        for fw in self._firewalls():
            meta = _meta(fw.description)
            if meta.get("security-group") == name and meta.get(model.TAG_MANAGED_BY) == model.MANAGED_BY:
                mine[fw.name] = fw
            elif fw.name == name or fw.name in names:  # the group's own name, or one we would make
                raise self._err(errors.Conflict, f"firewall rule {fw.name} exists and is not managed by "
                                "reconciler; refusing to change it", "firewalls.insert", GLOBAL)
        description = dict(request.settings).get("description", "")
        keep = set()
        for line in sorted(request.rules):
            fw_name = firewall_name(name, line)
            keep.add(fw_name)
            wanted = self._firewall(fw_name, name, line, _ownership(request, **{"security-group": name,
                                                                                "description": description}))
            found = mine.get(fw_name)
            if found is None:
                self._mutate("firewalls.insert", GLOBAL, self.rc.firewalls.insert_unary,
                             compute_v1.InsertFirewallRequest, project=self.project, firewall_resource=wanted)
            elif _firewall_lines(found) != [line] or found.description != wanted.description or \
                    list(found.target_tags) != [name]:
                self._mutate("firewalls.patch", GLOBAL, self.rc.firewalls.patch_unary,
                             compute_v1.PatchFirewallRequest, project=self.project, firewall=fw_name,
                             firewall_resource=wanted)
        for fw_name in sorted(set(mine) - keep):
            self._res_delete("firewalls.delete", GLOBAL, self.rc.firewalls.delete_unary,
                             compute_v1.DeleteFirewallRequest, project=self.project, firewall=fw_name)

    def _firewall(self, fw_name: str, group: str, line: str, description: str) -> compute_v1.Firewall:
        rule = Rule.parse(line)
        allowed = compute_v1.Allowed(I_p_protocol=rule.protocol)
        if rule.protocol in ("tcp", "udp") and rule.ports != "all":
            allowed.ports = [rule.ports]
        fw = compute_v1.Firewall(name=fw_name, network=self.network, direction="INGRESS",
                                 priority=FIREWALL_PRIORITY, allowed=[allowed], target_tags=[group],
                                 description=description)
        if rule.group:
            fw.source_tags = [rule.group]
        else:
            fw.source_ranges = [rule.cidr]
        return fw

    def destroy_resource(self, region: str, kind: Kind, name: str) -> None:
        """Ours only; what is gone is done. A backend service with backends is refused by GCE (in use)."""
        if kind is Kind.SECURITY_GROUP:
            fws = [fw for fw in self._firewalls() if _meta(fw.description).get("security-group") == name]
            for fw in fws:
                self._refuse_foreign(fw, f"firewall rule {fw.name}", "firewalls.delete", GLOBAL)
            for fw in fws:
                self._res_delete("firewalls.delete", GLOBAL, self.rc.firewalls.delete_unary,
                             compute_v1.DeleteFirewallRequest, project=self.project, firewall=fw.name)
            return
        api = self._api(region)
        svc = self._res_get(api, "backendServices", api.backends, backend_service=name)
        hc = self._res_get(api, "healthChecks", api.health_checks, health_check=name)
        for found, kind_name, what in ((svc, "backendServices", "backend service"),
                                       (hc, "healthChecks", "health check")):
            if found is not None:
                self._refuse_foreign(found, f"{what} {name}", api.method(kind_name, "delete"), api.region)
        if svc is not None:
            if svc.backends:
                raise self._err(errors.Conflict, f"backend service {name} still has {len(svc.backends)} "
                                "backend(s); refusing to delete it", api.method("backendServices", "delete"),
                                api.region)
            self._res_delete(api.method("backendServices", "delete"), api.region, api.backends.delete_unary,
                         api.request("DeleteBackendServiceRequest"), **api.where, backend_service=name)
        if hc is not None:
            self._res_delete(api.method("healthChecks", "delete"), api.region, api.health_checks.delete_unary,
                         api.request("DeleteHealthCheckRequest"), **api.where, health_check=name)

    def _res_delete(self, method: str, scope: str, fn: Callable[..., Any], request_type: Any, /, **fields: Any) -> None:
        try:
            self._mutate(method, scope, fn, request_type, **fields)
        except errors.NotFound:
            return


def _health_check(name: str, s: Mapping[str, str], description: str) -> compute_v1.HealthCheck:
    kind = _HC_TYPES[s["health_check.protocol"]]
    probe: dict[str, Any] = {"port": int(s["health_check.port"])}
    if kind != "TCP":
        probe["request_path"] = s.get("health_check.path", "/")
    hc = compute_v1.HealthCheck(
        name=name, type_=kind, description=description,
        check_interval_sec=int(float(s["health_check.interval"].rstrip("s"))),
        timeout_sec=int(float(s["health_check.timeout"].rstrip("s"))),
        healthy_threshold=int(s["health_check.healthy_threshold"]),
        unhealthy_threshold=int(s["health_check.unhealthy_threshold"]))
    probe_type = {"HTTP": compute_v1.HTTPHealthCheck, "HTTPS": compute_v1.HTTPSHealthCheck,
                  "TCP": compute_v1.TCPHealthCheck}[kind]
    setattr(hc, _HC_FIELD[kind], probe_type(**probe))
    return hc


def _hc_settings(hc: compute_v1.HealthCheck) -> dict[str, str]:
    kind = str(hc.type_).upper()
    out = {"health_check.protocol": kind.lower(), "health_check.interval": f"{hc.check_interval_sec}s",
           "health_check.timeout": f"{hc.timeout_sec}s", "health_check.healthy_threshold": str(hc.healthy_threshold),
           "health_check.unhealthy_threshold": str(hc.unhealthy_threshold)}
    field = _HC_FIELD.get(kind)
    if field is not None:
        probe = getattr(hc, field)
        out["health_check.port"] = str(probe.port)
        if kind != "TCP":
            out["health_check.path"] = str(probe.request_path or "/")
    return out

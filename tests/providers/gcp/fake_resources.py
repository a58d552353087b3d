"""The Compute double's load-balancing and firewall part: backend services (global and regional), health
checks (global and regional) and firewall rules, as GCE answers them.

Mixed into ``ComputeDouble``: bodies parsed with the library's message types (unknown fields rejected),
lists paged, patches merged, and GCE's refusals kept: a backend service naming a missing health check, deleting
a backend service that has backends or a health check a backend service names (``resourceInUseByAnotherResource``),
inserting a name that exists (409), a stale fingerprint (412).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from google.cloud import compute_v1
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

P = "/compute/v1/projects/<project>"
GLOBAL = "global"


class ApiError(Exception):
    def __init__(self, status: int, message: str, reason: str) -> None:
        super().__init__(message)
        self.status, self.message, self.reason = status, message, reason


def resource_rules() -> list[Rule]:
    out = []
    for scope, prefix in (("", f"{P}/global"), ("r", f"{P}/regions/<region>")):
        for kind in ("backendServices", "healthChecks"):
            short = {"backendServices": "bs", "healthChecks": "hc"}[kind]
            out += [Rule(f"{prefix}/{kind}", endpoint=f"{scope}{short}_list", methods=["GET"]),
                    Rule(f"{prefix}/{kind}", endpoint=f"{scope}{short}_insert", methods=["POST"]),
                    Rule(f"{prefix}/{kind}/<name>", endpoint=f"{scope}{short}_delete", methods=["DELETE"])]
        out += [Rule(f"{prefix}/healthChecks/<name>", endpoint=f"{scope}hc_get", methods=["GET"]),
                Rule(f"{prefix}/healthChecks/<name>", endpoint=f"{scope}hc_patch", methods=["PATCH"])]
    out += [Rule(f"{P}/regions/<region>/backendServices/<name>", endpoint="rbs_get", methods=["GET"]),
            Rule(f"{P}/regions/<region>/backendServices/<name>", endpoint="rbs_patch", methods=["PATCH"]),
            Rule(f"{P}/regions/<region>/backendServices/<name>", endpoint="rbs_update", methods=["PUT"]),
            Rule(f"{P}/regions/<region>/backendServices/<name>/getHealth", endpoint="rbs_health", methods=["POST"]),
            Rule(f"{P}/global/firewalls", endpoint="fw_list", methods=["GET"]),
            Rule(f"{P}/global/firewalls", endpoint="fw_insert", methods=["POST"]),
            Rule(f"{P}/global/firewalls/<name>", endpoint="fw_get", methods=["GET"]),
            Rule(f"{P}/global/firewalls/<name>", endpoint="fw_patch", methods=["PATCH"]),
            Rule(f"{P}/global/firewalls/<name>", endpoint="fw_delete", methods=["DELETE"])]
    return out


class ResourceDouble:
    """State and handlers; ``ComputeDouble`` brings ``_body``, ``_page``, ``_operation``, ``_link``, ``_ids``."""

    project: str
    backend_services: dict[str, dict[str, Any]]
    _ids: Iterator[int]
    _body: Callable[..., dict[str, Any]]
    _page: Callable[[Request, list[dict[str, Any]]], Response]
    _operation: Callable[..., Response]
    _link: Callable[[str], str]
    group_health: Callable[[Request], Response]

    def _init_resources(self) -> None:
        self.region_backend_services: dict[tuple[str, str], dict[str, Any]] = {}
        self.health_checks: dict[tuple[str, str], dict[str, Any]] = {}
        """(region or "global", name) -> health check."""
        self.firewalls: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ test helpers

    def add_foreign_firewall(self, name: str, target_tags: list[str], ranges: tuple[str, ...] = ("0.0.0.0/0",)
                             ) -> None:
        self.firewalls[name] = {"name": name, "network": "global/networks/default", "direction": "INGRESS",
                                "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}], "sourceRanges": list(ranges),
                                "targetTags": target_tags, "selfLink": self._link(f"global/firewalls/{name}")}

    def firewalls_of(self, group: str) -> dict[str, dict[str, Any]]:
        """Our firewall rules of one security group, by name."""
        return {n: f for n, f in self.firewalls.items()
                if json.loads(f.get("description") or "{}").get("security-group") == group}

    def backend_service(self, name: str, region: str = GLOBAL) -> dict[str, Any]:
        return self.backend_services[name] if region == GLOBAL else self.region_backend_services[(region, name)]

    # ------------------------------------------------------------------ helpers

    def _services(self, region: str | None) -> dict[Any, dict[str, Any]]:
        return self.backend_services if region is None else self.region_backend_services

    def _skey(self, region: str | None, name: str) -> Any:
        return name if region is None else (region, name)

    def _scope(self, region: str | None) -> str:
        return GLOBAL if region is None else f"regions/{region}"

    def _check_hcs(self, doc: dict[str, Any]) -> None:
        for link in doc.get("healthChecks", []):
            parts = link.split("/")
            region = parts[parts.index("regions") + 1] if "regions" in parts else GLOBAL
            if (region, parts[-1]) not in self.health_checks:
                raise ApiError(400, f"health check {link} not found", "invalid")

    # ------------------------------------------------------------------ backend services

    def _bs_list(self, request: Request, region: str | None) -> Response:
        items = [v for k, v in sorted(self._services(region).items(), key=lambda kv: str(kv[0]))
                 if region is None or k[0] == region]
        return self._page(request, items)

    def on_bs_list(self, request: Request, project: str) -> Response:
        return self._bs_list(request, None)

    def on_rbs_list(self, request: Request, project: str, region: str) -> Response:
        return self._bs_list(request, region)

    def _bs_insert(self, request: Request, region: str | None) -> Response:
        if request.args.get("requestId") in getattr(self, "request_ids", {}):
            return self._operation(request, "", region)
        doc = self._body(request, compute_v1.BackendService)
        store, key = self._services(region), self._skey(region, doc["name"])
        if key in store:
            raise ApiError(409, f"backend service {doc['name']} already exists", "alreadyExists")
        self._check_hcs(doc)
        path = f"{self._scope(region)}/backendServices/{doc['name']}"
        store[key] = {"backends": [], **doc, "fingerprint": f"fp-{next(self._ids)}", "selfLink": self._link(path)}
        return self._operation(request, path, region)

    def on_bs_insert(self, request: Request, project: str) -> Response:
        return self._bs_insert(request, None)

    def on_rbs_insert(self, request: Request, project: str, region: str) -> Response:
        return self._bs_insert(request, region)

    def _bs_delete(self, region: str | None, name: str, request: Request) -> Response:
        store, key = self._services(region), self._skey(region, name)
        if key not in store:
            raise ApiError(404, f"backend service {name} not found", "notFound")
        if store[key].get("backends"):
            raise ApiError(400, f"backend service {name} has backends", "resourceInUseByAnotherResource")
        del store[key]
        return self._operation(request, f"{self._scope(region)}/backendServices/{name}", region)

    def on_bs_delete(self, request: Request, project: str, name: str) -> Response:
        return self._bs_delete(None, name, request)

    def on_rbs_delete(self, request: Request, project: str, region: str, name: str) -> Response:
        return self._bs_delete(region, name, request)

    def on_rbs_get(self, request: Request, project: str, region: str, name: str) -> Response:
        if (region, name) not in self.region_backend_services:
            raise ApiError(404, f"backend service {name} not found in {region}", "notFound")
        return _json(self.region_backend_services[(region, name)])

    def on_rbs_patch(self, request: Request, project: str, region: str, name: str) -> Response:
        if (region, name) not in self.region_backend_services:
            raise ApiError(404, f"backend service {name} not found in {region}", "notFound")
        return self.write_backend_service(request, self.region_backend_services[(region, name)], full=False,
                                          path=f"regions/{region}/backendServices/{name}", region=region)

    def on_rbs_update(self, request: Request, project: str, region: str, name: str) -> Response:
        if (region, name) not in self.region_backend_services:
            raise ApiError(404, f"backend service {name} not found in {region}", "notFound")
        return self.write_backend_service(request, self.region_backend_services[(region, name)], full=True,
                                          path=f"regions/{region}/backendServices/{name}", region=region)

    def on_rbs_health(self, request: Request, project: str, region: str, name: str) -> Response:
        if (region, name) not in self.region_backend_services:
            raise ApiError(404, f"backend service {name} not found in {region}", "notFound")
        return self.group_health(request)

    def write_backend_service(self, request: Request, bs: dict[str, Any], *, full: bool, path: str,
                              region: str | None = None) -> Response:
        """PATCH merges the fields sent; PUT (``full``) replaces them. Both need the current fingerprint."""
        doc = self._body(request, compute_v1.BackendService)
        if doc.get("fingerprint") != bs["fingerprint"]:
            raise ApiError(412, "fingerprint does not match; read the resource again", "conditionNotMet")
        if doc.get("healthChecks", bs.get("healthChecks")) != bs.get("healthChecks"):
            self._check_hcs(doc)
        kept = {"name": bs["name"], "selfLink": bs["selfLink"]}
        if full:
            bs.clear()
            bs.update({"backends": [], **doc})
        else:
            bs.update(doc)
        bs.update(kept, fingerprint=f"fp-{next(self._ids)}")
        return self._operation(request, path, region)

    # ------------------------------------------------------------------ health checks

    def _hc(self, region: str | None, name: str) -> dict[str, Any]:
        key = (region or GLOBAL, name)
        if key not in self.health_checks:
            raise ApiError(404, f"health check {name} not found", "notFound")
        return self.health_checks[key]

    def _hc_list(self, request: Request, region: str | None) -> Response:
        return self._page(request, [v for (r, _n), v in sorted(self.health_checks.items()) if r == (region or GLOBAL)])

    def on_hc_list(self, request: Request, project: str) -> Response:
        return self._hc_list(request, None)

    def on_rhc_list(self, request: Request, project: str, region: str) -> Response:
        return self._hc_list(request, region)

    def _hc_insert(self, request: Request, region: str | None) -> Response:
        doc = self._body(request, compute_v1.HealthCheck)
        key = (region or GLOBAL, doc["name"])
        if key in self.health_checks:
            raise ApiError(409, f"health check {doc['name']} already exists", "alreadyExists")
        path = f"{self._scope(region)}/healthChecks/{doc['name']}"
        self.health_checks[key] = {**doc, "selfLink": self._link(path)}
        return self._operation(request, path, region)

    def on_hc_insert(self, request: Request, project: str) -> Response:
        return self._hc_insert(request, None)

    def on_rhc_insert(self, request: Request, project: str, region: str) -> Response:
        return self._hc_insert(request, region)

    def on_hc_get(self, request: Request, project: str, name: str) -> Response:
        return _json(self._hc(None, name))

    def on_rhc_get(self, request: Request, project: str, region: str, name: str) -> Response:
        return _json(self._hc(region, name))

    def _hc_patch(self, request: Request, region: str | None, name: str) -> Response:
        hc = self._hc(region, name)
        hc.update({k: v for k, v in self._body(request, compute_v1.HealthCheck).items() if k != "name"})
        return self._operation(request, f"{self._scope(region)}/healthChecks/{name}", region)

    def on_hc_patch(self, request: Request, project: str, name: str) -> Response:
        return self._hc_patch(request, None, name)

    def on_rhc_patch(self, request: Request, project: str, region: str, name: str) -> Response:
        return self._hc_patch(request, region, name)

    def _hc_delete(self, request: Request, region: str | None, name: str) -> Response:
        link = self._hc(region, name)["selfLink"]
        users = [b["name"] for b in [*self.backend_services.values(), *self.region_backend_services.values()]
                 if link in b.get("healthChecks", [])]
        if users:
            raise ApiError(400, f"health check {name} is used by backend service {users[0]}",
                           "resourceInUseByAnotherResource")
        del self.health_checks[(region or GLOBAL, name)]
        return self._operation(request, f"{self._scope(region)}/healthChecks/{name}", region)

    def on_hc_delete(self, request: Request, project: str, name: str) -> Response:
        return self._hc_delete(request, None, name)

    def on_rhc_delete(self, request: Request, project: str, region: str, name: str) -> Response:
        return self._hc_delete(request, region, name)

    # ------------------------------------------------------------------ firewalls

    def _fw(self, name: str) -> dict[str, Any]:
        if name not in self.firewalls:
            raise ApiError(404, f"firewall {name} not found", "notFound")
        return self.firewalls[name]

    def on_fw_list(self, request: Request, project: str) -> Response:
        return self._page(request, [v for _k, v in sorted(self.firewalls.items())])

    def on_fw_insert(self, request: Request, project: str) -> Response:
        doc = self._body(request, compute_v1.Firewall)
        if doc["name"] in self.firewalls:
            raise ApiError(409, f"firewall {doc['name']} already exists", "alreadyExists")
        if not doc.get("allowed") and not doc.get("denied"):
            raise ApiError(400, "a firewall needs allowed or denied", "invalid")
        self.firewalls[doc["name"]] = {**doc, "selfLink": self._link(f"global/firewalls/{doc['name']}")}
        return self._operation(request, f"global/firewalls/{doc['name']}")

    def on_fw_get(self, request: Request, project: str, name: str) -> Response:
        return _json(self._fw(name))

    def on_fw_patch(self, request: Request, project: str, name: str) -> Response:
        fw = self._fw(name)
        doc = self._body(request, compute_v1.Firewall)
        if "sourceRanges" in doc or "sourceTags" in doc:  # a source replaces the other kind, as GCE does
            fw.pop("sourceRanges", None)
            fw.pop("sourceTags", None)
        fw.update({k: v for k, v in doc.items() if k != "name"})
        return self._operation(request, f"global/firewalls/{name}")

    def on_fw_delete(self, request: Request, project: str, name: str) -> Response:
        self._fw(name)
        del self.firewalls[name]
        return self._operation(request, f"global/firewalls/{name}")


def _json(doc: Any) -> Response:
    return Response(json.dumps(doc), mimetype="application/json")

"""A small stateful double of Azure Resource Manager (the compute and network calls the Azure provider makes).

The real azure-mgmt-compute / azure-mgmt-network clients and azure-identity's ManagedIdentityCredential talk
HTTPS to it on 127.0.0.1 (a trustme certificate: the SDK's bearer policy refuses plain http). Request bodies
are checked against the SDK's own models with unknown fields rejected, so a wrong field name fails the test.
Long-running operations answer ``Azure-AsyncOperation`` (PUT, PATCH) or ``Location`` (POST, DELETE) and can be
kept running for some polls with a ``Retry-After``; lists page through ``nextLink``; every request is counted
by endpoint; faults (429 with ``Retry-After``, 5xx) and missing role assignments (403 AuthorizationFailed)
can be injected. Instances boot at once; an image whose reference matches ``bad_images`` never turns healthy,
for the application health extension and for the load balancer's probe alike.
"""

from __future__ import annotations

import collections
import copy
import fnmatch
import itertools
import json
import socket
import ssl
import threading
import time
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trustme
from azure.mgmt.compute import models as compute_models
from azure.mgmt.compute._utils.model_base import Model
from azure.mgmt.monitor import models as monitor_models
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

RG = "/subscriptions/<sub>/resourceGroups/<rg>/providers"
VMSS = f"{RG}/Microsoft.Compute/virtualMachineScaleSets"
NET = f"{RG}/Microsoft.Network"
AUTOSCALE = "/subscriptions/<sub>/resourcegroups/<rg>/providers/Microsoft.Insights/autoscalesettings/<name>"
TOKEN = "token-for-reconciler"
IDENTITY_HEADER = "identity-header-secret"
ACTIONS = {
    "vmss_list": "Microsoft.Compute/virtualMachineScaleSets/read",
    "vmss_get": "Microsoft.Compute/virtualMachineScaleSets/read",
    "vmss_put": "Microsoft.Compute/virtualMachineScaleSets/write",
    "vmss_patch": "Microsoft.Compute/virtualMachineScaleSets/write",
    "vmss_delete": "Microsoft.Compute/virtualMachineScaleSets/delete",
    "vmss_upgrade": "Microsoft.Compute/virtualMachineScaleSets/manualUpgrade/action",
    "vms_list": "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/read",
    "lb_get": "Microsoft.Network/loadBalancers/read",
    "lb_health": "Microsoft.Network/loadBalancers/loadBalancingRules/health/action",
    "agw_get": "Microsoft.Network/applicationGateways/read",
    "nsg_get": "Microsoft.Network/networkSecurityGroups/read",
    "as_get": "Microsoft.Insights/autoscalesettings/read",
    "as_put": "Microsoft.Insights/autoscalesettings/write",
    "as_patch": "Microsoft.Insights/autoscalesettings/write",
    "as_delete": "Microsoft.Insights/autoscalesettings/delete",
}
"""What each endpoint needs, as the Azure RBAC action a 403 names."""


class ArmDouble:
    def __init__(self, tmp: Path, *, subscription: str = "sub-1", group: str = "rg-apps",
                 bad_images: tuple[str, ...] = ("*-bad*",)) -> None:
        self.subscription = subscription
        self.group = group
        self.bad_images = bad_images
        self.page_size = 100
        self.scale_sets: dict[str, dict[str, Any]] = {}
        self.vms: dict[str, list[dict[str, Any]]] = {}
        """Instances per scale set: instanceId, latestModelApplied, the pools they are in."""
        self.load_balancers: dict[str, dict[str, Any]] = {}
        self.gateways: dict[str, dict[str, Any]] = {}
        self.nsgs: dict[str, dict[str, Any]] = {}
        self.autoscale: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.slow_ops = 0
        """Polls an operation stays InProgress for (each answered with ``Retry-After: 2``)."""
        self.faults: list[tuple[str, int, str, str | None]] = []
        self.denied: set[str] = set()
        self.counts: collections.Counter[str] = collections.Counter()
        self.tokens_issued = 0
        self.lock = threading.RLock()
        self._ids = itertools.count(1)
        self.url_map = Map([
            Rule("/msi/token", endpoint="token", methods=["GET"]),
            Rule(VMSS, endpoint="vmss_list", methods=["GET"]),
            Rule(f"{VMSS}/<name>", endpoint="vmss_get", methods=["GET"]),
            Rule(f"{VMSS}/<name>", endpoint="vmss_put", methods=["PUT"]),
            Rule(f"{VMSS}/<name>", endpoint="vmss_patch", methods=["PATCH"]),
            Rule(f"{VMSS}/<name>", endpoint="vmss_delete", methods=["DELETE"]),
            Rule(f"{VMSS}/<name>/manualupgrade", endpoint="vmss_upgrade", methods=["POST"]),
            Rule(f"{VMSS}/<name>/virtualMachines", endpoint="vms_list", methods=["GET"]),
            Rule(f"{NET}/loadBalancers/<name>", endpoint="lb_get", methods=["GET"]),
            Rule(f"{NET}/loadBalancers/<name>/loadBalancingRules/<rule>/health", endpoint="lb_health",
                 methods=["POST"]),
            Rule(f"{NET}/applicationGateways/<name>", endpoint="agw_get", methods=["GET"]),
            Rule(f"{NET}/networkSecurityGroups/<name>", endpoint="nsg_get", methods=["GET"]),
            Rule(AUTOSCALE, endpoint="as_get", methods=["GET"]),
            Rule(AUTOSCALE, endpoint="as_put", methods=["PUT"]),
            Rule(AUTOSCALE, endpoint="as_patch", methods=["PATCH"]),
            Rule(AUTOSCALE, endpoint="as_delete", methods=["DELETE"]),
            Rule("/subscriptions/<sub>/providers/<rp>/locations/<loc>/operations/<op>", endpoint="op_status",
                 methods=["GET"]),
            Rule("/subscriptions/<sub>/providers/<rp>/locations/<loc>/operationResults/<op>", endpoint="op_result",
                 methods=["GET"]),
        ])
        self.ca = trustme.CA(key_type=trustme.KeyType.ECDSA)  # faster handshakes than RSA
        self.ca_file = tmp / "arm-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1").configure_cert(ctx)
        self._server = make_server("127.0.0.1", 0, self, threaded=True, ssl_context=ctx, request_handler=_NoDelay)
        self.port = self._server.server_port
        self.base = f"https://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    # ------------------------------------------------------------------ lifecycle and test helpers

    def start(self) -> ArmDouble:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def id(self, provider: str, *parts: str) -> str:
        return f"/subscriptions/{self.subscription}/resourceGroups/{self.group}/providers/{provider}/" + "/".join(parts)

    def add_load_balancer(self, name: str, pools: tuple[str, ...] = ("backend",), *, rule: bool = True) -> None:
        lb_id = self.id("Microsoft.Network", "loadBalancers", name)
        props: dict[str, Any] = {
            "provisioningState": "Succeeded",
            "backendAddressPools": [{"id": f"{lb_id}/backendAddressPools/{p}", "name": p} for p in pools],
            "probes": [{"id": f"{lb_id}/probes/http", "name": "http",
                        "properties": {"protocol": "Http", "port": 80, "requestPath": "/health"}}],
            "loadBalancingRules": [],
        }
        if rule:
            props["loadBalancingRules"] = [
                {"id": f"{lb_id}/loadBalancingRules/{p}-http", "name": f"{p}-http",
                 "properties": {"protocol": "Tcp", "frontendPort": 80, "backendPort": 80,
                                "backendAddressPool": {"id": f"{lb_id}/backendAddressPools/{p}"},
                                "probe": {"id": f"{lb_id}/probes/http"}}}
                for p in pools]
        self.load_balancers[name] = {"id": lb_id, "name": name, "location": "westeurope",
                                     "type": "Microsoft.Network/loadBalancers", "properties": props}

    def add_gateway(self, name: str, pools: tuple[str, ...] = ("web",)) -> None:
        gw_id = self.id("Microsoft.Network", "applicationGateways", name)
        self.gateways[name] = {"id": gw_id, "name": name, "location": "westeurope", "properties": {
            "backendAddressPools": [{"id": f"{gw_id}/backendAddressPools/{p}", "name": p} for p in pools]}}

    def add_nsg(self, name: str) -> None:
        self.nsgs[name] = {"id": self.id("Microsoft.Network", "networkSecurityGroups", name), "name": name,
                           "location": "westeurope", "properties": {}}

    def add_foreign_scale_set(self, name: str, location: str = "westeurope", capacity: int = 1) -> None:
        self.scale_sets[name] = {
            "id": self.id("Microsoft.Compute", "virtualMachineScaleSets", name), "name": name,
            "type": "Microsoft.Compute/virtualMachineScaleSets", "location": location, "tags": {"team": "other"},
            "sku": {"name": "Standard_B1s", "capacity": capacity},
            "properties": {"provisioningState": "Succeeded", "timeCreated": "2026-11-24T10:00:00+00:00",
                           "virtualMachineProfile": {"storageProfile": {"imageReference": {
                               "publisher": "Canonical", "offer": "ubuntu", "sku": "24_04-lts", "version": "latest"}}}}}
        self.vms[name] = [self._vm(name, i, []) for i in range(capacity)]

    def fail_next(self, endpoint: str, status: int, times: int = 1, *, retry_after: str | None = None,
                  code: str = "") -> None:
        """The next ``times`` requests to ``endpoint`` (e.g. ``vmss_put``) answer ``status``."""
        code = code or {429: "TooManyRequests", 503: "ServiceUnavailable", 500: "InternalServerError"}.get(
            status, "Injected")
        self.faults += [(endpoint, status, code, retry_after)] * times

    def deny(self, endpoint: str) -> None:
        """The identity has no role assignment granting ``endpoint``'s action."""
        self.denied.add(endpoint)

    def members(self, lb: str, pool: str = "backend") -> list[str]:
        """``scaleSet/instanceId`` of every instance in a pool (what the balancer sends traffic to)."""
        pool_id = self.id("Microsoft.Network", "loadBalancers", lb, "backendAddressPools", pool).lower()
        return sorted(f"{ss}/{vm['instanceId']}" for ss, vms in self.vms.items() for vm in vms
                      if pool_id in vm["pools"])

    def gateway_members(self, gw: str, pool: str = "web") -> list[str]:
        pool_id = self.id("Microsoft.Network", "applicationGateways", gw, "backendAddressPools", pool).lower()
        return sorted(f"{ss}/{vm['instanceId']}" for ss, vms in self.vms.items() for vm in vms
                      if pool_id in vm["pools"])

    # ------------------------------------------------------------------ WSGI

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        try:
            endpoint, args = self.url_map.bind_to_environ(environ).match()
        except HTTPException:
            return _error(404, "InvalidResourceType", f"no route {request.method} {request.path}")(environ,
                                                                                                  start_response)
        with self.lock:
            self.counts[endpoint] += 1
            response = self._dispatch(request, endpoint, dict(args))
        return response(environ, start_response)

    def _dispatch(self, request: Request, endpoint: str, args: dict[str, Any]) -> Response:
        if endpoint == "token":
            return self.on_token(request)
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return _error(401, "InvalidAuthenticationToken", "The access token is missing or invalid.")
        if not request.args.get("api-version"):
            return _error(400, "MissingApiVersionParameter", "The api-version query parameter is required.")
        if args.pop("sub", self.subscription) != self.subscription:
            return _error(404, "SubscriptionNotFound", "The subscription could not be found.")
        if args.pop("rg", self.group) != self.group:
            return _error(404, "ResourceGroupNotFound", "Resource group could not be found.")
        if endpoint in self.denied:
            return _error(403, "AuthorizationFailed",
                          f"The client 'reconciler' with object id '00000000-0000-0000-0000-000000000001' does not "
                          f"have authorization to perform action '{ACTIONS[endpoint]}' over scope "
                          f"'/subscriptions/{self.subscription}/resourceGroups/{self.group}' or the scope is invalid.")
        for i, (name, status, code, retry_after) in enumerate(self.faults):
            if name == endpoint:
                del self.faults[i]
                response = _error(status, code, f"injected {code}")
                if retry_after is not None:
                    response.headers["Retry-After"] = retry_after
                return response
        try:
            handler: Callable[..., Response] = getattr(self, f"on_{endpoint}")
            return handler(request, **args)
        except ArmError as exc:
            return _error(exc.status, exc.code, exc.message)

    def on_token(self, request: Request) -> Response:
        if request.headers.get("X-IDENTITY-HEADER") != IDENTITY_HEADER:
            return Response(json.dumps({"error": "invalid_request", "error_description": "bad identity header"}),
                            status=400, mimetype="application/json")
        self.tokens_issued += 1
        return _json({"access_token": TOKEN, "expires_on": str(int(time.time()) + 3600),
                      "resource": request.args.get("resource", ""), "token_type": "Bearer"})

    # ------------------------------------------------------------------ plumbing

    def _body(self, request: Request, cls: type[Model]) -> dict[str, Any]:
        try:
            doc = json.loads(request.get_data(as_text=True) or "{}")
        except ValueError as exc:
            raise ArmError(400, "InvalidRequestContent", f"the request content is not JSON: {exc}") from exc
        problems = check_model(cls, doc, "")
        if problems:
            raise ArmError(400, "InvalidRequestContent", f"{cls.__name__}: {'; '.join(problems)}")
        return dict(doc)

    def _operation(self, kind: str, location: str, done: Callable[[], Any]) -> tuple[str, str]:
        """A running operation whose ``done`` runs when it finishes (at once, or after ``slow_ops`` polls)."""
        op = f"op-{next(self._ids)}"
        self.operations[op] = {"left": self.slow_ops, "done": done, "kind": kind, "result": None}
        if self.slow_ops == 0:
            self._finish(op)
        rp = "Microsoft.Network" if kind.startswith("lb") else "Microsoft.Compute"
        return f"{self.base}/subscriptions/{self.subscription}/providers/{rp}/locations/{location}", op

    def _finish(self, op: str) -> None:
        entry = self.operations[op]
        if entry["left"] > 0:
            entry["left"] -= 1
            return
        if entry["done"] is not None:
            entry["result"] = entry["done"]()
            entry["done"] = None

    def on_op_status(self, request: Request, rp: str, loc: str, op: str) -> Response:
        if op not in self.operations:
            raise ArmError(404, "NotFound", f"operation {op} not found")
        self._finish(op)
        entry = self.operations[op]
        if entry["done"] is not None:
            return _json({"name": op, "status": "InProgress"}, headers={"Retry-After": "2"})
        return _json({"name": op, "status": "Succeeded"})

    def on_op_result(self, request: Request, rp: str, loc: str, op: str) -> Response:
        if op not in self.operations:
            raise ArmError(404, "NotFound", f"operation {op} not found")
        self._finish(op)
        entry = self.operations[op]
        if entry["done"] is not None:
            return Response("", status=202, headers={"Location": request.url, "Retry-After": "2"})
        if entry["result"] is None:
            return Response("", status=204)
        return _json(entry["result"])

    def _page(self, request: Request, items: list[dict[str, Any]]) -> Response:
        start = int(request.args.get("$skiptoken") or 0)
        page: dict[str, Any] = {"value": items[start:start + self.page_size]}
        if start + self.page_size < len(items):
            page["nextLink"] = (f"{self.base}{request.path}?api-version={request.args['api-version']}"
                                f"&$skiptoken={start + self.page_size}"
                                + (f"&$expand={request.args['$expand']}" if request.args.get("$expand") else ""))
        return _json(page)

    # ------------------------------------------------------------------ scale sets

    def _ss(self, name: str) -> dict[str, Any]:
        if name not in self.scale_sets:
            raise ArmError(404, "ResourceNotFound", f"The Resource 'Microsoft.Compute/virtualMachineScaleSets/"
                                                   f"{name}' under resource group '{self.group}' was not found.")
        return self.scale_sets[name]

    def _public(self, ss: dict[str, Any]) -> dict[str, Any]:
        """What a GET answers: customData is write-only in ARM."""
        out = copy.deepcopy(ss)
        out.get("properties", {}).get("virtualMachineProfile", {}).get("osProfile", {}).pop("customData", None)
        return out

    def on_vmss_list(self, request: Request) -> Response:
        return self._page(request, [self._public(s) for _n, s in sorted(self.scale_sets.items())])

    def on_vmss_get(self, request: Request, name: str) -> Response:
        return _json(self._public(self._ss(name)))

    def on_vmss_put(self, request: Request, name: str) -> Response:
        doc = self._body(request, compute_models.VirtualMachineScaleSet)
        if name in self.scale_sets:
            raise ArmError(409, "Conflict", f"scale set {name} exists; this double creates only")
        for field in ("location", "sku"):
            if field not in doc:
                raise ArmError(400, "InvalidParameter", f"Required parameter '{field}' is missing (null).")
        profile = doc.get("properties", {}).get("virtualMachineProfile", {})
        if "osProfile" not in profile or "adminUsername" not in profile["osProfile"]:
            raise ArmError(400, "InvalidParameter", "Required parameter 'osProfile.adminUsername' is missing.")
        doc["id"] = self.id("Microsoft.Compute", "virtualMachineScaleSets", name)
        doc["name"] = name
        doc["type"] = "Microsoft.Compute/virtualMachineScaleSets"
        props = doc.setdefault("properties", {})
        props.update(provisioningState="Creating", uniqueId=f"uid-{next(self._ids)}",
                     timeCreated=f"2026-11-24T10:{next(self._ids) % 60:02d}:00+00:00")
        self.scale_sets[name] = doc

        def done() -> None:
            props["provisioningState"] = "Succeeded"
            self.vms[name] = [self._vm(name, i, _pools(doc)) for i in range(int(doc["sku"].get("capacity", 0)))]

        base, op = self._operation("vmss_put", doc["location"], done)
        if self.slow_ops == 0:
            props["provisioningState"] = "Succeeded"
        return _json(self._public(doc), status=201, headers={"Azure-AsyncOperation": f"{base}/operations/{op}"
                                                                                     f"?api-version=2026-04-01"})

    def on_vmss_patch(self, request: Request, name: str) -> Response:
        ss = self._ss(name)
        doc = self._body(request, compute_models.VirtualMachineScaleSetUpdate)
        if "tags" in doc:
            ss["tags"] = doc["tags"]
        nics = (doc.get("properties", {}).get("virtualMachineProfile", {}).get("networkProfile", {})
                .get("networkInterfaceConfigurations"))
        if nics is not None:
            ss["properties"]["virtualMachineProfile"]["networkProfile"]["networkInterfaceConfigurations"] = nics
            for vm in self.vms.get(name, []):
                vm["latest"] = False
        capacity = doc.get("sku", {}).get("capacity")

        def done() -> None:
            if capacity is not None:
                ss["sku"]["capacity"] = capacity
                vms = self.vms.setdefault(name, [])
                del vms[capacity:]
                used = {int(v["instanceId"]) for v in vms}
                fresh = (i for i in itertools.count() if i not in used)
                vms += [self._vm(name, next(fresh), _pools(ss)) for _ in range(capacity - len(vms))]

        base, op = self._operation("vmss_patch", ss["location"], done)
        return _json(self._public(ss), headers={"Azure-AsyncOperation": f"{base}/operations/{op}"
                                                                          f"?api-version=2026-04-01"})

    def on_vmss_delete(self, request: Request, name: str) -> Response:
        ss = self._ss(name)

        def done() -> None:
            self.scale_sets.pop(name, None)
            self.vms.pop(name, None)

        base, op = self._operation("vmss_delete", ss["location"], done)
        return Response("", status=202, headers={"Location": f"{base}/operationResults/{op}?api-version=2026-04-01"})

    def on_vmss_upgrade(self, request: Request, name: str) -> Response:
        ss = self._ss(name)
        doc = self._body(request, compute_models.VirtualMachineScaleSetVMInstanceRequiredIDs)
        wanted = doc.get("instanceIds") or []

        def done() -> None:
            for vm in self.vms.get(name, []):
                if "*" in wanted or vm["instanceId"] in wanted:
                    vm["latest"] = True
                    vm["pools"] = _pools(ss)

        base, op = self._operation("vmss_upgrade", ss["location"], done)
        return Response("", status=202, headers={"Location": f"{base}/operationResults/{op}?api-version=2026-04-01"})

    def _vm(self, name: str, index: int, pools: list[str]) -> dict[str, Any]:
        return {"instanceId": str(index), "latest": True, "pools": pools}

    def bad(self, name: str) -> bool:
        ref = self.scale_sets[name].get("properties", {}).get("virtualMachineProfile", {}).get(
            "storageProfile", {}).get("imageReference", {})
        text = ref.get("id") or ":".join(str(ref.get(k, "")) for k in ("publisher", "offer", "sku", "version"))
        return any(fnmatch.fnmatchcase(text, p) for p in self.bad_images)

    def on_vms_list(self, request: Request, name: str) -> Response:
        ss = self._ss(name)
        health = bool(ss.get("properties", {}).get("virtualMachineProfile", {}).get("extensionProfile"))
        expand = request.args.get("$expand") == "instanceView"
        items = []
        for vm in self.vms.get(name, []):
            item: dict[str, Any] = {"instanceId": vm["instanceId"], "name": f"{name}_{vm['instanceId']}",
                                    "id": f"{ss['id']}/virtualMachines/{vm['instanceId']}",
                                    "location": ss["location"],
                                    "properties": {"latestModelApplied": vm["latest"],
                                                   "provisioningState": "Succeeded"}}
            if expand:
                view: dict[str, Any] = {"statuses": [{"code": "ProvisioningState/succeeded"},
                                                     {"code": "PowerState/running"}]}
                if health:
                    state = "unhealthy" if self.bad(name) else "healthy"
                    view["vmHealth"] = {"status": {"code": f"HealthState/{state}"}}
                item["properties"]["instanceView"] = view
            items.append(item)
        return self._page(request, items)

    # ------------------------------------------------------------------ network

    def on_lb_get(self, request: Request, name: str) -> Response:
        if name not in self.load_balancers:
            raise ArmError(404, "ResourceNotFound", f"The Resource 'Microsoft.Network/loadBalancers/{name}' under "
                                                   f"resource group '{self.group}' was not found.")
        return _json(self.load_balancers[name])

    def on_lb_health(self, request: Request, name: str, rule: str) -> Response:
        lb = self.load_balancers.get(name)
        rules = {r["name"]: r for r in (lb or {}).get("properties", {}).get("loadBalancingRules", [])}
        if rule not in rules:
            raise ArmError(404, "ResourceNotFound", f"load balancing rule {rule} of {name} not found")
        pool_id = rules[rule]["properties"]["backendAddressPool"]["id"].lower()

        def done() -> dict[str, Any]:
            addresses: list[dict[str, Any]] = []
            for ss, vms in sorted(self.vms.items()):
                for vm in vms:
                    if pool_id in vm["pools"]:
                        addresses.append({
                            "ipAddress": f"10.0.0.{len(addresses) + 4}",
                            "networkInterfaceIPConfigurationId": f"{self.scale_sets[ss]['id']}/virtualMachines/"
                                                                 f"{vm['instanceId']}/networkInterfaces/nic0/"
                                                                 "ipConfigurations/ipconfig0",
                            "state": "Down" if self.bad(ss) else "Up"})
            up = sum(a["state"] == "Up" for a in addresses)
            return {"up": up, "down": len(addresses) - up, "loadBalancerBackendAddresses": addresses}

        base, op = self._operation("lb_health", lb["location"] if lb else "westeurope", done)
        return Response("", status=202, headers={"Location": f"{base}/operationResults/{op}?api-version=2025-05-01"})

    def on_agw_get(self, request: Request, name: str) -> Response:
        if name not in self.gateways:
            raise ArmError(404, "ResourceNotFound", f"The Resource 'Microsoft.Network/applicationGateways/{name}' "
                                                   f"under resource group '{self.group}' was not found.")
        return _json(self.gateways[name])

    def on_nsg_get(self, request: Request, name: str) -> Response:
        if name not in self.nsgs:
            raise ArmError(404, "ResourceNotFound", f"The Resource 'Microsoft.Network/networkSecurityGroups/{name}' "
                                                   f"under resource group '{self.group}' was not found.")
        return _json(self.nsgs[name])


    # ------------------------------------------------------------------ autoscale settings (Azure Monitor)

    def _setting(self, name: str) -> dict[str, Any]:
        if name not in self.autoscale:
            raise ArmError(404, "ResourceNotFound", f"The Resource 'Microsoft.Insights/autoscalesettings/{name}' "
                                                   f"under resource group '{self.group}' was not found.")
        return self.autoscale[name]

    def on_as_get(self, request: Request, name: str) -> Response:
        return _json(self._setting(name))

    def on_as_put(self, request: Request, name: str) -> Response:
        doc = self._msrest_body(request, monitor_models.AutoscaleSettingResource)
        target = doc.get("properties", {}).get("targetResourceUri", "")
        if target.rsplit("/", 1)[-1] not in self.scale_sets:
            raise ArmError(400, "TargetResourceNotFound", f"The target resource id '{target}' was not found.")
        _check_capacity(doc)
        doc.update(id=self.id("microsoft.insights", "autoscalesettings", name), name=name,
                   type="Microsoft.Insights/autoscaleSettings")
        status = 200 if name in self.autoscale else 201
        self.autoscale[name] = doc
        return _json(doc, status=status)

    def on_as_patch(self, request: Request, name: str) -> Response:
        setting = self._setting(name)
        doc = self._msrest_body(request, monitor_models.AutoscaleSettingResourcePatch)
        merged = copy.deepcopy(setting)
        merged["properties"].update(doc.get("properties", {}))
        if "tags" in doc:
            merged["tags"] = doc["tags"]
        _check_capacity(merged)
        self.autoscale[name] = merged
        return _json(merged)

    def on_as_delete(self, request: Request, name: str) -> Response:
        if self.autoscale.pop(name, None) is None:
            return Response("", status=204)
        return Response("", status=200)

    def _msrest_body(self, request: Request, cls: type[Any]) -> dict[str, Any]:
        try:
            doc = json.loads(request.get_data(as_text=True) or "{}")
        except ValueError as exc:
            raise ArmError(400, "InvalidRequestContent", f"the request content is not JSON: {exc}") from exc
        problems = check_msrest(cls, doc, "")
        if problems:
            raise ArmError(400, "InvalidRequestContent", f"{cls.__name__}: {'; '.join(problems)}")
        return dict(doc)


def _check_capacity(doc: dict[str, Any]) -> None:
    for profile in doc.get("properties", {}).get("profiles", []):
        cap = profile.get("capacity", {})
        low, high, default = (int(cap.get(k, 0)) for k in ("minimum", "maximum", "default"))
        if not (0 <= low <= default <= high and high >= 1):
            raise ArmError(400, "InvalidCapacity", f"profile {profile.get('name')}: need 0 <= minimum <= default "
                                                   f"<= maximum and maximum >= 1, got {cap}")


class _NoDelay(WSGIRequestHandler):
    """Answers leave at once: without TCP_NODELAY, delayed ACKs add ~40 ms to every request."""

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class ArmError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _pools(ss: dict[str, Any]) -> list[str]:
    nics = ss.get("properties", {}).get("virtualMachineProfile", {}).get("networkProfile", {}).get(
        "networkInterfaceConfigurations", [])
    return [p["id"].lower() for nic in nics for ip in nic.get("properties", {}).get("ipConfigurations", [])
            for key in ("loadBalancerBackendAddressPools", "applicationGatewayBackendAddressPools")
            for p in ip.get("properties", {}).get(key, [])]


def _error(status: int, code: str, message: str) -> Response:
    return Response(json.dumps({"error": {"code": code, "message": message}}), status=status,
                    mimetype="application/json")


def _json(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(doc), status=status, mimetype="application/json", headers=headers)


# --------------------------------------------------------------------------- request bodies, by the SDK's models


def check_model(cls: type[Model], doc: Any, path: str) -> list[str]:
    """Every field of ``doc`` that ``cls`` (an SDK model) does not define, or whose shape is wrong."""
    if not isinstance(doc, dict):
        return [f"{path or '(body)'}: expected an object"]
    cls({})  # the SDK computes its field table on first use
    fields = {rf._rest_name: attr for attr, rf in cls._attr_to_rest_field.items()}  # type: ignore[misc]  # the SDK's private field table
    hints = _hints(cls)
    problems: list[str] = []
    for key, value in doc.items():
        where = f"{path}.{key}" if path else key
        if key not in fields:
            problems.append(f"{where}: unknown field")
            continue
        problems += _check_value(hints.get(fields[key]), value, where)
    return problems


def _hints(cls: type[Model]) -> dict[str, Any]:
    module = __import__(cls.__module__, fromlist=["_"])
    return typing.get_type_hints(cls, globalns={**vars(module), "_models": compute_models})


def _check_value(tp: Any, value: Any, where: str) -> list[str]:
    if tp is None or value is None:
        return []
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(tp) if isinstance(a, type) and issubclass(a, Model)]
        others = [a for a in typing.get_args(tp) if a is not type(None) and a not in models]
        if models and isinstance(value, dict):
            return _check_value(models[0], value, where)
        return _check_value(others[0], value, where) if others else []
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        (item,) = typing.get_args(tp)
        return [p for i, v in enumerate(value) for p in _check_value(item, v, f"{where}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where}: expected an object"]
        _k, item = typing.get_args(tp)
        return [p for k, v in value.items() for p in _check_value(item, v, f"{where}.{k}")]
    if isinstance(tp, type) and issubclass(tp, Model):
        return check_model(tp, value, where)
    if tp is bool and not isinstance(value, bool):
        return [f"{where}: expected true or false"]
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        return [f"{where}: expected an integer"]
    return []


def check_msrest(cls: type[Any], doc: Any, path: str) -> list[str]:
    """Like ``check_model``, for the older SDK models (azure-mgmt-monitor) that flatten ``properties.*``."""
    tree: dict[str, Any] = {}
    for meta in cls._attribute_map.values():
        node = tree
        *parents, leaf = meta["key"].split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = meta["type"]
    return _check_tree(tree, doc, path)


def _check_tree(tree: dict[str, Any], doc: Any, path: str) -> list[str]:
    if not isinstance(doc, dict):
        return [f"{path or '(body)'}: expected an object"]
    problems: list[str] = []
    for key, value in doc.items():
        where = f"{path}.{key}" if path else key
        if key not in tree:
            problems.append(f"{where}: unknown field")
        elif isinstance(tree[key], dict):
            problems += _check_tree(tree[key], value, where)
        else:
            problems += _check_msrest_type(tree[key], value, where)
    return problems


def _check_msrest_type(tp: str, value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if tp.startswith("[") and tp.endswith("]"):
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        return [p for i, v in enumerate(value) for p in _check_msrest_type(tp[1:-1], v, f"{where}[{i}]")]
    if tp.startswith("{") and tp.endswith("}"):
        if not isinstance(value, dict):
            return [f"{where}: expected an object"]
        return [p for k, v in value.items() for p in _check_msrest_type(tp[1:-1], v, f"{where}.{k}")]
    model = getattr(monitor_models, tp, None)
    if isinstance(model, type) and hasattr(model, "_attribute_map"):
        return check_msrest(model, value, where)
    if tp == "bool" and not isinstance(value, bool):
        return [f"{where}: expected true or false"]
    if tp == "str" and not isinstance(value, str):
        return [f"{where}: expected a string"]
    return []

"""A small stateful double of the Compute Engine REST API (the subset the GCP provider calls).

The real google-cloud-compute client talks plain HTTP to it on 127.0.0.1. Request bodies are parsed
with the library's own message types (``from_json(..., ignore_unknown_fields=False)``), so a wrong
field name fails the test. Operations complete at once; ``requestId`` is deduplicated; lists page;
faults (HTTP 429/503) can be queued per method; every request is counted by method. Operations can be
made slow (RUNNING for some waits) or failed (DONE with an ``error``); a project other than the double's
answers 404 like the real API. Backend services, health checks and firewall rules are in
``fake_resources``.
"""

from __future__ import annotations

import collections
import fnmatch
import itertools
import json
import re
import threading
from collections.abc import Callable
from typing import Any

from google.cloud import compute_v1
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tests.providers.gcp.fake_resources import ApiError, ResourceDouble, resource_rules

P = "/compute/v1/projects/<project>"


class ComputeDouble(ResourceDouble):
    def __init__(self, *, bad_images: tuple[str, ...] = ("*-bad",), project: str = "test-project") -> None:
        self.project = project
        self.bad_images = bad_images
        self.templates: dict[tuple[str, str], dict[str, Any]] = {}
        self.migs: dict[tuple[str, str], dict[str, Any]] = {}
        self.backend_services: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.request_ids: dict[str, dict[str, Any]] = {}
        self.autoscalers: dict[tuple[str, str], dict[str, Any]] = {}
        self.images: list[dict[str, Any]] = []
        self.faults: list[tuple[str, int, str]] = []
        self.failing_ops: list[tuple[str, str, str]] = []
        self.slow_ops = 0
        """Waits an operation stays RUNNING for (``-1``: forever)."""
        self.counts: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        self._ids = itertools.count(1)
        self.url_map = Map([
            Rule(f"{P}/regions/<region>/instanceTemplates", endpoint="templates_list", methods=["GET"]),
            Rule(f"{P}/regions/<region>/instanceTemplates", endpoint="templates_insert", methods=["POST"]),
            Rule(f"{P}/regions/<region>/instanceTemplates/<name>", endpoint="templates_get", methods=["GET"]),
            Rule(f"{P}/regions/<region>/instanceTemplates/<name>", endpoint="templates_delete", methods=["DELETE"]),
            Rule(f"{P}/regions/<region>/instanceGroupManagers", endpoint="migs_list", methods=["GET"]),
            Rule(f"{P}/regions/<region>/instanceGroupManagers", endpoint="migs_insert", methods=["POST"]),
            Rule(f"{P}/regions/<region>/instanceGroupManagers/<name>", endpoint="migs_get", methods=["GET"]),
            Rule(f"{P}/regions/<region>/instanceGroupManagers/<name>", endpoint="migs_delete", methods=["DELETE"]),
            Rule(f"{P}/regions/<region>/instanceGroupManagers/<name>/resize", endpoint="migs_resize",
                 methods=["POST"]),
            Rule(f"{P}/regions/<region>/instanceGroupManagers/<name>/listManagedInstances",
                 endpoint="migs_instances", methods=["POST"]),
            Rule(f"{P}/regions/<region>/autoscalers", endpoint="as_insert", methods=["POST"]),
            Rule(f"{P}/regions/<region>/autoscalers", endpoint="as_patch", methods=["PATCH"]),
            Rule(f"{P}/regions/<region>/autoscalers/<name>", endpoint="as_get", methods=["GET"]),
            Rule(f"{P}/regions/<region>/autoscalers/<name>", endpoint="as_delete", methods=["DELETE"]),
            Rule(f"{P}/global/images", endpoint="images_list", methods=["GET"]),
            Rule(f"{P}/global/backendServices/<name>", endpoint="bs_get", methods=["GET"]),
            Rule(f"{P}/global/backendServices/<name>", endpoint="bs_patch", methods=["PATCH"]),
            Rule(f"{P}/global/backendServices/<name>", endpoint="bs_update", methods=["PUT"]),
            Rule(f"{P}/global/backendServices/<name>/getHealth", endpoint="bs_health", methods=["POST"]),
            Rule(f"{P}/regions/<region>/operations/<name>/wait", endpoint="op_wait", methods=["POST"]),
            Rule(f"{P}/regions/<region>/operations/<name>", endpoint="op_get", methods=["GET"]),
            Rule(f"{P}/global/operations/<name>/wait", endpoint="op_wait", methods=["POST"]),
            Rule(f"{P}/global/operations/<name>", endpoint="op_get", methods=["GET"]),
            *resource_rules(),
        ])
        self._init_resources()
        self._server = make_server("127.0.0.1", 0, self, threaded=True)
        self.port = self._server.server_port
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    # ------------------------------------------------------------------ lifecycle and test helpers

    def start(self) -> ComputeDouble:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def add_backend_service(self, name: str) -> None:
        self.backend_services[name] = {"name": name, "fingerprint": "fp-0", "backends": [],
                                       "healthChecks": [f"projects/{self.project}/global/healthChecks/hc"],
                                       "selfLink": self._link(f"global/backendServices/{name}")}

    def add_foreign_mig(self, region: str, name: str) -> None:
        self.templates[(region, name)] = {"name": name, "properties": {"machineType": "e2-small"}}
        self.migs[(region, name)] = self._mig_resource(region, {
            "name": name, "targetSize": 1, "description": "",
            "instanceTemplate": f"projects/{self.project}/regions/{region}/instanceTemplates/{name}"})

    def add_image(self, name: str, *, family: str = "", labels: dict[str, str] | None = None,
                  created: str = "2026-12-01T10:00:00.000-08:00", status: str = "READY",
                  deprecated: str = "") -> None:
        image: dict[str, Any] = {"name": name, "status": status, "creationTimestamp": created,
                                 "selfLink": self._link(f"global/images/{name}")}
        if family:
            image["family"] = family
        if labels:
            image["labels"] = labels
        if deprecated:
            image["deprecated"] = {"state": deprecated}
        self.images.append(image)

    def template_names(self, region: str | None = None) -> list[str]:
        return sorted(n for r, n in self.templates if region is None or r == region)

    def fail_next(self, method: str, status: int, times: int = 1, message: str = "injected fault") -> None:
        """The next ``times`` requests to ``method`` (an endpoint name, e.g. ``migs_insert``) fail."""
        self.faults += [(method, status, message)] * times

    def fail_operation(self, method: str, code: str = "QUOTA_EXCEEDED", message: str = "injected") -> None:
        """The next operation of ``method`` completes with this error (the resource is left unchanged)."""
        self.failing_ops.append((method, code, message))

    def backends_of(self, bs: str) -> list[str]:
        return [b["group"].rsplit("/", 1)[-1] for b in self.backend_services[bs]["backends"]]

    # ------------------------------------------------------------------ WSGI

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        try:
            endpoint, args = self.url_map.bind_to_environ(environ).match()
        except HTTPException:
            return self._error(404, f"no route {request.method} {request.path}", "notFound")(environ, start_response)
        with self.lock:
            self.counts[endpoint] += 1
            if args.get("project") != self.project:
                return self._error(404, f"The resource 'projects/{args.get('project')}' was not found",
                                   "notFound")(environ, start_response)
            for i, (method, code, message) in enumerate(self.failing_ops):
                if method == endpoint:
                    del self.failing_ops[i]
                    return self._failed_operation(request, args.get("region"), code, message)(environ, start_response)
            for i, (method, status, message) in enumerate(self.faults):
                if method == endpoint:
                    del self.faults[i]
                    reason = {429: "rateLimitExceeded", 403: "forbidden"}.get(status, "backendError")
                    return self._error(status, message, reason)(environ, start_response)
            try:
                response = getattr(self, f"on_{endpoint}")(request, **args)
            except ApiError as exc:
                response = self._error(exc.status, exc.message, exc.reason)
        return response(environ, start_response)

    def _error(self, status: int, message: str, reason: str) -> Response:
        body = {"error": {"code": status, "message": message, "errors": [{"reason": reason, "message": message}]}}
        return Response(json.dumps(body), status=status, mimetype="application/json")

    def _link(self, path: str) -> str:
        return f"{self.base}/compute/v1/projects/{self.project}/{path}"

    def _body(self, request: Request, message: Any) -> dict[str, Any]:
        raw = request.get_data(as_text=True)
        try:
            message.from_json(raw, ignore_unknown_fields=False)
        except Exception as exc:
            raise ApiError(400, f"invalid {message.__name__}: {exc}", "invalid") from exc
        doc: dict[str, Any] = json.loads(raw or "{}")
        return doc

    def _operation(self, request: Request, target: str, region: str | None = None) -> Response:
        rid = request.args.get("requestId")
        if rid and rid in self.request_ids:
            return _json(self.request_ids[rid])
        name = f"operation-{next(self._ids)}"
        scope = f"regions/{region}" if region else "global"
        op = {"kind": "compute#operation", "name": name, "status": "DONE" if self.slow_ops == 0 else "RUNNING",
              "waits_left": self.slow_ops,
              "targetLink": self._link(target), "selfLink": self._link(f"{scope}/operations/{name}")}
        if region:
            op["region"] = self._link(f"regions/{region}")
        self.operations[name] = op
        if rid:
            self.request_ids[rid] = op
        return _json(_public(op))

    def _failed_operation(self, request: Request, region: str | None, code: str, message: str) -> Response:
        response = self._operation(request, "", region)
        op = json.loads(response.get_data(as_text=True))
        op["error"] = {"errors": [{"code": code, "message": message}]}
        self.operations[op["name"]] = op
        return _json(op)

    def _page(self, request: Request, items: list[dict[str, Any]]) -> Response:
        size = int(request.args.get("maxResults") or 500)
        start = int(request.args.get("pageToken") or 0)
        page: dict[str, Any] = {"items": items[start:start + size]}
        if start + size < len(items):
            page["nextPageToken"] = str(start + size)
        return _json(page)

    # ------------------------------------------------------------------ images

    def on_images_list(self, request: Request, project: str) -> Response:
        """The filter forms the provider sends: ``(field = "value")`` clauses, all of which must hold."""
        clauses = re.findall(r'\(([a-zA-Z.]+) = "([^"]*)"\)', request.args.get("filter") or "")
        def value(image: dict[str, Any], field: str) -> Any:
            return image.get("labels", {}).get(field[7:]) if field.startswith("labels.") else image.get(field)
        return self._page(request, [i for i in self.images if all(value(i, f) == v for f, v in clauses)])

    # ------------------------------------------------------------------ instance templates

    def on_templates_list(self, request: Request, project: str, region: str) -> Response:
        return self._page(request, [t for (r, _n), t in sorted(self.templates.items()) if r == region])

    def on_templates_insert(self, request: Request, project: str, region: str) -> Response:
        if request.args.get("requestId") in self.request_ids:
            return self._operation(request, "", region)
        doc = self._body(request, compute_v1.InstanceTemplate)
        if (region, doc["name"]) in self.templates:
            raise ApiError(409, f"instance template {doc['name']} already exists", "alreadyExists")
        doc["selfLink"] = self._link(f"regions/{region}/instanceTemplates/{doc['name']}")
        doc["region"] = self._link(f"regions/{region}")
        doc["creationTimestamp"] = "2026-11-24T10:00:00.000-00:00"
        self.templates[(region, doc["name"])] = doc
        return self._operation(request, f"regions/{region}/instanceTemplates/{doc['name']}", region)

    def on_templates_get(self, request: Request, project: str, region: str, name: str) -> Response:
        if (region, name) not in self.templates:
            raise ApiError(404, f"instance template {name} not found", "notFound")
        return _json(self.templates[(region, name)])

    def on_templates_delete(self, request: Request, project: str, region: str, name: str) -> Response:
        if (region, name) not in self.templates:
            raise ApiError(404, f"instance template {name} not found", "notFound")
        link = f"/regions/{region}/instanceTemplates/{name}"
        users = [n for (_r, n), m in self.migs.items() if m["instanceTemplate"].endswith(link)]
        if users:
            raise ApiError(400, f"instance template {name} is used by {users[0]}", "resourceInUseByAnotherResource")
        del self.templates[(region, name)]
        return self._operation(request, f"regions/{region}/instanceTemplates/{name}", region)

    # ------------------------------------------------------------------ managed instance groups

    def _mig_resource(self, region: str, doc: dict[str, Any]) -> dict[str, Any]:
        name = doc["name"]
        doc["selfLink"] = self._link(f"regions/{region}/instanceGroupManagers/{name}")
        doc["instanceGroup"] = self._link(f"regions/{region}/instanceGroups/{name}")
        doc["region"] = self._link(f"regions/{region}")
        doc["creationTimestamp"] = f"2026-11-24T10:{next(self._ids) % 60:02d}:00.000-00:00"
        doc["fingerprint"] = "mig-fp"
        self._refresh(doc)
        return doc

    def _bad(self, doc: dict[str, Any]) -> bool:
        parts = doc["instanceTemplate"].split("/")
        template = self.templates.get((parts[-3], parts[-1]), {})
        disks = template.get("properties", {}).get("disks", [])
        image = disks[0].get("initializeParams", {}).get("sourceImage", "") if disks else ""
        return any(fnmatch.fnmatchcase(image, p) for p in self.bad_images)

    def _refresh(self, doc: dict[str, Any]) -> None:
        size = int(doc.get("targetSize", 0))
        ok = 0 if self._bad(doc) else size
        doc["currentActions"] = {"none": ok, "creating": size - ok}
        doc["status"] = {**doc.get("status", {}), "isStable": ok == size}

    def on_migs_list(self, request: Request, project: str, region: str) -> Response:
        items = [m for (r, _n), m in sorted(self.migs.items()) if r == region]
        return self._page(request, items)

    def on_migs_insert(self, request: Request, project: str, region: str) -> Response:
        if request.args.get("requestId") in self.request_ids:
            return self._operation(request, "", region)
        doc = self._body(request, compute_v1.InstanceGroupManager)
        if (region, doc["name"]) in self.migs:
            raise ApiError(409, f"instance group manager {doc['name']} already exists", "alreadyExists")
        if (region, doc["instanceTemplate"].rsplit("/", 1)[-1]) not in self.templates:
            raise ApiError(400, "instance template not found", "invalid")
        self.migs[(region, doc["name"])] = self._mig_resource(region, doc)
        return self._operation(request, f"regions/{region}/instanceGroupManagers/{doc['name']}", region)

    def _mig(self, region: str, name: str) -> dict[str, Any]:
        if (region, name) not in self.migs:
            raise ApiError(404, f"instance group manager {name} not found in {region}", "notFound")
        return self.migs[(region, name)]

    def on_migs_get(self, request: Request, project: str, region: str, name: str) -> Response:
        return _json(self._mig(region, name))

    def on_migs_delete(self, request: Request, project: str, region: str, name: str) -> Response:
        mig = self._mig(region, name)
        if any(b["group"].endswith(f"/instanceGroups/{name}") for bs in self.backend_services.values()
               for b in bs["backends"]):
            raise ApiError(400, f"{name} is a backend of a backend service", "resourceInUseByAnotherResource")
        if (region, name) in self.autoscalers:
            raise ApiError(400, f"{name} is the target of autoscaler {name}", "resourceInUseByAnotherResource")
        del self.migs[(region, name)]
        return self._operation(request, mig["selfLink"].split("/projects/")[1].split("/", 2)[2], region)

    def on_migs_resize(self, request: Request, project: str, region: str, name: str) -> Response:
        mig = self._mig(region, name)
        scaler = self.autoscalers.get((region, name))
        if scaler and scaler["autoscalingPolicy"].get("mode", "ON") != "OFF":
            raise ApiError(400, f"{name} is autoscaled; turn its autoscaler off to resize it", "invalid")
        mig["targetSize"] = int(request.args["size"])
        self._refresh(mig)
        return self._operation(request, f"regions/{region}/instanceGroupManagers/{name}", region)

    def _instances(self, region: str, name: str) -> list[str]:
        mig = self._mig(region, name)
        zone = f"{region}-b"
        return [self._link(f"zones/{zone}/instances/{name}-{i:04d}") for i in range(int(mig.get("targetSize", 0)))]

    def on_migs_instances(self, request: Request, project: str, region: str, name: str) -> Response:
        """Running at once unless the image is bad; ``instanceHealth`` only under autohealing, as GCE does."""
        mig = self._mig(region, name)
        bad = self._bad(mig)
        items: list[dict[str, Any]] = []
        for url in self._instances(region, name):
            item: dict[str, Any] = {"instance": url, "instanceStatus": "RUNNING", "currentAction": "NONE"}
            if mig.get("autoHealingPolicies"):
                item["instanceHealth"] = [{"detailedHealthState": "UNHEALTHY" if bad else "HEALTHY"}]
            elif bad:
                item.update(instanceStatus="PROVISIONING", currentAction="CREATING")
            items.append(item)
        page = json.loads(self._page(request, items).get_data(as_text=True))
        page["managedInstances"] = page.pop("items")
        return _json(page)

    # ------------------------------------------------------------------ autoscalers

    def on_as_insert(self, request: Request, project: str, region: str) -> Response:
        doc = self._body(request, compute_v1.Autoscaler)
        if (region, doc["name"]) in self.autoscalers:
            raise ApiError(409, f"autoscaler {doc['name']} already exists", "alreadyExists")
        target = self._mig(region, doc["target"].rsplit("/", 1)[-1])
        doc["selfLink"] = self._link(f"regions/{region}/autoscalers/{doc['name']}")
        self.autoscalers[(region, doc["name"])] = doc
        target.setdefault("status", {})["autoscaler"] = doc["selfLink"]
        return self._operation(request, f"regions/{region}/autoscalers/{doc['name']}", region)

    def _scaler(self, region: str, name: str) -> dict[str, Any]:
        if (region, name) not in self.autoscalers:
            raise ApiError(404, f"autoscaler {name} not found in {region}", "notFound")
        return self.autoscalers[(region, name)]

    def on_as_get(self, request: Request, project: str, region: str, name: str) -> Response:
        return _json(self._scaler(region, name))

    def on_as_patch(self, request: Request, project: str, region: str) -> Response:
        name = request.args["autoscaler"]
        scaler = self._scaler(region, name)
        doc = self._body(request, compute_v1.Autoscaler)
        policy = {**scaler["autoscalingPolicy"], **doc.get("autoscalingPolicy", {})}
        if policy["maxNumReplicas"] < max(1, policy.get("minNumReplicas", 0)):
            raise ApiError(400, "maxNumReplicas must be >= 1 and >= minNumReplicas", "invalid")
        scaler["autoscalingPolicy"] = policy
        return self._operation(request, f"regions/{region}/autoscalers/{name}", region)

    def on_as_delete(self, request: Request, project: str, region: str, name: str) -> Response:
        scaler = self._scaler(region, name)
        del self.autoscalers[(region, name)]
        target = self.migs.get((region, scaler["target"].rsplit("/", 1)[-1]))
        if target is not None:
            target.get("status", {}).pop("autoscaler", None)
        return self._operation(request, f"regions/{region}/autoscalers/{name}", region)

    # ------------------------------------------------------------------ backend services

    def _bs(self, name: str) -> dict[str, Any]:
        if name not in self.backend_services:
            raise ApiError(404, f"backend service {name} not found", "notFound")
        return self.backend_services[name]

    def on_bs_get(self, request: Request, project: str, name: str) -> Response:
        return _json(self._bs(name))

    def on_bs_patch(self, request: Request, project: str, name: str) -> Response:
        return self.write_backend_service(request, self._bs(name), full=False, path=f"global/backendServices/{name}")

    def on_bs_update(self, request: Request, project: str, name: str) -> Response:
        return self.write_backend_service(request, self._bs(name), full=True, path=f"global/backendServices/{name}")

    def on_bs_health(self, request: Request, project: str, name: str) -> Response:
        self._bs(name)
        return self.group_health(request)

    def group_health(self, request: Request) -> Response:
        """What a backend service answers for one of its groups: every instance, healthy unless the image is bad."""
        doc = self._body(request, compute_v1.ResourceGroupReference)
        group = doc["group"].rsplit("/", 1)[-1]
        region = doc["group"].split("/regions/")[1].split("/")[0]
        bad = self._bad(self._mig(region, group))
        states = [{"instance": url, "healthState": "UNHEALTHY" if bad else "HEALTHY"}
                  for url in self._instances(region, group)]
        return _json({"healthStatus": states})

    # ------------------------------------------------------------------ operations

    def on_op_wait(self, request: Request, project: str, name: str, region: str | None = None) -> Response:
        if name not in self.operations:
            raise ApiError(404, f"operation {name} not found", "notFound")
        op = self.operations[name]
        if op["waits_left"] > 0:
            op["waits_left"] -= 1
        if op["waits_left"] == 0:
            op["status"] = "DONE"
        return _json(_public(op))

    on_op_get = on_op_wait


def _public(op: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in op.items() if k != "waits_left"}


def _json(doc: Any) -> Response:
    return Response(json.dumps(doc), mimetype="application/json")

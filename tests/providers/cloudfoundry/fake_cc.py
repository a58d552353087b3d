"""A small stateful double of the Cloud Controller v3 API and UAA (what the Cloud Foundry provider calls).

The real cloudfoundry-client logs in (password grant) and talks plain HTTP to it on 127.0.0.1. Request
bodies are checked against the v3 API's documented fields (``BODIES``) with unknown fields rejected;
lists page with absolute ``pagination.next`` links; builds, droplet copies and app deletions are
asynchronous (optionally for some polls); every request is counted by endpoint; faults (429 with
``Retry-After``, 5xx) and missing space roles (403 CF-NotAuthorized) can be injected. Instances of an app
whose image or droplet matches ``bad`` crash instead of running.
"""

from __future__ import annotations

import collections
import fnmatch
import itertools
import json
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

_REL = {"data": {"guid": None}}
_META = {"labels": None, "annotations": None}
BODIES: dict[str, Any] = {
    "apps_create": {"name": None, "relationships": {"space": _REL}, "environment_variables": None,
                    "lifecycle": {"type": None, "data": {"buildpacks": None, "stack": None}}, "metadata": _META},
    "app_update": {"name": None, "lifecycle": {"type": None, "data": {"buildpacks": None, "stack": None}},
                   "metadata": _META},
    "packages_create": {"type": None, "data": {"image": None, "username": None, "password": None},
                        "relationships": {"app": _REL}, "metadata": _META},
    "builds_create": {"package": {"guid": None}, "lifecycle": None, "staging_memory_in_mb": None,
                      "staging_disk_in_mb": None, "metadata": _META},
    "droplets_copy": {"relationships": {"app": _REL}},
    "app_current_droplet": {"data": {"guid": None}},
    "process_scale": {"instances": None, "memory_in_mb": None, "disk_in_mb": None,
                      "log_rate_limit_in_bytes_per_second": None},
    "route_destinations": {"destinations": [{"app": {"guid": None, "process": {"type": None}}, "weight": None,
                                             "port": None, "protocol": None}]},
}
"""Fields of each request body as the v3 API documents them (``None``: any value)."""
TOKEN = "cf-token-1"


class CloudControllerDouble:
    def __init__(self, *, org: str = "payments", space: str = "production", bad: tuple[str, ...] = ("*-bad*",),
                 username: str = "deployer", password: str = "s3cret") -> None:  # noqa: S107 - a test user
        self.bad = bad
        self.username, self.password = username, password
        self._ids = itertools.count(1)
        self.org_guid, self.space_guid = "org-guid-1", "space-guid-1"
        self.org, self.space = org, space
        self.domains = {"apps.example.com": "domain-1"}
        self.apps: dict[str, dict[str, Any]] = {}
        self.processes: dict[str, dict[str, Any]] = {}
        self.packages: dict[str, dict[str, Any]] = {}
        self.builds: dict[str, dict[str, Any]] = {}
        self.droplets: dict[str, dict[str, Any]] = {}
        self.routes: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.slow = 0
        """Polls a build, droplet copy or deletion job stays unfinished for."""
        self.faults: list[tuple[str, int, str | None]] = []
        self.denied: set[str] = set()
        self.counts: collections.Counter[str] = collections.Counter()
        self.lock = threading.RLock()
        self.url_map = Map([
            Rule("/", endpoint="root", methods=["GET"]),
            Rule("/login/oauth/token", endpoint="token", methods=["POST"]),
            Rule("/v3/organizations", endpoint="orgs_list", methods=["GET"]),
            Rule("/v3/spaces", endpoint="spaces_list", methods=["GET"]),
            Rule("/v3/domains", endpoint="domains_list", methods=["GET"]),
            Rule("/v3/apps", endpoint="apps_list", methods=["GET"]),
            Rule("/v3/apps", endpoint="apps_create", methods=["POST"]),
            Rule("/v3/apps/<guid>", endpoint="app_update", methods=["PATCH"]),
            Rule("/v3/apps/<guid>", endpoint="app_delete", methods=["DELETE"]),
            Rule("/v3/apps/<guid>/actions/start", endpoint="app_start", methods=["POST"]),
            Rule("/v3/apps/<guid>/actions/stop", endpoint="app_stop", methods=["POST"]),
            Rule("/v3/apps/<guid>/droplets/current", endpoint="app_droplet", methods=["GET"]),
            Rule("/v3/apps/<guid>/relationships/current_droplet", endpoint="app_current_droplet", methods=["PATCH"]),
            Rule("/v3/apps/<guid>/processes/web", endpoint="process_get", methods=["GET"]),
            Rule("/v3/apps/<guid>/processes/web/actions/scale", endpoint="process_scale", methods=["POST"]),
            Rule("/v3/processes", endpoint="processes_list", methods=["GET"]),
            Rule("/v3/processes/<guid>/stats", endpoint="process_stats", methods=["GET"]),
            Rule("/v3/packages", endpoint="packages_create", methods=["POST"]),
            Rule("/v3/packages/<guid>", endpoint="package_get", methods=["GET"]),
            Rule("/v3/builds", endpoint="builds_create", methods=["POST"]),
            Rule("/v3/builds/<guid>", endpoint="build_get", methods=["GET"]),
            Rule("/v3/droplets", endpoint="droplets_copy", methods=["POST"]),
            Rule("/v3/droplets/<guid>", endpoint="droplet_get", methods=["GET"]),
            Rule("/v3/routes", endpoint="routes_list", methods=["GET"]),
            Rule("/v3/routes/<guid>/destinations", endpoint="route_destinations", methods=["POST"]),
            Rule("/v3/routes/<guid>/destinations/<dest>", endpoint="route_unmap", methods=["DELETE"]),
            Rule("/v3/jobs/<guid>", endpoint="job_get", methods=["GET"]),
        ])
        self._server = make_server("127.0.0.1", 0, self, threaded=True, request_handler=_Quiet)
        self.port = self._server.server_port
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    # ------------------------------------------------------------------ lifecycle and test helpers

    def start(self) -> CloudControllerDouble:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _guid(self, kind: str) -> str:
        return f"{kind}-{next(self._ids)}"

    def add_route(self, host: str, domain: str = "apps.example.com", path: str = "") -> str:
        guid = self._guid("route")
        self.routes[guid] = {"guid": guid, "host": host, "path": path, "url": f"{host}.{domain}{path}",
                             "relationships": {"space": {"data": {"guid": self.space_guid}},
                                               "domain": {"data": {"guid": self.domains[domain]}}},
                             "destinations": []}
        return guid

    def add_droplet(self, guid: str) -> None:
        """A staged droplet (of another app) that ``droplet:GUID`` copies."""
        self.droplets[guid] = {"guid": guid, "state": "STAGED", "app": "", "image": guid}

    def add_package(self, guid: str) -> None:
        self.packages[guid] = {"guid": guid, "type": "bits", "state": "READY", "data": {}, "app": "", "image": guid}

    def add_foreign_app(self, name: str, instances: int = 1) -> str:
        guid = self._guid("app")
        self.apps[guid] = {"guid": guid, "name": name, "state": "STARTED", "created_at": "2026-11-24T10:00:00Z",
                           "space": self.space_guid, "metadata": {"labels": {"team": "other"}, "annotations": {}},
                           "droplet": "", "env": {}}
        self.processes[guid] = {"guid": f"proc-{guid}", "type": "web", "instances": instances, "memory_in_mb": 256,
                                "disk_in_mb": 1024, "app": guid}
        return guid

    def app(self, name: str) -> dict[str, Any]:
        (found,) = [a for a in self.apps.values() if a["name"] == name]
        return found

    def process(self, name: str) -> dict[str, Any]:
        return self.processes[self.app(name)["guid"]]

    def mapped(self, route: str) -> list[str]:
        """Names of the apps a route sends traffic to."""
        return sorted(self.apps[d["app"]["guid"]]["name"] for d in self.routes[route]["destinations"])

    def fail_next(self, endpoint: str, status: int, times: int = 1, *, retry_after: str | None = None) -> None:
        self.faults += [(endpoint, status, retry_after)] * times

    def deny(self, endpoint: str) -> None:
        """The user has no role in the space that allows ``endpoint``."""
        self.denied.add(endpoint)

    # ------------------------------------------------------------------ WSGI

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        try:
            endpoint, args = self.url_map.bind_to_environ(environ).match()
        except HTTPException:
            return _error(404, "CF-NotFound", 10000, f"Unknown request {request.method} {request.path}")(
                environ, start_response)
        with self.lock:
            self.counts[endpoint] += 1
            response = self._dispatch(request, endpoint, args)
        return response(environ, start_response)

    def _dispatch(self, request: Request, endpoint: str, args: Mapping[str, Any]) -> Response:
        if endpoint in ("root", "token"):
            answer: Callable[[Request], Response] = getattr(self, f"on_{endpoint}")
            return answer(request)
        if request.headers.get("Authorization", "").lower() != f"bearer {TOKEN}":
            return _error(401, "CF-InvalidAuthToken", 1000, "Invalid Auth Token")
        if endpoint in self.denied:
            return _error(403, "CF-NotAuthorized", 10003, "You are not authorized to perform the requested action")
        for i, (name, status, retry_after) in enumerate(self.faults):
            if name == endpoint:
                del self.faults[i]
                title = {429: "CF-RateLimitExceeded", 503: "CF-ServiceUnavailable"}.get(status, "UnknownError")
                response = _error(status, title, 10013 if status == 429 else 10001, f"injected {title}")
                if retry_after is not None:
                    response.headers["Retry-After"] = retry_after
                return response
        try:
            if endpoint in BODIES:
                problems = _check(BODIES[endpoint], json.loads(request.get_data(as_text=True) or "{}"), "")
                if problems:
                    raise CcError(422, "CF-UnprocessableEntity", 10008, "; ".join(problems))
            handler: Callable[..., Response] = getattr(self, f"on_{endpoint}")
            return handler(request, **args)
        except CcError as exc:
            return _error(exc.status, exc.title, exc.code, exc.detail)

    def on_root(self, request: Request) -> Response:
        return _json({"links": {"self": {"href": self.base}, "cloud_controller_v3": {"href": f"{self.base}/v3"},
                                "login": {"href": f"{self.base}/login"}, "uaa": {"href": f"{self.base}/login"}}})

    def on_token(self, request: Request) -> Response:
        form = request.form
        ok = (form.get("grant_type") == "password" and form.get("username") == self.username
              and form.get("password") == self.password) or form.get("grant_type") == "refresh_token"
        if not ok:
            return Response(json.dumps({"error": "unauthorized", "error_description": "Bad credentials"}),
                            status=401, mimetype="application/json")
        return _json({"access_token": TOKEN, "refresh_token": "refresh-1", "token_type": "bearer",
                      "expires_in": 3600})

    # ------------------------------------------------------------------ lists

    def _page(self, request: Request, items: list[dict[str, Any]]) -> Response:
        per_page = int(request.args.get("per_page") or 50)
        page = int(request.args.get("page") or 1)
        start = (page - 1) * per_page
        query = {k: v for k, v in request.args.items() if k != "page"}
        nxt = ({"href": f"{self.base}{request.path}?{urlencode({**query, 'page': page + 1})}"}
               if start + per_page < len(items) else None)
        return _json({"pagination": {"total_results": len(items), "total_pages": max(1, -(-len(items) // per_page)),
                                     "first": {"href": f"{self.base}{request.path}?{urlencode(query)}"},
                                     "next": nxt, "previous": None},
                      "resources": items[start:start + per_page]})

    @staticmethod
    def _filter(request: Request, key: str, value: str) -> bool:
        wanted = request.args.get(key)
        return wanted is None or value in wanted.split(",")

    def on_orgs_list(self, request: Request) -> Response:
        orgs = [{"guid": self.org_guid, "name": self.org}]
        return self._page(request, [o for o in orgs if self._filter(request, "names", o["name"])])

    def on_spaces_list(self, request: Request) -> Response:
        spaces: list[dict[str, Any]] = [{"guid": self.space_guid, "name": self.space, "relationships": {
            "organization": {"data": {"guid": self.org_guid}}}}]
        return self._page(request, [s for s in spaces if self._filter(request, "names", s["name"])
                                    and self._filter(request, "organization_guids", self.org_guid)])

    def on_domains_list(self, request: Request) -> Response:
        return self._page(request, [{"guid": g, "name": n} for n, g in sorted(self.domains.items())
                                    if self._filter(request, "names", n)])

    def _app_view(self, app: dict[str, Any]) -> dict[str, Any]:
        return {"guid": app["guid"], "name": app["name"], "state": app["state"], "created_at": app["created_at"],
                "updated_at": app["created_at"], "lifecycle": app.get("lifecycle", {"type": "buildpack", "data": {}}),
                "relationships": {"space": {"data": {"guid": app["space"]}}}, "metadata": app["metadata"],
                "links": {"self": {"href": f"{self.base}/v3/apps/{app['guid']}"}}}

    def on_apps_list(self, request: Request) -> Response:
        apps = [self._app_view(a) for a in sorted(self.apps.values(), key=lambda a: a["created_at"] + a["guid"])
                if self._filter(request, "names", a["name"]) and self._filter(request, "space_guids", a["space"])]
        return self._page(request, apps)

    def _process_view(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"guid": p["guid"], "type": "web", "instances": p["instances"], "memory_in_mb": p["memory_in_mb"],
                "disk_in_mb": p["disk_in_mb"], "relationships": {"app": {"data": {"guid": p["app"]}}}}

    def on_processes_list(self, request: Request) -> Response:
        return self._page(request, [self._process_view(p) for p in self.processes.values()
                                    if self._filter(request, "space_guids", self.apps[p["app"]]["space"])
                                    and self._filter(request, "types", "web")])

    def on_routes_list(self, request: Request) -> Response:
        found = [r for r in self.routes.values()
                 if self._filter(request, "space_guids", r["relationships"]["space"]["data"]["guid"])
                 and self._filter(request, "domain_guids", r["relationships"]["domain"]["data"]["guid"])
                 and self._filter(request, "hosts", r["host"]) and self._filter(request, "paths", r["path"])]
        return self._page(request, found)

    # ------------------------------------------------------------------ apps

    def _app(self, guid: str) -> dict[str, Any]:
        if guid not in self.apps:
            raise CcError(404, "CF-ResourceNotFound", 10010, "App not found")
        return self.apps[guid]

    def on_apps_create(self, request: Request) -> Response:
        doc = json.loads(request.get_data(as_text=True))
        space = doc.get("relationships", {}).get("space", {}).get("data", {}).get("guid")
        if space != self.space_guid:
            raise CcError(422, "CF-UnprocessableEntity", 10008, "Invalid space. Ensure that the space exists.")
        if any(a["name"] == doc.get("name") and a["space"] == space for a in self.apps.values()):
            raise CcError(422, "CF-UniquenessError", 10016, f"App with the name '{doc['name']}' already exists.")
        guid = self._guid("app")
        self.apps[guid] = {"guid": guid, "name": doc["name"], "state": "STOPPED", "space": space, "droplet": "",
                           "created_at": f"2026-11-24T10:{next(self._ids) % 60:02d}:00Z",
                           "lifecycle": doc.get("lifecycle", {"type": "buildpack", "data": {}}),
                           "metadata": {"labels": doc.get("metadata", {}).get("labels", {}),
                                        "annotations": doc.get("metadata", {}).get("annotations", {})},
                           "env": doc.get("environment_variables", {})}
        self.processes[guid] = {"guid": f"proc-{guid}", "type": "web", "instances": 1, "memory_in_mb": 1024,
                                "disk_in_mb": 1024, "app": guid}
        return _json(self._app_view(self.apps[guid]), status=201)

    def on_app_update(self, request: Request, guid: str) -> Response:
        app = self._app(guid)
        doc = json.loads(request.get_data(as_text=True))
        for kind in ("labels", "annotations"):
            for k, v in doc.get("metadata", {}).get(kind, {}).items():
                if v is None:
                    app["metadata"][kind].pop(k, None)
                else:
                    app["metadata"][kind][k] = v
        return _json(self._app_view(app))

    def on_app_delete(self, request: Request, guid: str) -> Response:
        self._app(guid)
        job = self._guid("job")

        def done() -> None:
            self.apps.pop(guid, None)
            self.processes.pop(guid, None)
            for r in self.routes.values():
                r["destinations"] = [d for d in r["destinations"] if d["app"]["guid"] != guid]

        self.jobs[job] = {"guid": job, "state": "PROCESSING", "left": self.slow, "done": done}
        self._tick(self.jobs[job], "COMPLETE")
        return Response("", status=202, headers={"Location": f"{self.base}/v3/jobs/{job}"})

    def _tick(self, thing: dict[str, Any], final: str) -> None:
        if thing["left"] > 0:
            thing["left"] -= 1
            return
        if thing.get("done") is not None:
            thing.pop("done")()
        thing["state"] = final

    def on_job_get(self, request: Request, guid: str) -> Response:
        if guid not in self.jobs:
            raise CcError(404, "CF-ResourceNotFound", 10010, "Job not found")
        job = self.jobs[guid]
        if job["state"] != "COMPLETE":
            self._tick(job, "COMPLETE")
        return _json({"guid": guid, "state": job["state"], "errors": [], "warnings": []})

    def on_app_start(self, request: Request, guid: str) -> Response:
        app = self._app(guid)
        if not app["droplet"]:
            raise CcError(422, "CF-AppNotStaged", 10008, "Assign a droplet before starting this app.")
        app["state"] = "STARTED"
        return _json(self._app_view(app))

    def on_app_stop(self, request: Request, guid: str) -> Response:
        app = self._app(guid)
        app["state"] = "STOPPED"
        return _json(self._app_view(app))

    def on_app_droplet(self, request: Request, guid: str) -> Response:
        app = self._app(guid)
        if not app["droplet"]:
            raise CcError(404, "CF-ResourceNotFound", 10010, "Droplet not found")
        return _json({"guid": app["droplet"], "state": "STAGED"})

    def on_app_current_droplet(self, request: Request, guid: str) -> Response:
        app = self._app(guid)
        droplet = json.loads(request.get_data(as_text=True))["data"]["guid"]
        if self.droplets.get(droplet, {}).get("app") != guid or self.droplets[droplet]["state"] != "STAGED":
            raise CcError(422, "CF-UnprocessableEntity", 10008, "Unable to assign current droplet.")
        app["droplet"] = droplet
        return _json({"data": {"guid": droplet}})

    def on_process_get(self, request: Request, guid: str) -> Response:
        self._app(guid)
        return _json(self._process_view(self.processes[guid]))

    def on_process_scale(self, request: Request, guid: str) -> Response:
        self._app(guid)
        doc = json.loads(request.get_data(as_text=True))
        process = self.processes[guid]
        for key in ("instances", "memory_in_mb", "disk_in_mb"):
            if key in doc:
                if not isinstance(doc[key], int) or doc[key] < 0:
                    raise CcError(422, "CF-UnprocessableEntity", 10008, f"{key} must be a non-negative integer")
                process[key] = doc[key]
        return _json(self._process_view(process), status=202)

    def on_process_stats(self, request: Request, guid: str) -> Response:
        (process,) = [p for p in self.processes.values() if p["guid"] == guid]
        app = self.apps[process["app"]]
        image = self.droplets.get(app["droplet"], {}).get("image", "")
        bad = any(fnmatch.fnmatchcase(image, p) for p in self.bad)
        state = "DOWN" if app["state"] != "STARTED" else "CRASHED" if bad else "RUNNING"
        return _json({"resources": [{"type": "web", "index": i, "state": state}
                                    for i in range(process["instances"])]})

    # ------------------------------------------------------------------ packages, builds, droplets

    def _app_of(self, doc: dict[str, Any]) -> dict[str, Any]:
        return self._app(doc.get("relationships", {}).get("app", {}).get("data", {}).get("guid", ""))

    def on_packages_create(self, request: Request) -> Response:
        doc = json.loads(request.get_data(as_text=True) or "{}")
        app = self._app_of(doc)
        source = request.args.get("source_guid")
        guid = self._guid("package")
        if source:
            if source not in self.packages:
                raise CcError(422, "CF-UnprocessableEntity", 10008, "Source package does not exist")
            image = self.packages[source]["image"]
        else:
            if doc.get("type") != "docker" or app.get("lifecycle", {}).get("type") != "docker":
                raise CcError(422, "CF-UnprocessableEntity", 10008, "Docker packages need a docker app")
            image = doc.get("data", {}).get("image", "")
        self.packages[guid] = {"guid": guid, "type": "docker" if not source else "bits", "state": "READY",
                               "app": app["guid"], "image": image}
        return _json({"guid": guid, "type": self.packages[guid]["type"], "state": "READY"}, status=201)

    def on_package_get(self, request: Request, guid: str) -> Response:
        if guid not in self.packages:
            raise CcError(404, "CF-ResourceNotFound", 10010, "Package not found")
        p = self.packages[guid]
        return _json({"guid": guid, "type": p["type"], "state": p["state"]})

    def on_builds_create(self, request: Request) -> Response:
        doc = json.loads(request.get_data(as_text=True))
        package = self.packages.get(doc["package"]["guid"])
        if package is None or not package["app"]:
            raise CcError(422, "CF-UnprocessableEntity", 10008, "Unable to use package.")
        guid, droplet = self._guid("build"), self._guid("droplet")

        def done() -> None:
            self.droplets[droplet] = {"guid": droplet, "state": "STAGED", "app": package["app"],
                                      "image": package["image"]}

        self.builds[guid] = {"guid": guid, "state": "STAGING", "left": self.slow, "done": done, "droplet": droplet}
        self._tick(self.builds[guid], "STAGED")
        return _json(self._build_view(self.builds[guid]), status=201)

    def _build_view(self, b: dict[str, Any]) -> dict[str, Any]:
        return {"guid": b["guid"], "state": b["state"], "error": None,
                "droplet": {"guid": b["droplet"]} if b["state"] == "STAGED" else None}

    def on_build_get(self, request: Request, guid: str) -> Response:
        build = self.builds[guid]
        if build["state"] != "STAGED":
            self._tick(build, "STAGED")
        return _json(self._build_view(build))

    def on_droplets_copy(self, request: Request) -> Response:
        doc = json.loads(request.get_data(as_text=True))
        app = self._app_of(doc)
        source = self.droplets.get(request.args.get("source_guid", ""))
        if source is None:
            raise CcError(422, "CF-UnprocessableEntity", 10008, "Source droplet does not exist")
        guid = self._guid("droplet")
        self.droplets[guid] = {"guid": guid, "state": "COPYING", "app": app["guid"], "image": source["image"],
                               "left": self.slow}
        self._tick(self.droplets[guid], "STAGED")
        return _json({"guid": guid, "state": self.droplets[guid]["state"]}, status=201)

    def on_droplet_get(self, request: Request, guid: str) -> Response:
        droplet = self.droplets[guid]
        if droplet["state"] != "STAGED":
            self._tick(droplet, "STAGED")
        return _json({"guid": guid, "state": droplet["state"]})

    # ------------------------------------------------------------------ routes

    def _route(self, guid: str) -> dict[str, Any]:
        if guid not in self.routes:
            raise CcError(404, "CF-ResourceNotFound", 10010, "Route not found")
        return self.routes[guid]

    def on_route_destinations(self, request: Request, guid: str) -> Response:
        route = self._route(guid)
        for d in json.loads(request.get_data(as_text=True))["destinations"]:
            self._app(d["app"]["guid"])
            if not any(x["app"]["guid"] == d["app"]["guid"] for x in route["destinations"]):
                route["destinations"].append({"guid": self._guid("dest"), "app": {
                    "guid": d["app"]["guid"], "process": {"type": "web"}}, "weight": None, "port": 8080,
                    "protocol": "http1"})
        return _json({"destinations": route["destinations"]})

    def on_route_unmap(self, request: Request, guid: str, dest: str) -> Response:
        route = self._route(guid)
        if not any(d["guid"] == dest for d in route["destinations"]):
            raise CcError(404, "CF-ResourceNotFound", 10010, "Destination not found")
        route["destinations"] = [d for d in route["destinations"] if d["guid"] != dest]
        return Response("", status=204)


class CcError(Exception):
    def __init__(self, status: int, title: str, code: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.code, self.detail = status, title, code, detail


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _check(schema: Any, doc: Any, path: str) -> list[str]:
    """Fields of ``doc`` that ``schema`` (from ``BODIES``) does not document."""
    if schema is None:
        return []
    if isinstance(schema, list):
        if not isinstance(doc, list):
            return [f"{path}: must be an array"]
        return [p for i, item in enumerate(doc) for p in _check(schema[0], item, f"{path}[{i}]")]
    if not isinstance(doc, dict):
        return [f"{path or '(body)'}: must be an object"]
    problems = []
    for key, value in doc.items():
        where = f"{path}.{key}" if path else key
        if key not in schema:
            problems.append(f"Unknown field(s): '{where}'")
        else:
            problems += _check(schema[key], value, where)
    return problems


def _error(status: int, title: str, code: int, detail: str) -> Response:
    return Response(json.dumps({"errors": [{"code": code, "title": title, "detail": detail}]}), status=status,
                    mimetype="application/json")


def _json(doc: Any, status: int = 200) -> Response:
    return Response(json.dumps(doc), status=status, mimetype="application/json")

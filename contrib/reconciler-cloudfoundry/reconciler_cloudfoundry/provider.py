"""Cloud Foundry: a server group is an app ``app-stack-detail-vNNN`` in the account's space; its routes
are its load balancers; the region is the space's name.

* Ownership and provenance are the app's labels (managed-by, application, cluster, spec-hash, commit);
  what the reconciler must remember (image, instance type, routes, min/max, user tags, traffic state of
  an app without routes) are its annotations, which CF lets us change. So this provider keeps no state
  of its own. A listing is three paged reads of the space: apps, web processes, routes (whose
  ``destinations`` tell which app is in traffic).
* Red/black as Spinnaker's Cloud Foundry driver does it: ``create`` pushes the app (from a Docker
  image, or a copy of a droplet or package, staged with a build), scales its web process and starts
  it, out of traffic (the CF router does not health-check, so nothing is mapped yet). ``enable`` maps
  the routes; ``disable`` unmaps them; scaling to zero also stops the app; ``destroy`` deletes it.
* Health: the web process's stats (instances ``RUNNING``).
* Every call is retried on 429 (after ``Retry-After``) and 5xx with backoff on the injected clock; each
  page of a list is one counted request. Asynchronous work (builds, droplet copies, deletions) is
  polled on the same clock.

Why it is this long: it is the whole Provider interface for Cloud Foundry (apps, processes, routes, builds and
droplets) in one class, with its paging and retries; as a separate distribution it keeps to one module beside
its small client glue.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import yaml

from providers import base
from reconciler.core import errors, model, ratelimit
from reconciler_cloudfoundry import edge

log = logging.getLogger(__name__)

NAME = edge.NAME
KEYS = {"api_url", "org", "space", "credentials_file", "ca_bundle", "skip_ssl_validation", "max_attempts",
        "rate_limit", "staging_timeout", "page_size"}
A_IMAGE, A_TYPE, A_ROUTES = "reconciler/image", "reconciler/instance-type", "reconciler/routes"
A_MIN, A_MAX, A_TAGS, A_TRAFFIC = "reconciler/min", "reconciler/max", "reconciler/tags", "reconciler/traffic"
_LABELS = (model.TAG_MANAGED_BY, model.TAG_APPLICATION, model.TAG_CLUSTER, model.TAG_SPEC_HASH, model.TAG_COMMIT)


class CloudFoundryProvider:
    name = NAME

    def __init__(self, account: str, context: base.ProviderContext, *, api_url: str, org: str, space: str,
                 credentials: Mapping[str, str], verify: bool | str = True, max_attempts: int = 5,
                 rate_limit: float = 10.0, staging_timeout_s: float = 900.0, page_size: int = 200) -> None:
        self.account = account
        self.context = context
        self.api_url = api_url.rstrip("/")
        self.org = org
        self.space = space
        self._credentials = dict(credentials)
        self.verify = verify
        self.max_attempts = max(max_attempts, 1)
        self.staging_timeout_s = staging_timeout_s
        self.page_size = page_size
        self.calls: collections.Counter[str] = collections.Counter()
        """Requests sent, by call (retries and every page included): what tests count."""
        self._bucket = ratelimit.TokenBucket(rate_limit, rate_limit, context.clock)
        self._client: edge.Client | None = None
        self._space_guid = ""
        self._lock = threading.Lock()

    @classmethod
    def check_settings(cls, account: str, config: Mapping[str, Any]) -> list[base.SettingsProblem]:
        """Every account setting's type and range, at config load (the credentials file is read later)."""
        check = base.SettingsCheck(config)
        check.keys(KEYS)
        for key, what in (("api_url", "the Cloud Controller URL, e.g. https://api.sys.example.com"),
                          ("org", "the organization's name"), ("space", "the space's name"),
                          ("credentials_file", "a YAML file with username and password, or client_id and "
                                               "client_secret")):
            if not config.get(key) or not isinstance(config[key], str):
                check.fail(key, f"required ({what})")
        api_url = config.get("api_url")
        if isinstance(api_url, str) and api_url and not api_url.startswith(("https://", "http://")):
            check.fail("api_url", f"an http(s) URL, got {api_url!r}")
        check.number("max_attempts", low=1, high=100, whole=True)
        check.number("rate_limit", low=0)
        check.number("staging_timeout", low=1)
        check.number("page_size", low=1, high=5000, whole=True)
        skip = config.get("skip_ssl_validation", False)
        if not isinstance(skip, bool):
            check.fail("skip_ssl_validation", f"true or false, got {skip!r}")
        check.text("ca_bundle")
        return check.problems

    @classmethod
    def from_config(cls, account: str, config: Mapping[str, Any],
                    context: base.ProviderContext) -> CloudFoundryProvider:
        where = f"providers.{NAME}.accounts.{account}"
        base.raise_problems(NAME, account, cls.check_settings(account, config))
        numbers = {"max_attempts": config.get("max_attempts", 5), "rate_limit": config.get("rate_limit", 10),
                   "staging_timeout": config.get("staging_timeout", 900), "page_size": config.get("page_size", 200)}
        skip = config.get("skip_ssl_validation", False)
        ca = config.get("ca_bundle")
        path = config["credentials_file"]
        try:
            creds = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise errors.ConfigError(f"{where}.credentials_file: cannot read {path}: {exc}") from exc
        if not isinstance(creds, dict) or not all(isinstance(v, str) and v for v in creds.values()) or set(
                creds) not in ({"username", "password"}, {"client_id", "client_secret"}):
            raise errors.ConfigError(f"{where}.credentials_file: {path} must hold username and password, or "
                                     "client_id and client_secret, and nothing else")
        verify: bool | str = False if skip else (ca or True)
        return cls(account, context, api_url=config["api_url"], org=config["org"], space=config["space"],
                   credentials=creds, verify=verify, max_attempts=int(numbers["max_attempts"]),
                   rate_limit=float(numbers["rate_limit"]), staging_timeout_s=float(numbers["staging_timeout"]),
                   page_size=int(numbers["page_size"]))

    # ------------------------------------------------------------------ plumbing

    def _scope(self) -> str:
        return f"org {self.org}, space {self.space}"

    def _where(self, region: str, call: str) -> dict[str, str]:
        return {"provider": NAME, "call": call, "account": self.account, "region": region}

    def _connect(self) -> edge.Client:
        """Log in on first use (the client reads the API root and asks UAA for a token)."""
        with self._lock:
            if self._client is None:
                client = edge.Client(self.api_url, verify=self.verify, client_id=self._credentials.get(
                    "client_id", "cf"), client_secret=self._credentials.get("client_secret", ""))
                if "username" in self._credentials:
                    client.init_with_user_credentials(self._credentials["username"], self._credentials["password"])
                else:
                    client.init_with_client_credentials()
                self._client = client
            return self._client

    def _run(self, call: str, region: str, fn: Callable[[edge.Client], Any], *, write: bool = False) -> Any:
        """One request: rate-limited, retried on 429 (after ``Retry-After``) and 5xx, errors mapped."""
        if region != self.space:
            raise errors.ProviderError(f"region {region!r} is not this account's space ({self._scope()}); "
                                       f"a Cloud Foundry cluster's region is its space's name",
                                       code="RegionNotConfigured", **self._where(region, call))
        delay = 1.0
        for attempt in range(1, self.max_attempts + 1):
            self._bucket.take()
            with self._lock:
                self.calls[call] += 1
            try:
                return fn(self._connect())
            except Exception as exc:
                mapped = edge.map_error(exc, call=call, account=self.account, region=region, scope=self._scope(),
                                        write=write)
                if not mapped.retryable or attempt == self.max_attempts:
                    raise mapped from exc
                wait = edge.retry_after(exc, self.context.clock.now())
                log.info("retrying %s in %s (attempt %d of %d): %s", call, region, attempt, self.max_attempts,
                         mapped)
            self.context.clock.sleep(delay if wait is None else wait)
            delay = min(delay * 2, 30.0)
        raise AssertionError("unreachable")

    def _url(self, path: str, **query: Any) -> str:
        q = {k: v for k, v in query.items() if v is not None}
        return f"{self.api_url}{path}" + (f"?{urlencode(q)}" if q else "")

    def _get(self, call: str, region: str, path: str, **query: Any) -> dict[str, Any]:
        doc: dict[str, Any] = self._run(call, region, lambda c: c.get(self._url(path, **query)).json())
        return doc

    def _send(self, call: str, region: str, method: str, path: str, body: Any = None, **query: Any) -> Any:
        def send(c: edge.Client) -> Any:
            url = self._url(path, **query)
            response = c.delete(url) if method == "DELETE" else getattr(c, method.lower())(url, json=body)
            return response.json() if response.content else {"_location": response.headers.get("Location", "")}

        return self._run(call, region, send, write=True)

    def _pages(self, call: str, region: str, path: str, **query: Any) -> Iterator[dict[str, Any]]:
        """Every resource of a list, one counted (and retried) request per page, following ``next``."""
        url = self._url(path, per_page=self.page_size, **query)
        while url:
            def fetch(c: edge.Client, u: str = url) -> Any:
                return c.get(u).json()

            page: dict[str, Any] = self._run(call, region, fetch)
            yield from page.get("resources", [])
            url = ((page.get("pagination") or {}).get("next") or {}).get("href") or ""

    def _space(self, region: str) -> str:
        if not self._space_guid:
            orgs = list(self._pages("organizations.list", region, "/v3/organizations", names=self.org))
            if not orgs:
                raise errors.NotFound(f"organization {self.org} not found (or not visible to this user)",
                                      **self._where(region, "organizations.list"))
            spaces = list(self._pages("spaces.list", region, "/v3/spaces", names=self.space,
                                      organization_guids=orgs[0]["guid"]))
            if not spaces:
                raise errors.NotFound(f"space {self.space} not found in org {self.org} (or not visible to this "
                                      "user)", **self._where(region, "spaces.list"))
            self._space_guid = str(spaces[0]["guid"])
        return self._space_guid

    def _wait(self, call: str, region: str, path: str, done: Callable[[dict[str, Any]], bool],
              failed: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
        """Poll ``path`` on the injected clock until ``done`` (or a failure, or the staging timeout)."""
        deadline = self.context.clock.now() + self.staging_timeout_s
        delay = 1.0
        while True:
            doc = self._get(call, region, path)
            if done(doc):
                return doc
            why = failed(doc)
            if why:
                raise errors.ProviderError(f"{path} failed ({self._scope()}): {why}", code="Failed",
                                           **self._where(region, call))
            if self.context.clock.now() + delay > deadline:
                raise errors.Unavailable(f"{path} not finished after {self.staging_timeout_s:.0f}s ({self._scope()})",
                                         code="Timeout", **self._where(region, call))
            self.context.clock.sleep(delay)
            delay = min(delay * 2, 15.0)

    # ------------------------------------------------------------------ reading

    def regions(self) -> tuple[str, ...]:
        return (self.space,)

    def list_server_groups(self, region: str) -> list[model.ServerGroup]:
        space = self._space(region)
        apps = list(self._pages("apps.list", region, "/v3/apps", space_guids=space))
        processes = {p["relationships"]["app"]["data"]["guid"]: p for p in self._pages(
            "processes.list", region, "/v3/processes", space_guids=space, types="web")}
        routed: dict[str, set[str]] = collections.defaultdict(set)
        for r in self._pages("routes.list", region, "/v3/routes", space_guids=space):
            for d in r.get("destinations", []):
                routed[d["app"]["guid"]].add(r["url"])
        return [self._to_model(region, a, processes.get(a["guid"]), routed.get(a["guid"], set())) for a in apps]

    def _to_model(self, region: str, app: dict[str, Any], process: dict[str, Any] | None,
                  routed: set[str]) -> model.ServerGroup:
        labels = (app.get("metadata") or {}).get("labels") or {}
        notes = (app.get("metadata") or {}).get("annotations") or {}
        managed = base.tags_say_managed(labels)
        routes = tuple(x for x in notes.get(A_ROUTES, "").split(",") if x)
        if managed and routes and notes.get(A_TRAFFIC) in ("enabling", "disabling"):
            enabled = notes[A_TRAFFIC] == "disabling"  # half-way: listed so that the change is planned again
        elif managed and routes:
            enabled = all(r in routed for r in routes)  # CF reports a route's url as host.domain/path
        elif managed:
            enabled = notes.get(A_TRAFFIC) == "enabled"
        else:
            enabled = bool(routed) or app.get("state") == "STARTED"
        size = int((process or {}).get("instances", 0))
        try:
            tags = json.loads(notes.get(A_TAGS) or "{}")
        except ValueError:
            tags = {}
        return model.ServerGroup(
            name=app["name"], provider=NAME, account=self.account, region=region,
            cluster=labels.get(model.TAG_CLUSTER) or model.cluster_of(app["name"]),
            application=labels.get(model.TAG_APPLICATION, ""), managed=managed,
            launch=model.LaunchSpec(image=notes.get(A_IMAGE, ""), instance_type=notes.get(A_TYPE, ""),
                                    load_balancers=routes, tags=tuple(sorted(tags.items()))),
            capacity=model.Capacity(_int(notes.get(A_MIN), size), size, _int(notes.get(A_MAX), size)),
            enabled=enabled, healthy=size if app.get("state") == "STARTED" else 0, instances=size,
            spec_hash=labels.get(model.TAG_SPEC_HASH, ""), commit=labels.get(model.TAG_COMMIT, ""),
            created_at=_timestamp(app.get("created_at", "")),
        )

    def _app(self, region: str, name: str) -> dict[str, Any] | None:
        found = list(self._pages("apps.list", region, "/v3/apps", names=name, space_guids=self._space(region)))
        return found[0] if found else None

    def _owned(self, region: str, name: str, call: str) -> dict[str, Any] | None:
        app = self._app(region, name)
        if app is not None and not base.tags_say_managed((app.get("metadata") or {}).get("labels") or {}):
            raise errors.Conflict(f"app {name} in {self._scope()} is not managed by reconciler; refusing to {call}",
                                  **self._where(region, call))
        return app

    def _must_own(self, region: str, name: str, call: str) -> dict[str, Any]:
        app = self._owned(region, name, call)
        if app is None:
            raise errors.NotFound(f"app {name} does not exist in {self._scope()}", **self._where(region, call))
        return app

    def health(self, region: str, name: str) -> model.Health:
        """Web instances RUNNING in the process stats; a stopped app has none."""
        app = self._app(region, name)
        if app is None:
            raise errors.NotFound(f"app {name} does not exist in {self._scope()}", **self._where(region, "health"))
        process = self._get("processes.get", region, f"/v3/apps/{app['guid']}/processes/web")
        desired = int(process.get("instances", 0))
        if app.get("state") != "STARTED":
            return model.Health(healthy=0, desired=desired, instances=0)
        stats = self._get("processes.stats", region, f"/v3/processes/{process['guid']}/stats")
        states = [s.get("state") for s in stats.get("resources", [])]
        return model.Health(healthy=min(states.count("RUNNING"), desired), desired=desired, instances=len(states))

    # ------------------------------------------------------------------ mutations

    def _check(self, request: base.CreateRequest) -> tuple[str, str, int, int | None, dict[str, str]]:
        """What can be refused before any call: image, sizes, routes, security groups, user data."""
        where = self._where(request.region, "apps.create")
        launch, cap = request.launch, request.capacity
        if not 0 <= cap.min <= cap.desired <= cap.max:
            raise errors.ProviderError(f"capacity must satisfy 0 <= min <= desired <= max, got {cap.as_dict()}",
                                       code="ValidationError", **where)
        if launch.security_groups:
            raise errors.ProviderError("security_groups: Cloud Foundry binds security groups to spaces, not apps; "
                                       "leave it empty", code="ValidationError", **where)
        if request.autoscaling:
            raise errors.ProviderError("autoscaling: true is not supported on Cloud Foundry (the App Autoscaler "
                                       "is a service); set autoscaling: false", code="ValidationError", **where)
        env: dict[str, str] = {}
        if launch.user_data.strip():
            try:
                env = yaml.safe_load(launch.user_data)
            except yaml.YAMLError as exc:
                raise errors.ProviderError(f"user_data: a YAML mapping of environment variables ({exc})",
                                           code="ValidationError", **where) from exc
            if not isinstance(env, dict) or not all(isinstance(k, str) for k in env):
                raise errors.ProviderError("user_data: a YAML mapping of environment variables, e.g. "
                                           "'LOG_LEVEL: info'", code="ValidationError", **where)
            env = {k: str(v) for k, v in env.items()}
        try:
            kind, ref = edge.source(launch.image)
            memory, disk = edge.sizes(launch.instance_type)
        except ValueError as exc:
            raise errors.ProviderError(str(exc), code="ValidationError", **where) from exc
        labels = request.ownership_tags()
        bad = [k for k, v in labels.items() if len(v) > 63]
        if bad:
            raise errors.ProviderError(f"label {bad[0]} is longer than 63 characters", code="ValidationError", **where)
        return kind, ref, memory, disk, env

    def create_server_group(self, request: base.CreateRequest) -> model.ServerGroup:
        """Push the app stopped, give it a droplet, set its environment, scale and start it; out of traffic.

        Each piece is checked before it is made, so a rerun after a crash finishes the same app.
        """
        region, name, launch = request.region, request.name, request.launch
        kind, ref, memory, disk, env = self._check(request)
        space = self._space(region)
        app = self._app(region, name)
        if app is None:
            notes = {A_IMAGE: launch.image, A_TYPE: launch.instance_type, A_ROUTES: ",".join(launch.load_balancers),
                     A_MIN: str(request.capacity.min), A_MAX: str(request.capacity.max),
                     A_TAGS: json.dumps(dict(launch.tags), sort_keys=True)}
            if not launch.load_balancers:
                notes[A_TRAFFIC] = "disabled"
            body: dict[str, Any] = {"name": name, "relationships": {"space": {"data": {"guid": space}}},
                                    "metadata": {"labels": request.ownership_tags(), "annotations": notes}}
            if kind == "docker":
                body["lifecycle"] = {"type": "docker", "data": {}}
            if env:
                body["environment_variables"] = env
            with contextlib.suppress(errors.Conflict):  # an earlier attempt's app: checked below
                self._send("apps.create", region, "POST", "/v3/apps", body)
            app = self._app(region, name)
            if app is None:
                raise errors.NotFound(f"app {name} is missing right after its creation in {self._scope()}",
                                      **self._where(region, "apps.create"))
        labels = (app.get("metadata") or {}).get("labels") or {}
        if not base.tags_say_managed(labels) or labels.get(model.TAG_SPEC_HASH) != request.spec_hash:
            raise errors.Conflict(f"app {name} already exists in {self._scope()} and is not this deployment's "
                                  "(ownership or spec hash differ)", **self._where(region, "apps.create"))
        guid = app["guid"]
        if not self._current_droplet(region, guid):
            droplet = self._stage(region, guid, kind, ref)
            self._send("apps.setCurrentDroplet", region, "PATCH", f"/v3/apps/{guid}/relationships/current_droplet",
                       {"data": {"guid": droplet}})
        process = self._get("processes.get", region, f"/v3/apps/{guid}/processes/web")
        scale: dict[str, Any] = {"instances": request.capacity.desired, "memory_in_mb": memory}
        if disk is not None:
            scale["disk_in_mb"] = disk
        if any(process.get(k) != v for k, v in scale.items()):
            self._send("processes.scale", region, "POST", f"/v3/apps/{guid}/processes/web/actions/scale", scale)
        if app.get("state") != "STARTED" and request.capacity.desired > 0:
            self._send("apps.start", region, "POST", f"/v3/apps/{guid}/actions/start")
        found = self._app(region, name) or app
        return self._to_model(region, found, {"instances": request.capacity.desired}, set())

    def _current_droplet(self, region: str, guid: str) -> str:
        try:
            doc = self._get("apps.currentDroplet", region, f"/v3/apps/{guid}/droplets/current")
        except errors.NotFound:
            return ""
        return str(doc.get("guid") or "")

    def _stage(self, region: str, app: str, kind: str, ref: str) -> str:
        """A staged droplet for the app: a copy of ``droplet:``, or a build of a Docker or copied package."""
        rel = {"relationships": {"app": {"data": {"guid": app}}}}
        if kind == "droplet":
            copy = self._send("droplets.copy", region, "POST", "/v3/droplets", rel, source_guid=ref)
            done = self._wait("droplets.get", region, f"/v3/droplets/{copy['guid']}",
                              lambda d: d.get("state") == "STAGED",
                              lambda d: str(d.get("error") or d.get("state")) if d.get("state") in (
                                  "FAILED", "EXPIRED") else "")
            return str(done["guid"])
        if kind == "docker":
            package = self._send("packages.create", region, "POST", "/v3/packages",
                                 {"type": "docker", "data": {"image": ref}, **rel})
        else:
            package = self._send("packages.copy", region, "POST", "/v3/packages", rel, source_guid=ref)
        self._wait("packages.get", region, f"/v3/packages/{package['guid']}", lambda p: p.get("state") == "READY",
                   lambda p: str(p.get("state")) if p.get("state") in ("FAILED", "EXPIRED") else "")
        build = self._send("builds.create", region, "POST", "/v3/builds", {"package": {"guid": package["guid"]}})
        staged = self._wait("builds.get", region, f"/v3/builds/{build['guid']}",
                            lambda b: b.get("state") == "STAGED",
                            lambda b: str(b.get("error") or "staging failed") if b.get("state") == "FAILED" else "")
        return str(staged["droplet"]["guid"])

    def _route(self, region: str, spec: str, call: str) -> dict[str, Any]:
        """A route of the space by ``host.domain[/path]`` (routes are the operator's; none is created here)."""
        host, domain, path = edge.route(spec)
        space = self._space(region)
        for h, d in ((host, domain), ("", f"{host}.{domain}" if domain else host)):
            domains = list(self._pages("domains.list", region, "/v3/domains", names=d)) if d else []
            if not domains:
                continue
            found = list(self._pages("routes.list", region, "/v3/routes", space_guids=space,
                                     domain_guids=domains[0]["guid"], hosts=h, paths=path))
            if found:
                return found[0]
        raise errors.NotFound(f"route {spec} does not exist in {self._scope()}; create it (cf create-route)",
                              code="RouteNotFound", **self._where(region, call))

    def _routes_of(self, app: dict[str, Any]) -> list[str]:
        notes = (app.get("metadata") or {}).get("annotations") or {}
        return [x for x in notes.get(A_ROUTES, "").split(",") if x]

    def _annotate(self, region: str, app: dict[str, Any], **notes: str) -> None:
        have = (app.get("metadata") or {}).get("annotations") or {}
        if any(have.get(k) != v for k, v in notes.items()):
            self._send("apps.update", region, "PATCH", f"/v3/apps/{app['guid']}", {"metadata": {"annotations": notes}})

    def enable(self, region: str, name: str) -> None:
        """Map every route to the app (the router then sends it traffic)."""
        app = self._must_own(region, name, "enable")
        changes = []
        for spec in self._routes_of(app):
            r = self._route(region, spec, "enable")
            if not any(d["app"]["guid"] == app["guid"] for d in r.get("destinations", [])):
                changes.append(r)
        self._change_traffic(region, app, "enabling", "enabled", [
            functools.partial(self._send, "routes.insertDestinations", region, "POST",
                              f"/v3/routes/{r['guid']}/destinations",
                              {"destinations": [{"app": {"guid": app["guid"]}}]}) for r in changes])

    def disable(self, region: str, name: str) -> None:
        """Unmap the app from every route; the app keeps running until it is scaled down."""
        app = self._owned(region, name, "disable")
        if app is None:
            return
        changes = []
        for spec in self._routes_of(app):
            try:
                r = self._route(region, spec, "disable")
            except errors.NotFound:
                continue  # a deleted route sends the app no traffic
            changes += [(r["guid"], d["guid"]) for d in r.get("destinations", []) if d["app"]["guid"] == app["guid"]]
        self._change_traffic(region, app, "disabling", "disabled", [
            functools.partial(self._send, "routes.removeDestination", region, "DELETE",
                              f"/v3/routes/{r}/destinations/{d}") for r, d in changes])

    def _change_traffic(self, region: str, app: dict[str, Any], pending: str, final: str,
                        steps: list[Callable[[], Any]]) -> None:
        """Route changes between two annotations: while ``enabling`` (``disabling``) the app lists as out of
        (in) traffic, so an interruption half-way through several routes is planned, and finished, again."""
        if len(steps) > 1:
            self._annotate(region, app, **{A_TRAFFIC: pending})
            app = {**app, "metadata": {"annotations": {A_TRAFFIC: pending}}}
        for step in steps:
            step()
        self._annotate(region, app, **{A_TRAFFIC: final})

    def resize(self, region: str, name: str, capacity: model.Capacity) -> None:
        """Instances of the web process (and min/max annotations); zero also stops the app, more starts it."""
        if not 0 <= capacity.min <= capacity.desired <= capacity.max:
            raise errors.ProviderError(f"capacity must satisfy 0 <= min <= desired <= max, got {capacity.as_dict()}",
                                       code="ValidationError", **self._where(region, "resize"))
        app = self._must_own(region, name, "resize")
        guid = app["guid"]
        process = self._get("processes.get", region, f"/v3/apps/{guid}/processes/web")
        if int(process.get("instances", 0)) != capacity.desired:
            self._send("processes.scale", region, "POST", f"/v3/apps/{guid}/processes/web/actions/scale",
                       {"instances": capacity.desired})
        self._annotate(region, app, **{A_MIN: str(capacity.min), A_MAX: str(capacity.max)})
        if capacity.desired == 0 and app.get("state") == "STARTED":
            self._send("apps.stop", region, "POST", f"/v3/apps/{guid}/actions/stop")
        elif capacity.desired > 0 and app.get("state") != "STARTED":
            self._send("apps.start", region, "POST", f"/v3/apps/{guid}/actions/start")

    def destroy(self, region: str, name: str) -> None:
        """Delete the app (its route mappings go with it) and wait for the deletion job; gone is done."""
        app = self._owned(region, name, "destroy")
        if app is None:
            return
        try:
            answer = self._send("apps.delete", region, "DELETE", f"/v3/apps/{app['guid']}")
        except errors.NotFound:
            return
        job = str(answer.get("_location", "")).rsplit("/", 1)[-1]
        if job:
            self._wait("jobs.get", region, f"/v3/jobs/{job}", lambda j: j.get("state") == "COMPLETE",
                       lambda j: "; ".join(e.get("detail", "") for e in j.get("errors", [])) or "FAILED"
                       if j.get("state") == "FAILED" else "")

    def close(self) -> None:
        client = self._client
        self._client = None
        session = getattr(client, "_session", None)
        if session is not None:
            session.close()


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def _timestamp(text: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else 0.0
    except ValueError:
        return 0.0

"""GCP: a server group is a regional managed instance group with its own regional instance template,
added to and removed from backend services by name.

* Ownership and provenance: the MIG's description (JSON: managed-by, application, cluster, spec hash,
  commit, image, machine type, network tags, backend services, min/max) and the template's labels
  (GCE label rules: lowercase, <= 63 characters; values that do not fit are hashed). One paginated
  MIG list per region describes every group.
* Backend services health-check their backends, so a new group joins them at creation (as Spinnaker
  does). ``disable`` removes it (``update`` with the full resource when it is the last backend, since
  a patch never sends an empty list); ``enable`` adds it back. A MIG without backend services gets
  no load-balanced traffic: its enabled/disabled state is the reconciler's own record in the state store.
* Long-running operations are waited on with Region/GlobalOperationsClient built with the same client
  options (the library's ``ExtendedOperation.result()`` polls the public endpoint). Mutations carry a
  request id reused across retries, so a retried insert is not duplicated. 429 and 5xx are retried with
  backoff; every error is mapped here with the HTTP status, method, project and region.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import google.api_core.exceptions as gexc
import sqlalchemy as sa
from google.api_core.client_options import ClientOptions
from google.auth import credentials as gcreds
from google.auth import exceptions as gauth_exc
from google.cloud import compute_v1

from providers import base
from reconciler import errors, model
from reconciler import store as store_mod

NAME = "gcp"
_KEYS = {"project", "regions", "credentials_file", "endpoint", "network", "max_attempts", "rate_limit"}
_IN_USE = "resourceInUseByAnotherResource"

_meta = sa.MetaData()
_traffic = sa.Table(
    "gcp_traffic", _meta,
    sa.Column("project", sa.String(100), primary_key=True),
    sa.Column("region", sa.String(100), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("enabled", sa.Boolean, nullable=False),
)


def label_value(value: str) -> str:
    """A GCE label value: lowercase [a-z0-9_-], at most 63 characters (hashed when it does not fit)."""
    clean = re.sub(r"[^a-z0-9_-]", "-", value.lower())
    if len(clean) <= 63 and clean == value.lower():
        return clean
    digest = hashlib.sha256(value.encode()).hexdigest()[:10]
    return f"{clean[:52]}-{digest}"


class GcpProvider:
    name = NAME

    def __init__(self, account: str, context: base.ProviderContext, *, project: str, regions: tuple[str, ...] = (),
                 credentials: gcreds.Credentials | None = None, endpoint: str | None = None,
                 network: str = "global/networks/default", max_attempts: int = 5, rate_limit: float = 10.0) -> None:
        self.account = account
        self.context = context
        self.project = project
        self._regions = regions
        self.network = network
        self.max_attempts = max(max_attempts, 1)
        self.rate_limit = rate_limit
        self.calls: collections.Counter[str] = collections.Counter()
        opts = ClientOptions(api_endpoint=endpoint) if endpoint else None
        kw: dict[str, Any] = {"client_options": opts, "credentials": credentials, "transport": "rest"}
        self.templates = compute_v1.RegionInstanceTemplatesClient(**kw)
        self.migs = compute_v1.RegionInstanceGroupManagersClient(**kw)
        self.backends = compute_v1.BackendServicesClient(**kw)
        self.region_ops = compute_v1.RegionOperationsClient(**kw)
        self.global_ops = compute_v1.GlobalOperationsClient(**kw)
        self._engine = store_mod.make_engine(context.state_url)
        _meta.create_all(self._engine)
        self._last_call: dict[str, float] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, account: str, config: Mapping[str, Any], context: base.ProviderContext) -> GcpProvider:
        where = f"providers.gcp.accounts.{account}"
        base.check_keys(NAME, account, config, _KEYS)
        if not config.get("project"):
            raise errors.ConfigError(f"{where}.project: required (the GCP project id)")
        creds: gcreds.Credentials | None = None
        try:
            if config.get("credentials_file"):
                from google.oauth2 import service_account  # noqa: PLC0415 - only with a key file

                creds = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                    str(config["credentials_file"]), scopes=["https://www.googleapis.com/auth/compute"])
            elif config.get("endpoint"):
                creds = gcreds.AnonymousCredentials()  # type: ignore[no-untyped-call]
        except (OSError, ValueError, gauth_exc.GoogleAuthError) as exc:
            raise errors.ProviderError(f"cannot load {where}.credentials_file: {exc}", provider=NAME,
                                       account=account) from exc
        try:
            return cls(account, context, project=str(config["project"]), regions=tuple(config.get("regions") or ()),
                       credentials=creds, endpoint=config.get("endpoint"),
                       network=str(config.get("network") or "global/networks/default"),
                       max_attempts=int(config.get("max_attempts", 5)), rate_limit=float(config.get("rate_limit", 10)))
        except gauth_exc.DefaultCredentialsError as exc:
            raise errors.ProviderError(f"no application default credentials ({exc}); set {where}.credentials_file",
                                       provider=NAME, account=account, code="DefaultCredentialsError") from exc

    # ------------------------------------------------------------------ plumbing

    def _run(self, method: str, region: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """One API call: rate-limited, retried on 429/5xx with backoff, errors mapped."""
        if self._regions and region not in ("global", *self._regions):
            raise errors.ProviderError(f"region {region!r} is not one of this account's regions "
                                       f"({', '.join(self._regions)})", provider=NAME, call=method,
                                       account=self.account, region=region, code="RegionNotConfigured")
        delay = 0.5
        for attempt in range(1, self.max_attempts + 1):
            self._throttle(region)
            self.calls[method] += 1
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                mapped = map_error(exc, method=method, project=self.project, region=region, account=self.account)
                if not mapped.retryable or attempt == self.max_attempts:
                    raise mapped from exc
            self.context.clock.sleep(delay)
            delay = min(delay * 2, 20.0)
        raise AssertionError("unreachable")

    def _throttle(self, region: str) -> None:
        if self.rate_limit <= 0:
            return
        with self._lock:
            now = self.context.clock.now()
            wait = self._last_call.get(region, 0.0) + 1.0 / self.rate_limit - now
            self._last_call[region] = max(now, now + wait)
        if wait > 0:
            self.context.clock.sleep(wait)

    def _wait(self, op: Any, region: str, method: str, timeout_s: float = 600.0) -> None:
        """Wait for a long-running operation with our own operations client; surface its error."""
        deadline = self.context.clock.now() + timeout_s
        while True:
            status = op.status if isinstance(op.status, int) else int(op.status)
            if status == compute_v1.Operation.Status.DONE:
                break
            if self.context.clock.now() > deadline:
                raise errors.Unavailable(f"operation {op.name} not done after {timeout_s:.0f}s", provider=NAME,
                                         call=method, account=self.account, region=region)
            if region == "global":
                op = self._run("globalOperations.wait", region, self.global_ops.wait, project=self.project,
                               operation=op.name)
            else:
                op = self._run("regionOperations.wait", region, self.region_ops.wait, project=self.project,
                               region=region, operation=op.name)
        if op.error and op.error.errors:
            details = "; ".join(f"{e.code}: {e.message}" for e in op.error.errors)
            code = op.error.errors[0].code
            cls = errors.Conflict if code in ("RESOURCE_ALREADY_EXISTS", _IN_USE) else errors.ProviderError
            raise cls(f"operation {op.name} failed: {details}", provider=NAME, call=method, account=self.account,
                      region=region, code=code)

    def _mutate(self, method: str, where: str, fn: Callable[..., Any], request_type: Any, /, **fields: Any) -> None:
        """A mutation with a request id that stays the same on every retry: the API deduplicates it.

        ``where`` is the region of the operation, or "global".
        """
        request = request_type(**fields, request_id=str(uuid.uuid4()))
        op = self._run(method, where, fn, request=request)
        self._wait(op, where, method)

    # ------------------------------------------------------------------ traffic record (no backend services)

    def _record(self, region: str, name: str, enabled: bool | None = None) -> bool:
        where = (_traffic.c.project == self.project, _traffic.c.region == region, _traffic.c.name == name)
        with self._engine.begin() as conn:
            row = conn.execute(sa.select(_traffic.c.enabled).where(*where)).first()
            if enabled is None:
                return bool(row[0]) if row else False
            if row is None:
                conn.execute(_traffic.insert().values(project=self.project, region=region, name=name, enabled=enabled))
            else:
                conn.execute(_traffic.update().where(*where).values(enabled=enabled))
            return enabled

    # ------------------------------------------------------------------ reading

    def regions(self) -> tuple[str, ...]:
        return self._regions

    def _list_migs(self, region: str) -> list[compute_v1.InstanceGroupManager]:
        """Every MIG of the region, one request per page (each retried on its own)."""
        out: list[compute_v1.InstanceGroupManager] = []
        token = ""
        while True:
            req = compute_v1.ListRegionInstanceGroupManagersRequest(
                project=self.project, region=region, max_results=500, page_token=token)
            # a pager delegates attribute reads to the response it holds: .items is this page only
            page = self._run("regionInstanceGroupManagers.list", region, self.migs.list, request=req)
            out += list(page.items)
            token = page.next_page_token
            if not token:
                return out

    def _backend_members(self, region: str, names: set[str]) -> dict[str, set[str]]:
        """Instance-group URLs in each backend service: one read per backend service, not per group."""
        out: dict[str, set[str]] = {}
        for bs in sorted(names):
            svc = self._run("backendServices.get", region, self.backends.get, project=self.project, backend_service=bs)
            out[bs] = {_rel(b.group) for b in svc.backends}
        return out

    def list_server_groups(self, region: str) -> list[model.ServerGroup]:
        migs = self._list_migs(region)
        metas = {m.name: _meta_of(m) for m in migs}
        wanted = {bs for meta in metas.values() for bs in meta.get("lbs", [])}
        members = self._backend_members(region, wanted) if wanted else {}
        return [self._to_model(region, m, metas[m.name], members) for m in migs]

    def _to_model(self, region: str, m: compute_v1.InstanceGroupManager, meta: dict[str, Any],
                  members: dict[str, set[str]]) -> model.ServerGroup:
        lbs = tuple(meta.get("lbs", []))
        group_url = _rel(m.instance_group)
        if lbs:
            enabled = all(group_url in members.get(bs, set()) for bs in lbs)
        else:
            enabled = self._record(region, m.name) if meta.get("managed-by") == model.MANAGED_BY else True
        size = int(m.target_size)
        running = int(m.current_actions.none) if m.current_actions else 0
        created = _ts(m.creation_timestamp)
        return model.ServerGroup(
            name=m.name, provider=NAME, account=self.account, region=region,
            cluster=meta.get("cluster") or model.cluster_of(m.name), application=meta.get("application", ""),
            managed=meta.get("managed-by") == model.MANAGED_BY,
            launch=model.LaunchSpec(image=meta.get("image", ""), instance_type=meta.get("machine-type", ""),
                                    security_groups=tuple(meta.get("tags", [])), load_balancers=lbs,
                                    tags=tuple(sorted(meta.get("labels", {}).items()))),
            capacity=model.Capacity(int(meta.get("min", size)), size, int(meta.get("max", size))),
            enabled=enabled, healthy=min(running, size), instances=size, spec_hash=meta.get("spec-hash", ""),
            commit=meta.get("commit", ""), created_at=created,
        )

    def _get(self, region: str, name: str) -> compute_v1.InstanceGroupManager | None:
        try:
            mig: compute_v1.InstanceGroupManager = self._run(
                "regionInstanceGroupManagers.get", region, self.migs.get, project=self.project, region=region,
                instance_group_manager=name)
        except errors.NotFound:
            return None
        return mig

    def health(self, region: str, name: str) -> model.Health:
        mig = self._get(region, name)
        if mig is None:
            raise errors.NotFound(f"managed instance group {name} does not exist", provider=NAME,
                                  call="regionInstanceGroupManagers.get", account=self.account, region=region)
        pager = self._run("regionInstanceGroupManagers.listManagedInstances", region,
                          self.migs.list_managed_instances, project=self.project, region=region,
                          instance_group_manager=name)
        managed = list(pager.managed_instances)
        ready = set()
        for mi in managed:
            if mi.instance_status != "RUNNING" or mi.current_action != "NONE":
                continue
            states = [h.detailed_health_state for h in mi.instance_health]
            if states and any(s != "HEALTHY" for s in states):
                continue
            ready.add(_rel(mi.instance))
        meta = _meta_of(mig)
        for bs in meta.get("lbs", []):
            got = self._run("backendServices.getHealth", region, self.backends.get_health, project=self.project,
                            backend_service=bs, resource_group_reference_resource=compute_v1.ResourceGroupReference(
                                group=mig.instance_group))
            healthy_here = {_rel(h.instance) for h in got.health_status if h.health_state == "HEALTHY"}
            if got.health_status:
                ready &= healthy_here
        size = int(mig.target_size)
        return model.Health(healthy=min(len(ready), size), desired=size, instances=len(managed))

    # ------------------------------------------------------------------ mutations

    def create_server_group(self, request: base.CreateRequest) -> model.ServerGroup:
        region, name, launch = request.region, request.name, request.launch
        existing = self._get(region, name)
        if existing is not None:
            meta = _meta_of(existing)
            if meta.get("managed-by") == model.MANAGED_BY and meta.get("spec-hash") == request.spec_hash:
                return self.list_one(region, existing)
            raise errors.Conflict(f"managed instance group {name} already exists and is not this deployment's",
                                  provider=NAME, call="regionInstanceGroupManagers.insert", account=self.account,
                                  region=region)
        meta = {**request.ownership_tags(), "image": launch.image, "machine-type": launch.instance_type,
                "tags": list(launch.security_groups), "lbs": list(launch.load_balancers),
                "labels": dict(launch.tags), "min": request.capacity.min, "max": request.capacity.max}
        labels = {k: label_value(v) for k, v in {**dict(launch.tags), **request.ownership_tags()}.items()}
        template = compute_v1.InstanceTemplate(
            name=name, description=json.dumps(meta, sort_keys=True),
            properties=compute_v1.InstanceProperties(
                machine_type=launch.instance_type, labels={label_value(k)[:63]: v for k, v in labels.items()},
                tags=compute_v1.Tags(items=list(launch.security_groups)),
                disks=[compute_v1.AttachedDisk(boot=True, auto_delete=True,
                                               initialize_params=compute_v1.AttachedDiskInitializeParams(
                                                   source_image=launch.image))],
                network_interfaces=[compute_v1.NetworkInterface(network=self.network)],
                metadata=compute_v1.Metadata(items=[compute_v1.Items(key="startup-script", value=launch.user_data)]
                                             if launch.user_data else []),
            ),
        )
        with contextlib.suppress(errors.Conflict):  # an earlier attempt (crash after the call) made it
            self._mutate("regionInstanceTemplates.insert", region, self.templates.insert_unary,
                         compute_v1.InsertRegionInstanceTemplateRequest, project=self.project, region=region,
                         instance_template_resource=template)
        template_url = f"projects/{self.project}/regions/{region}/instanceTemplates/{name}"
        if not launch.load_balancers:
            self._record(region, name, False)
        mig = compute_v1.InstanceGroupManager(
            name=name, base_instance_name=name[:58], instance_template=template_url,
            target_size=request.capacity.desired, description=json.dumps(meta, sort_keys=True))
        with contextlib.suppress(errors.Conflict):
            self._mutate("regionInstanceGroupManagers.insert", region, self.migs.insert_unary,
                         compute_v1.InsertRegionInstanceGroupManagerRequest, project=self.project, region=region,
                         instance_group_manager_resource=mig)
        created = self._get(region, name)
        if created is None:
            raise errors.Unavailable(f"managed instance group {name} not visible after creation", provider=NAME,
                                     call="regionInstanceGroupManagers.insert", account=self.account, region=region)
        for bs in launch.load_balancers:
            self._add_backend(region, bs, created.instance_group)
        return self.list_one(region, created)

    def list_one(self, region: str, mig: compute_v1.InstanceGroupManager) -> model.ServerGroup:
        meta = _meta_of(mig)
        members = self._backend_members(region, set(meta.get("lbs", [])))
        return self._to_model(region, mig, meta, members)

    def _owned(self, region: str, name: str, call: str) -> compute_v1.InstanceGroupManager | None:
        mig = self._get(region, name)
        if mig is not None and _meta_of(mig).get("managed-by") != model.MANAGED_BY:
            raise errors.Conflict(f"managed instance group {name} is not managed by reconciler; refusing to {call}",
                                  provider=NAME, call=call, account=self.account, region=region)
        return mig

    def _add_backend(self, region: str, bs: str, group_url: str) -> None:
        for _ in range(2):
            svc = self._run("backendServices.get", region, self.backends.get, project=self.project, backend_service=bs)
            if any(_rel(b.group) == _rel(group_url) for b in svc.backends):
                return
            patch = compute_v1.BackendService(
                fingerprint=svc.fingerprint,
                backends=[*svc.backends, compute_v1.Backend(group=group_url, balancing_mode="UTILIZATION")])
            try:
                self._mutate("backendServices.patch", "global", self.backends.patch_unary,
                             compute_v1.PatchBackendServiceRequest, project=self.project, backend_service=bs,
                             backend_service_resource=patch)
                return
            except errors.Conflict:
                continue  # 412: the fingerprint moved; read again once
        raise errors.Conflict(f"backend service {bs} keeps changing; try again", provider=NAME,
                              call="backendServices.patch", account=self.account, region=region)

    def _remove_backend(self, region: str, bs: str, group_url: str) -> None:
        for _ in range(2):
            svc = self._run("backendServices.get", region, self.backends.get, project=self.project, backend_service=bs)
            keep = [b for b in svc.backends if _rel(b.group) != _rel(group_url)]
            if len(keep) == len(svc.backends):
                return
            try:
                if keep:
                    patch = compute_v1.BackendService(fingerprint=svc.fingerprint, backends=keep)
                    self._mutate("backendServices.patch", "global", self.backends.patch_unary,
                                 compute_v1.PatchBackendServiceRequest, project=self.project, backend_service=bs,
                                 backend_service_resource=patch)
                else:
                    full = compute_v1.BackendService(svc)
                    full.backends = []
                    self._mutate("backendServices.update", "global", self.backends.update_unary,
                                 compute_v1.UpdateBackendServiceRequest, project=self.project, backend_service=bs,
                                 backend_service_resource=full)
                return
            except errors.Conflict:
                continue
        raise errors.Conflict(f"backend service {bs} keeps changing; try again", provider=NAME,
                              call="backendServices.patch", account=self.account, region=region)

    def enable(self, region: str, name: str) -> None:
        mig = self._owned(region, name, "enable")
        if mig is None:
            raise errors.NotFound(f"managed instance group {name} does not exist", provider=NAME, call="enable",
                                  account=self.account, region=region)
        lbs = _meta_of(mig).get("lbs", [])
        for bs in lbs:
            self._add_backend(region, bs, mig.instance_group)
        if not lbs:
            self._record(region, name, True)

    def disable(self, region: str, name: str) -> None:
        mig = self._owned(region, name, "disable")
        if mig is None:
            return
        lbs = _meta_of(mig).get("lbs", [])
        for bs in lbs:
            self._remove_backend(region, bs, mig.instance_group)
        if not lbs:
            self._record(region, name, False)

    def resize(self, region: str, name: str, capacity: model.Capacity) -> None:
        mig = self._owned(region, name, "resize")
        if mig is None:
            raise errors.NotFound(f"managed instance group {name} does not exist", provider=NAME, call="resize",
                                  account=self.account, region=region)
        if int(mig.target_size) == capacity.desired:
            return
        self._mutate("regionInstanceGroupManagers.resize", region, self.migs.resize_unary,
                     compute_v1.ResizeRegionInstanceGroupManagerRequest, project=self.project, region=region,
                     instance_group_manager=name, size=capacity.desired)

    def destroy(self, region: str, name: str) -> None:
        mig = self._owned(region, name, "destroy")
        if mig is not None:
            for bs in _meta_of(mig).get("lbs", []):
                self._remove_backend(region, bs, mig.instance_group)
            with contextlib.suppress(errors.NotFound):
                self._mutate("regionInstanceGroupManagers.delete", region, self.migs.delete_unary,
                             compute_v1.DeleteRegionInstanceGroupManagerRequest, project=self.project, region=region,
                             instance_group_manager=name)
        for attempt in range(5):
            try:
                self._mutate("regionInstanceTemplates.delete", region, self.templates.delete_unary,
                             compute_v1.DeleteRegionInstanceTemplateRequest, project=self.project, region=region,
                             instance_template=name)
                return
            except errors.NotFound:
                return
            except errors.Conflict as exc:
                if exc.code != _IN_USE or attempt == 4:
                    raise
                self.context.clock.sleep(2.0 * (attempt + 1))  # the MIG's deletion is still settling

    def close(self) -> None:
        for client in (self.templates, self.migs, self.backends, self.region_ops, self.global_ops):
            client.transport.close()  # type: ignore[no-untyped-call]
        self._engine.dispose()


def _meta_of(mig: compute_v1.InstanceGroupManager) -> dict[str, Any]:
    try:
        meta = json.loads(mig.description or "{}")
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def _rel(url: str) -> str:
    """``projects/P/...`` whether the API returned a full URL or a relative one."""
    idx = url.find("projects/")
    return url[idx:] if idx >= 0 else url


def _ts(text: str) -> float:
    try:
        return datetime.fromisoformat(text).timestamp() if text else 0.0
    except ValueError:
        return 0.0


def map_error(exc: BaseException, *, method: str, project: str, region: str, account: str) -> errors.ProviderError:
    """One place that turns the client's failures into the project's exception tree."""
    where = f"project {project}"
    kw = {"provider": NAME, "call": method, "account": account, "region": region}
    if isinstance(exc, errors.ProviderError):
        return exc
    if isinstance(exc, gexc.GoogleAPICallError):
        status = int(exc.code or 0)
        reason = ""
        if exc.errors and isinstance(exc.errors[0], dict):
            reason = str(exc.errors[0].get("reason", ""))
        message = f"HTTP {status} ({where}): {exc.message}"
        code = reason or str(status)
        if status == 429:
            return errors.Throttled(message, code=code, **kw)
        if status == 403:
            return errors.AccessDenied(message + " (the service account needs roles/compute.instanceAdmin.v1 "
                                       "and roles/compute.loadBalancerAdmin)", code=code, **kw)
        if status == 404:
            return errors.NotFound(message, code=code, **kw)
        if status in (409, 412) or reason == _IN_USE:
            return errors.Conflict(message, code=code, **kw)
        if status >= 500:
            return errors.Unavailable(message, code=code, **kw)
        return errors.ProviderError(message, code=code, **kw)
    if isinstance(exc, gexc.RetryError | gexc.ServiceUnavailable):
        return errors.Unavailable(f"{exc} ({where})", code=type(exc).__name__, **kw)
    if isinstance(exc, gauth_exc.GoogleAuthError):
        return errors.ProviderError(f"credentials: {exc} ({where})", code=type(exc).__name__, **kw)
    if isinstance(exc, ConnectionError | OSError) or type(exc).__module__.startswith(("requests", "urllib3")):
        return errors.Unavailable(f"{type(exc).__name__}: {exc} ({where})", code="connection", **kw)
    raise exc

"""GCP: a server group is a regional managed instance group (MIG) with its own regional instance
template, added to and removed from global backend services by name.

* Ownership and provenance: the MIG's and the template's description (JSON: managed-by, application,
  cluster, spec hash, commit, image, machine type, network tags, backend services, min/max) and the
  template's labels (GCE label rules; values that do not fit are hashed). One paginated MIG list per
  region describes every group, foreign ones as unmanaged.
* Backend services health-check their backends, so a new group joins them at creation (as Spinnaker
  does). ``disable`` removes it (``update`` with the full resource when it is the last backend, since
  a patch never sends an empty list) and turns its autoscaler off; ``enable`` adds it back and
  restores the autoscaler's mode. Without backend services a group's traffic state, like min/max
  after a resize, is kept in the state store (``records``): GCE holds neither mutably.
* Long-running operations are waited on with Region/GlobalOperationsClient built with the same client
  options (the library's ``ExtendedOperation.result()`` polls the public endpoint). Mutations carry a
  request id reused across retries, so a retried insert is not duplicated. 429 and 5xx are retried with
  backoff on the injected clock; every error is mapped in ``edge`` with status, method, project, region.

Why it is this long: it is the whole Provider interface for GCE (MIGs, templates, backend services,
autoscalers, health) in one class; the edge (error mapping, labels) and the records (state GCE cannot hold)
are already split out, and what remains is each verb's calls, which read best beside each other.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from google.api_core.client_options import ClientOptions
from google.auth import credentials as gcreds
from google.auth import exceptions as gauth_exc
from google.cloud import compute_v1

from providers import base
from providers.gcp import edge
from providers.gcp import images as images_mod
from providers.gcp import records as records_mod
from providers.gcp import resources as resources_mod
from reconciler.core import errors, model, ratelimit
from reconciler.core.resources import GLOBAL

log = logging.getLogger(__name__)

NAME = edge.NAME
KEYS = {"project", "regions", "zones", "credentials_file", "endpoint", "network", "max_attempts", "rate_limit"}
OFF = "OFF"


class GcpProvider(resources_mod.GcpResources, images_mod.GcpImages):
    name = NAME
    page_size = 500
    """maxResults of every list request (the API's maximum)."""
    operation_timeout_s = 600.0
    call_timeout_s = 180.0
    """Per request; above the 2 minutes an operations ``wait`` may block on the server."""

    def __init__(self, account: str, context: base.ProviderContext, *, project: str, regions: tuple[str, ...] = (),
                 zones: Mapping[str, tuple[str, ...]] | None = None, credentials: gcreds.Credentials | None = None,
                 endpoint: str | None = None, network: str = "global/networks/default", max_attempts: int = 5,
                 rate_limit: float = 10.0) -> None:
        self.account = account
        self.context = context
        self.project = project
        self._regions = regions
        self.zones = dict(zones or {})
        self.network = network
        self.max_attempts = max(max_attempts, 1)
        self.rate_limit = rate_limit
        self.calls: collections.Counter[str] = collections.Counter()
        """Requests sent, by API method (retries included): what tests and benchmarks count."""
        opts = ClientOptions(api_endpoint=endpoint) if endpoint else None
        kw: dict[str, Any] = {"client_options": opts, "credentials": credentials, "transport": "rest"}
        self.templates = compute_v1.RegionInstanceTemplatesClient(**kw)
        self.migs = compute_v1.RegionInstanceGroupManagersClient(**kw)
        self.autoscalers = compute_v1.RegionAutoscalersClient(**kw)
        self.backends = compute_v1.BackendServicesClient(**kw)
        self.region_ops = compute_v1.RegionOperationsClient(**kw)
        self.global_ops = compute_v1.GlobalOperationsClient(**kw)
        self.rc = resources_mod.Clients(**kw)
        self._scopes: dict[tuple[str, str], resources_mod.Scope] = {}
        """(region, backend service) -> where it was found (global or that region's), for ``getHealth``."""
        self.images_client = compute_v1.ImagesClient(**kw)
        self.records = records_mod.Records(context.open_database(), project)
        self._buckets: dict[str, ratelimit.TokenBucket] = {}
        self._count_lock = threading.Lock()

    @classmethod
    def check_settings(cls, account: str, config: Mapping[str, Any]) -> list[base.SettingsProblem]:
        """Types and ranges of the account settings, at config load (no client, no call)."""
        check = base.SettingsCheck(config)
        check.keys(KEYS)
        check.text("project", required=True)
        for key in ("credentials_file", "endpoint", "network"):
            check.text(key)
        check.strings("regions", example="[europe-west1]")
        check.string_lists("zones", example="{europe-west1: [europe-west1-b, europe-west1-c]}")
        check.number("max_attempts", low=1, high=100, whole=True)
        check.number("rate_limit", low=0)
        return check.problems

    @classmethod
    def from_config(cls, account: str, config: Mapping[str, Any], context: base.ProviderContext) -> GcpProvider:
        where = f"providers.gcp.accounts.{account}"
        base.raise_problems(NAME, account, cls.check_settings(account, config))
        regions = config.get("regions") or []
        zones = config.get("zones") or {}
        numbers = {key: config[key] if config.get(key) is not None else default
                   for key, default in (("max_attempts", 5), ("rate_limit", 10))}
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
            return cls(account, context, project=config["project"], regions=tuple(regions),
                       zones={r: tuple(z) for r, z in zones.items()}, credentials=creds,
                       endpoint=config.get("endpoint"), network=str(config.get("network") or "global/networks/default"),
                       max_attempts=int(numbers["max_attempts"]), rate_limit=float(numbers["rate_limit"]))
        except gauth_exc.DefaultCredentialsError as exc:
            raise errors.ProviderError(f"no application default credentials for project {config['project']} "
                                       f"({exc}); set {where}.credentials_file", provider=NAME, account=account,
                                       code="DefaultCredentialsError") from exc

    # ------------------------------------------------------------------ plumbing

    def _run(self, method: str, region: str, fn: Callable[..., Any], /, **kwargs: Any) -> Any:
        """One API call: rate-limited, retried on 429/5xx with exponential backoff, errors mapped.

        The library's own retry (GETs on 503) is turned off: it would sleep on the wall clock and
        hide attempts from the counter.
        """
        if self._regions and region not in ("global", *self._regions):
            raise errors.ProviderError(f"region {region!r} is not one of this account's regions "
                                       f"({', '.join(self._regions)}; project {self.project})", provider=NAME,
                                       call=method, account=self.account, region=region, code="RegionNotConfigured")
        delay = 0.5
        for attempt in range(1, self.max_attempts + 1):
            self._bucket(region).take()
            with self._count_lock:
                self.calls[method] += 1
            try:
                return fn(**kwargs, retry=None, timeout=self.call_timeout_s)
            except Exception as exc:
                mapped = edge.map_error(exc, method=method, project=self.project, region=region,
                                        account=self.account)
                if not mapped.retryable or attempt == self.max_attempts:
                    raise mapped from exc
                log.info("retrying %s in %s (attempt %d of %d): %s", method, region, attempt, self.max_attempts,
                         mapped)
            self.context.clock.sleep(delay)
            delay = min(delay * 2, 20.0)
        raise AssertionError("unreachable")

    def _bucket(self, region: str) -> ratelimit.TokenBucket:
        bucket = self._buckets.get(region)
        if bucket is None:
            bucket = self._buckets.setdefault(region, ratelimit.TokenBucket(self.rate_limit, self.rate_limit,
                                                                       self.context.clock))
        return bucket

    def _pages(self, method: str, region: str, fn: Callable[..., Any], request: Any) -> Iterator[Any]:
        """Each page of a list, one request per page (each retried on its own).

        The library's pager would fetch later pages behind our back (no count, no retry); read
        only the response it holds (attribute reads delegate to it) and follow the token here.
        """
        request.max_results = self.page_size
        while True:
            page = self._run(method, region, fn, request=request)
            yield page
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    def _wait(self, op: Any, region: str, method: str) -> None:
        """Wait for a long-running operation with our own operations client; surface its error."""
        deadline = self.context.clock.now() + self.operation_timeout_s
        while int(op.status) != compute_v1.Operation.Status.DONE:
            if self.context.clock.now() >= deadline:
                raise errors.Unavailable(f"operation {op.name} not done after {self.operation_timeout_s:.0f}s "
                                         f"(project {self.project})", provider=NAME, call=method,
                                         account=self.account, region=region, code="OperationTimeout")
            if region == "global":
                op = self._run("globalOperations.wait", region, self.global_ops.wait, project=self.project,
                               operation=op.name)
            else:
                op = self._run("regionOperations.wait", region, self.region_ops.wait, project=self.project,
                               region=region, operation=op.name)
            if int(op.status) != compute_v1.Operation.Status.DONE:
                self.context.clock.sleep(1.0)  # the server's wait already blocked; do not spin
        if op.error and op.error.errors:
            details = "; ".join(f"{e.code}: {e.message}" for e in op.error.errors)
            code = op.error.errors[0].code
            cls = errors.Conflict if code in ("RESOURCE_ALREADY_EXISTS", edge.IN_USE) else errors.ProviderError
            raise cls(f"operation {op.name} failed (project {self.project}): {details}", provider=NAME,
                      call=method, account=self.account, region=region, code=code)

    def _mutate(self, method: str, scope: str, fn: Callable[..., Any], request_type: Any, /, **fields: Any) -> None:
        """A mutation with one request id for all its retries (the API deduplicates it), then its wait.

        ``scope`` is the operation's region, or "global".
        """
        request = request_type(**fields, request_id=str(uuid.uuid4()))
        op = self._run(method, scope, fn, request=request)
        self._wait(op, scope, method)

    def _where(self, region: str, call: str) -> dict[str, str]:
        return {"provider": NAME, "call": call, "account": self.account, "region": region}

    # ------------------------------------------------------------------ reading

    def regions(self) -> tuple[str, ...]:
        return self._regions

    def list_server_groups(self, region: str) -> list[model.ServerGroup]:
        if region == GLOBAL:  # the placement of account-wide resources holds no groups
            return []
        request = compute_v1.ListRegionInstanceGroupManagersRequest(project=self.project, region=region)
        migs = [m for page in self._pages("regionInstanceGroupManagers.list", region, self.migs.list, request)
                for m in page.items]
        metas = {m.name: _meta_of(m) for m in migs}
        members = self._members(region, {bs for meta in metas.values() for bs in meta.get("lbs", [])},
                                strict=False)
        records = self.records.region(region)
        return [self._to_model(region, m, metas[m.name], members, records.get(m.name)) for m in migs]

    def _members(self, region: str, names: set[str], *, strict: bool) -> dict[str, set[str]]:
        """Instance-group URLs in each backend service: one read per backend service, never per group.

        A listing (``strict=False``) survives a deleted backend service: its groups read as out of it.
        """
        out: dict[str, set[str]] = {}
        for bs in sorted(names):
            try:
                svc, api = self._find_backend(region, bs)
            except errors.NotFound:
                if strict:
                    raise
                log.warning("backend service %s not found in project %s; its groups read as out of traffic",
                            bs, self.project)
                out[bs] = set()
                continue
            out[bs] = {edge.rel(b.group) for b in svc.backends}
            self._scopes[(region, bs)] = api
        return out

    def _to_model(self, region: str, m: compute_v1.InstanceGroupManager, meta: dict[str, Any],
                  members: dict[str, set[str]], record: records_mod.Record | None) -> model.ServerGroup:
        record = record or records_mod.Record()
        managed = meta.get("managed-by") == model.MANAGED_BY
        lbs = tuple(meta.get("lbs", []))
        if lbs:
            enabled = all(edge.rel(m.instance_group) in members.get(bs, set()) for bs in lbs)
        else:
            # a managed group with no record lost it with the state store: it may be serving
            enabled = record.enabled if managed and record.enabled is not None else True
        size = int(m.target_size)
        running = int(m.current_actions.none) if m.current_actions else 0
        cap_min = record.cap_min if record.cap_min is not None else int(meta.get("min", size))
        cap_max = record.cap_max if record.cap_max is not None else int(meta.get("max", size))
        extra = (("autoscaler", edge.last(m.status.autoscaler)),) if m.status and m.status.autoscaler else ()
        return model.ServerGroup(
            name=m.name, provider=NAME, account=self.account, region=region,
            cluster=meta.get("cluster") or model.cluster_of(m.name), application=meta.get("application", ""),
            managed=managed,
            launch=model.LaunchSpec(image=meta.get("image", ""), instance_type=meta.get("machine-type", ""),
                                    security_groups=tuple(meta.get("tags", [])), load_balancers=lbs,
                                    tags=tuple(sorted(meta.get("labels", {}).items()))),
            capacity=model.Capacity(cap_min, size, cap_max),
            enabled=enabled, healthy=min(running, size), instances=size, spec_hash=meta.get("spec-hash", ""),
            commit=meta.get("commit", ""), created_at=edge.timestamp(m.creation_timestamp), extra=extra,
        )

    def _get(self, region: str, name: str) -> compute_v1.InstanceGroupManager | None:
        try:
            mig: compute_v1.InstanceGroupManager = self._run(
                "regionInstanceGroupManagers.get", region, self.migs.get, project=self.project, region=region,
                instance_group_manager=name)
        except errors.NotFound:
            return None
        return mig

    def _must_get(self, region: str, name: str, call: str) -> compute_v1.InstanceGroupManager:
        mig = self._get(region, name)
        if mig is None:
            raise errors.NotFound(f"managed instance group {name} does not exist in project {self.project}",
                                  **self._where(region, call))
        return mig

    def health(self, region: str, name: str) -> model.Health:
        """Instances RUNNING with no current action (and HEALTHY where autohealing reports it),
        and HEALTHY in every backend service the group is in."""
        mig = self._must_get(region, name, "health")
        request = compute_v1.ListManagedInstancesRegionInstanceGroupManagersRequest(
            project=self.project, region=region, instance_group_manager=name)
        managed = [mi for page in self._pages("regionInstanceGroupManagers.listManagedInstances", region,
                                              self.migs.list_managed_instances, request)
                   for mi in page.managed_instances]
        ready = set()
        for mi in managed:
            if mi.instance_status != "RUNNING" or mi.current_action != "NONE":
                continue
            states = [h.detailed_health_state for h in mi.instance_health]
            if states and any(s != "HEALTHY" for s in states):
                continue
            ready.add(edge.rel(mi.instance))
        group = edge.rel(mig.instance_group)
        lbs = set(_meta_of(mig).get("lbs", []))
        for bs, members in self._members(region, lbs, strict=False).items():
            if group not in members:
                continue  # out of this backend service (disabled): it reports no health for the group
            api = self._scopes.get((region, bs)) or self._api(GLOBAL)
            got = self._run(api.method("backendServices", "getHealth"), region, api.backends.get_health,
                            **api.where, backend_service=bs,
                            resource_group_reference_resource=compute_v1.ResourceGroupReference(
                                group=mig.instance_group))
            ready &= {edge.rel(h.instance) for h in got.health_status if h.health_state == "HEALTHY"}
        size = int(mig.target_size)
        return model.Health(healthy=min(len(ready), size), desired=size, instances=len(managed))

    # ------------------------------------------------------------------ mutations

    def create_server_group(self, request: base.CreateRequest) -> model.ServerGroup:
        """Template, MIG, autoscaler (with ``autoscaling``), then the backend services.

        Safe to repeat after a crash at any point: each piece found by name is reused when its
        ownership and spec hash are this request's, and refused (Conflict) otherwise.
        """
        region, name, launch = request.region, request.name, request.launch
        call = "regionInstanceGroupManagers.insert"
        meta = {**request.ownership_tags(), "image": launch.image, "machine-type": launch.instance_type,
                "tags": list(launch.security_groups), "lbs": list(launch.load_balancers),
                "labels": dict(launch.tags), "min": request.capacity.min, "max": request.capacity.max}
        description = json.dumps(meta, sort_keys=True, separators=(",", ":"))
        existing = self._get(region, name)
        if existing is None:
            self._ensure_template(request, description)
            self.records.put(region, name, enabled=False if not launch.load_balancers else None,
                             cap_min=request.capacity.min, cap_max=request.capacity.max)
            mig = compute_v1.InstanceGroupManager(
                name=name, base_instance_name=name[:58], target_size=request.capacity.desired,
                instance_template=f"projects/{self.project}/regions/{region}/instanceTemplates/{name}",
                description=description)
            if self.zones.get(region):
                mig.distribution_policy = compute_v1.DistributionPolicy(zones=[
                    compute_v1.DistributionPolicyZoneConfiguration(zone=f"projects/{self.project}/zones/{z}")
                    for z in self.zones[region]])
            with contextlib.suppress(errors.Conflict):  # made by an attempt whose answer was lost: checked below
                self._mutate(call, region, self.migs.insert_unary, compute_v1.InsertRegionInstanceGroupManagerRequest,
                             project=self.project, region=region, instance_group_manager_resource=mig)
            existing = self._must_get(region, name, call)
        meta_now = _meta_of(existing)
        if meta_now.get("managed-by") != model.MANAGED_BY or meta_now.get("spec-hash") != request.spec_hash:
            raise errors.Conflict(f"managed instance group {name} already exists in project {self.project} and "
                                  "is not this deployment's (ownership or spec hash differ)",
                                  **self._where(region, call))
        if request.autoscaling and request.capacity.max >= 1 and not existing.status.autoscaler:
            self._ensure_autoscaler(region, existing, request.capacity)
            existing = self._must_get(region, name, call)
        for bs in launch.load_balancers:
            self._add_backend(region, bs, existing.instance_group)
        return self._to_model(region, existing, meta_now,
                              self._members(region, set(launch.load_balancers), strict=True),
                              self.records.get(region, name))

    def _ensure_template(self, request: base.CreateRequest, description: str) -> None:
        region, name, launch = request.region, request.name, request.launch
        labels = {edge.label_key(k): edge.label_value(v)
                  for k, v in {**dict(launch.tags), **request.ownership_tags()}.items()}
        template = compute_v1.InstanceTemplate(
            name=name, description=description,
            properties=compute_v1.InstanceProperties(
                machine_type=launch.instance_type, labels=labels,
                tags=compute_v1.Tags(items=list(launch.security_groups)),
                disks=[compute_v1.AttachedDisk(boot=True, auto_delete=True,
                                               initialize_params=compute_v1.AttachedDiskInitializeParams(
                                                   source_image=launch.image))],
                network_interfaces=[compute_v1.NetworkInterface(network=self.network)],
                metadata=compute_v1.Metadata(items=[compute_v1.Items(key="startup-script", value=launch.user_data)]
                                             if launch.user_data else []),
            ),
        )
        call = "regionInstanceTemplates.insert"
        with contextlib.suppress(errors.Conflict):  # it exists already: checked to be ours below
            self._mutate(call, region, self.templates.insert_unary, compute_v1.InsertRegionInstanceTemplateRequest,
                         project=self.project, region=region, instance_template_resource=template)
            return
        found = self._template_labels(region, name)
        if found is None or found.get(model.TAG_MANAGED_BY) != model.MANAGED_BY or found.get(
                model.TAG_SPEC_HASH) != edge.label_value(request.spec_hash):
            raise errors.Conflict(f"instance template {name} already exists in project {self.project} and is not "
                                  "this deployment's", **self._where(region, call))

    def _template_labels(self, region: str, name: str) -> dict[str, str] | None:
        try:
            t = self._run("regionInstanceTemplates.get", region, self.templates.get, project=self.project,
                          region=region, instance_template=name)
        except errors.NotFound:
            return None
        return dict(t.properties.labels)

    def _ensure_autoscaler(self, region: str, mig: compute_v1.InstanceGroupManager, cap: model.Capacity) -> None:
        policy = compute_v1.AutoscalingPolicy(min_num_replicas=cap.min, max_num_replicas=cap.max, mode="ON")
        scaler = compute_v1.Autoscaler(name=mig.name, target=mig.self_link, autoscaling_policy=policy)
        with contextlib.suppress(errors.Conflict):  # an earlier attempt made it
            self._mutate("regionAutoscalers.insert", region, self.autoscalers.insert_unary,
                         compute_v1.InsertRegionAutoscalerRequest, project=self.project, region=region,
                         autoscaler_resource=scaler)

    def _autoscaler(self, region: str, mig: compute_v1.InstanceGroupManager) -> compute_v1.Autoscaler | None:
        if not (mig.status and mig.status.autoscaler):
            return None
        try:
            scaler: compute_v1.Autoscaler = self._run(
                "regionAutoscalers.get", region, self.autoscalers.get, project=self.project, region=region,
                autoscaler=edge.last(mig.status.autoscaler))
        except errors.NotFound:
            return None
        return scaler

    def _patch_autoscaler(self, region: str, scaler: compute_v1.Autoscaler, **policy: Any) -> None:
        self._mutate("regionAutoscalers.patch", region, self.autoscalers.patch_unary,
                     compute_v1.PatchRegionAutoscalerRequest, project=self.project, region=region,
                     autoscaler=scaler.name, autoscaler_resource=compute_v1.Autoscaler(
                         name=scaler.name, autoscaling_policy=compute_v1.AutoscalingPolicy(**policy)))

    def _owned(self, region: str, name: str, call: str) -> compute_v1.InstanceGroupManager | None:
        mig = self._get(region, name)
        if mig is not None and _meta_of(mig).get("managed-by") != model.MANAGED_BY:
            raise errors.Conflict(f"managed instance group {name} in project {self.project} is not managed by "
                                  f"reconciler; refusing to {call}", **self._where(region, call))
        return mig

    def _add_backend(self, region: str, bs: str, group_url: str) -> None:
        """Patch with the current fingerprint; a stale one (412) is read again once."""
        for _ in range(2):
            svc, api = self._find_backend(region, bs)
            if any(edge.rel(b.group) == edge.rel(group_url) for b in svc.backends):
                return
            patch = compute_v1.BackendService(
                fingerprint=svc.fingerprint,
                backends=[*svc.backends, compute_v1.Backend(group=group_url, balancing_mode="UTILIZATION")])
            try:
                self._mutate(api.method("backendServices", "patch"), api.region, api.backends.patch_unary,
                             api.request("PatchBackendServiceRequest"), **api.where, backend_service=bs,
                             backend_service_resource=patch)
                return
            except errors.Conflict:
                continue
        raise errors.Conflict(f"backend service {bs} in project {self.project} keeps changing (stale fingerprint "
                              "twice); try again", **self._where(region, "backendServices.patch"))

    def _remove_backend(self, region: str, bs: str, group_url: str) -> None:
        """Patch without the group; ``update`` (PUT) the full resource when it was the last backend."""
        for _ in range(2):
            try:
                svc, api = self._find_backend(region, bs)
            except errors.NotFound:
                return  # the backend service is gone: nothing sends traffic to the group through it
            keep = [b for b in svc.backends if edge.rel(b.group) != edge.rel(group_url)]
            if len(keep) == len(svc.backends):
                return
            try:
                if keep:
                    self._mutate(api.method("backendServices", "patch"), api.region, api.backends.patch_unary,
                                 api.request("PatchBackendServiceRequest"), **api.where, backend_service=bs,
                                 backend_service_resource=compute_v1.BackendService(fingerprint=svc.fingerprint,
                                                                                    backends=keep))
                else:
                    full = compute_v1.BackendService(svc)
                    full.backends = []
                    self._mutate(api.method("backendServices", "update"), api.region, api.backends.update_unary,
                                 api.request("UpdateBackendServiceRequest"), **api.where, backend_service=bs,
                                 backend_service_resource=full)
                return
            except errors.Conflict:
                continue
        raise errors.Conflict(f"backend service {bs} in project {self.project} keeps changing (stale fingerprint "
                              "twice); try again", **self._where(region, "backendServices.patch"))

    def enable(self, region: str, name: str) -> None:
        mig = self._owned(region, name, "enable")
        if mig is None:
            raise errors.NotFound(f"managed instance group {name} does not exist in project {self.project}",
                                  **self._where(region, "enable"))
        lbs = _meta_of(mig).get("lbs", [])
        for bs in lbs:
            self._add_backend(region, bs, mig.instance_group)
        scaler = self._autoscaler(region, mig)
        if scaler is not None and scaler.autoscaling_policy.mode == OFF:
            mode = self.records.get(region, name).autoscaler_mode or "ON"
            self._patch_autoscaler(region, scaler, mode=mode)
        if not lbs:
            self.records.put(region, name, enabled=True)

    def disable(self, region: str, name: str) -> None:
        mig = self._owned(region, name, "disable")
        if mig is None:
            return
        lbs = _meta_of(mig).get("lbs", [])
        for bs in lbs:
            self._remove_backend(region, bs, mig.instance_group)
        scaler = self._autoscaler(region, mig)
        if scaler is not None and scaler.autoscaling_policy.mode != OFF:
            self.records.put(region, name, autoscaler_mode=scaler.autoscaling_policy.mode or "ON")
            self._patch_autoscaler(region, scaler, mode=OFF)
        if not lbs:
            self.records.put(region, name, enabled=False)

    def resize(self, region: str, name: str, capacity: model.Capacity) -> None:
        """Target size through ``resize``; with an autoscaler, its bounds (and the size only while it is off)."""
        mig = self._owned(region, name, "resize")
        if mig is None:
            raise errors.NotFound(f"managed instance group {name} does not exist in project {self.project}",
                                  **self._where(region, "resize"))
        scaler = self._autoscaler(region, mig)
        scaling = scaler is not None and scaler.autoscaling_policy.mode != OFF
        if scaler is not None and capacity.max >= 1:  # an autoscaler's max cannot be 0: bounds stay, size goes
            policy = scaler.autoscaling_policy
            if (policy.min_num_replicas, policy.max_num_replicas) != (capacity.min, capacity.max):
                self._patch_autoscaler(region, scaler, min_num_replicas=capacity.min,
                                       max_num_replicas=capacity.max)
        if not scaling and int(mig.target_size) != capacity.desired:
            self._mutate("regionInstanceGroupManagers.resize", region, self.migs.resize_unary,
                         compute_v1.ResizeRegionInstanceGroupManagerRequest, project=self.project, region=region,
                         instance_group_manager=name, size=capacity.desired)
        self.records.put(region, name, cap_min=capacity.min, cap_max=capacity.max)

    def destroy(self, region: str, name: str) -> None:
        """Out of the backend services, autoscaler, MIG, then the template (once the MIG lets go of it)."""
        mig = self._owned(region, name, "destroy")
        if mig is not None:
            for bs in _meta_of(mig).get("lbs", []):
                self._remove_backend(region, bs, mig.instance_group)
            scaler = self._autoscaler(region, mig)
            if scaler is not None:
                self._delete("regionAutoscalers.delete", region, self.autoscalers.delete_unary,
                             compute_v1.DeleteRegionAutoscalerRequest, autoscaler=scaler.name)
            self._delete("regionInstanceGroupManagers.delete", region, self.migs.delete_unary,
                         compute_v1.DeleteRegionInstanceGroupManagerRequest, instance_group_manager=name)
        labels = self._template_labels(region, name)
        if labels is not None:
            if labels.get(model.TAG_MANAGED_BY) != model.MANAGED_BY:
                raise errors.Conflict(f"instance template {name} in project {self.project} is not managed by "
                                      "reconciler; refusing to delete it", **self._where(region, "destroy"))
            self._delete("regionInstanceTemplates.delete", region, self.templates.delete_unary,
                         compute_v1.DeleteRegionInstanceTemplateRequest, instance_template=name)
        self.records.forget(region, name)

    def _delete(self, method: str, region: str, fn: Callable[..., Any], request_type: Any, /, **fields: Any) -> None:
        """Delete; gone is done, and "in use" is retried briefly while a deletion before it settles."""
        for attempt in range(5):
            try:
                self._mutate(method, region, fn, request_type, project=self.project, region=region, **fields)
                return
            except errors.NotFound:
                return
            except errors.Conflict as exc:
                if exc.code != edge.IN_USE or attempt == 4:
                    raise
                self.context.clock.sleep(2.0 * (attempt + 1))

    def close(self) -> None:
        for client in (self.templates, self.migs, self.autoscalers, self.backends, self.region_ops, self.global_ops,
                       self.images_client):
            client.transport.close()  # type: ignore[no-untyped-call]
        self.rc.close()
        self.records.close()


def _meta_of(resource: compute_v1.InstanceGroupManager) -> dict[str, Any]:
    try:
        meta = json.loads(resource.description or "{}")
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}

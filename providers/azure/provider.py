"""Azure: a server group is a virtual machine scale set (Uniform orchestration, manual upgrade policy) in
the account's resource group, in the backend pools of load balancers or application gateways by name.

* Ownership, provenance and what Azure does not hold for us (min/max, the balancers by name, traffic
  state of a group without balancers) are the scale set's tags, which Azure lets us change later, so
  this provider keeps no state of its own. One paged list of the resource group's scale sets describes
  every group of a region; foreign scale sets are listed as unmanaged and never changed.
* Load balancers and application gateways health-probe their pools, so a new group joins them at
  creation (as Spinnaker does). ``disable`` takes the pools out of the scale set's model and applies it
  to every instance (``manualUpgrade``); ``enable`` puts them back. Each checks whether instances
  still run an older model, so an interrupted disable or enable finishes on the next try.
* Health for waits: the scale set's instances (paged, with their instance views) that are provisioned
  and running, ``HealthState/healthy`` where the application health extension reports, and ``Up`` in the
  health of every load-balancing rule of the pools the group is in (the balancer's probe).
* With ``autoscaling`` the group gets an Azure Monitor autoscale setting of its own name: ``disable``
  turns it off, ``enable`` on; while it is on, ``resize`` sets its bounds and leaves the size to it.
* Long-running operations use the SDK's ARM poller, sleeping on the reconciler's clock. Every call is
  retried on 429 (after ``Retry-After``) and 5xx with backoff on the same clock; errors are mapped in
  ``edge`` with the ARM error code, the call, the account and the region.

Why it is this long: it is the whole Provider interface for one cloud (scale sets, their balancer pools,
autoscale settings, health from three sources) in one class; the SDK edge (clients, retries, error mapping) is
already in ``edge``, and what remains is each verb's steps against ARM, which read best beside each other.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ClientAuthenticationError
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute import models as cm
from azure.mgmt.monitor import MonitorManagementClient
from azure.mgmt.monitor import models as mm
from azure.mgmt.network import NetworkManagementClient

from providers import base
from providers.azure import edge
from reconciler.core import errors, model, ratelimit

log = logging.getLogger(__name__)

NAME = edge.NAME
KEYS = {"subscription", "resource_group", "regions", "credentials", "credentials_file", "client_id", "tenant_id",
        "subnet", "admin_username", "ssh_public_key", "health_extension", "endpoint", "ca_bundle", "max_attempts",
        "rate_limit", "operation_timeout"}
CREDENTIALS = ("managed_identity", "service_principal", "cli")
HEALTH_KEYS = {"protocol", "port", "request_path"}
TAG_MIN = "reconciler:min"
TAG_MAX = "reconciler:max"
TAG_LBS = "reconciler:load-balancers"
TAG_TRAFFIC = "reconciler:traffic"
TAG_AUTOSCALE = "reconciler:autoscale"
PENDING = "pending"
"""``reconciler:traffic`` while a pool change is in the model but not yet on every instance."""
_OWN = {model.TAG_MANAGED_BY, model.TAG_APPLICATION, model.TAG_CLUSTER, model.TAG_SPEC_HASH, model.TAG_COMMIT,
        TAG_MIN, TAG_MAX, TAG_LBS, TAG_TRAFFIC, TAG_AUTOSCALE}
_MAX_TAGS, _MAX_TAG_NAME, _MAX_TAG_VALUE = 50, 512, 256
_BAD_TAG_CHARS = set("<>%&\\?/")
_MAX_CUSTOM_DATA = 65535  # bytes, base64-encoded
_NIC, _IPCONFIG = "nic0", "ipconfig0"
_POOL = "backendAddressPools"


class Balancer:
    """A spec's ``load_balancers`` entry resolved: its pool's ID, and the rules whose probe checks it."""

    def __init__(self, name: str, kind: str, pool_id: str, rules: tuple[str, ...] = (), probe_id: str = "") -> None:
        self.name, self.kind, self.pool_id, self.rules, self.probe_id = name, kind, pool_id, rules, probe_id


class AzureProvider:
    name = NAME
    poll_interval_s = 5.0
    """Between operation polls when an answer carries no ``Retry-After``."""

    def __init__(self, account: str, context: base.ProviderContext, *, subscription: str, resource_group: str,
                 credential: TokenCredential, subnet: str, ssh_public_key: str, regions: tuple[str, ...] = (),
                 admin_username: str = "azureuser", health_extension: Mapping[str, Any] | None = None,
                 endpoint: str | None = None, ca_bundle: str | None = None, max_attempts: int = 5,
                 rate_limit: float = 10.0, operation_timeout_s: float = 1800.0) -> None:
        self.account = account
        self.context = context
        self.subscription = subscription
        self.group = resource_group
        self.subnet = subnet if subnet.startswith("/subscriptions/") else edge.rid(
            subscription, resource_group, "Microsoft.Network", "virtualNetworks", *_vnet_subnet(subnet))
        self.ssh_public_key = ssh_public_key
        self.admin_username = admin_username
        self.health_extension = dict(health_extension or {})
        self._regions = regions
        self.max_attempts = max(max_attempts, 1)
        self.rate_limit = rate_limit
        self.operation_timeout_s = operation_timeout_s
        self.endpoint = (endpoint or "https://management.azure.com").rstrip("/")
        self.calls: collections.Counter[str] = collections.Counter()
        """Requests started, by SDK operation (retries included; operation polls are not counted here)."""
        kw: dict[str, Any] = {"base_url": self.endpoint, "credential_scopes": [f"{self.endpoint}/.default"],
                              "retry_total": 0, "polling_interval": 0}
        if ca_bundle:
            kw["connection_verify"] = ca_bundle
        self.compute = ComputeManagementClient(credential, subscription, **kw)
        self.network = NetworkManagementClient(credential, subscription, **kw)
        self.monitor = MonitorManagementClient(credential, subscription, **kw)
        self._credential = credential
        self._buckets: dict[str, ratelimit.TokenBucket] = {}
        self._lock = threading.Lock()

    @classmethod
    def check_settings(cls, account: str, config: Mapping[str, Any]) -> list[base.SettingsProblem]:
        """Every account setting's type and range, at config load (no credential is built, no call made)."""
        check = base.SettingsCheck(config)
        check.keys(KEYS)
        for key in ("subscription", "resource_group", "subnet", "ssh_public_key"):
            if not config.get(key) or not isinstance(config[key], str):
                check.fail(key, f"required ({_REQUIRED[key]})")
        subnet = config.get("subnet")
        if isinstance(subnet, str) and subnet and not subnet.startswith("/subscriptions/") \
                and len(subnet.split("/")) != 2:
            check.fail("subnet", f"a subnet resource ID or VNET/SUBNET in the resource group, got {subnet!r}")
        check.strings("regions", example="[westeurope, northeurope]")
        check.number("max_attempts", low=1, high=100, whole=True)
        check.number("rate_limit", low=0)
        check.number("operation_timeout", low=1)
        health = config.get("health_extension")
        if health is not None and (not isinstance(health, dict) or set(health) - HEALTH_KEYS
                                   or health.get("protocol") not in ("http", "https", "tcp")
                                   or not isinstance(health.get("port"), int) or isinstance(health.get("port"), bool)):
            check.fail("health_extension", "{protocol: http|https|tcp, port: N, request_path: /health} "
                                           "(request_path for http and https only)")
        for key in ("endpoint", "ca_bundle", "admin_username", "client_id", "tenant_id", "credentials_file"):
            check.text(key)
        endpoint = config.get("endpoint")
        if isinstance(endpoint, str) and not endpoint.startswith("https://"):
            check.fail("endpoint", f"an https:// URL (tokens are never sent in clear), got {endpoint!r}")
        kind = config.get("credentials")
        if kind is not None and kind not in CREDENTIALS:
            check.fail("credentials", f"one of {', '.join(CREDENTIALS)}, got {kind!r}")
        return check.problems

    @classmethod
    def from_config(cls, account: str, config: Mapping[str, Any], context: base.ProviderContext) -> AzureProvider:
        where = f"providers.{NAME}.accounts.{account}"
        base.raise_problems(NAME, account, cls.check_settings(account, config))
        regions = config.get("regions") or []
        health = config.get("health_extension")
        endpoint = config.get("endpoint")
        numbers = {"max_attempts": config.get("max_attempts", 5), "rate_limit": config.get("rate_limit", 10),
                   "operation_timeout": config.get("operation_timeout", 1800)}
        credential = _credential(where, config)
        return cls(account, context, subscription=config["subscription"], resource_group=config["resource_group"],
                   credential=credential, subnet=config["subnet"], ssh_public_key=config["ssh_public_key"],
                   regions=tuple(regions), admin_username=config.get("admin_username") or "azureuser",
                   health_extension=health, endpoint=endpoint, ca_bundle=config.get("ca_bundle"),
                   max_attempts=int(numbers["max_attempts"]), rate_limit=float(numbers["rate_limit"]),
                   operation_timeout_s=float(numbers["operation_timeout"]))

    # ------------------------------------------------------------------ plumbing

    def _scope(self) -> str:
        return f"subscription {self.subscription}, resource group {self.group}"

    def _where(self, region: str, call: str) -> dict[str, str]:
        return {"provider": NAME, "call": call, "account": self.account, "region": region}

    def _run(self, call: str, region: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """One SDK call: rate-limited, retried on 429 (after ``Retry-After``) and 5xx, errors mapped.

        The SDK's own retry policy is off (``retry_total=0``): it would sleep on the wall clock and hide
        attempts from the counter.
        """
        if self._regions and region not in self._regions:
            raise errors.ProviderError(f"region {region!r} is not one of this account's regions "
                                       f"({', '.join(self._regions)}; {self._scope()})", code="RegionNotConfigured",
                                       **self._where(region, call))
        delay = 1.0
        for attempt in range(1, self.max_attempts + 1):
            self._bucket(region).take()
            with self._lock:
                self.calls[call] += 1
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                mapped = edge.map_error(exc, call=call, account=self.account, region=region, scope=self._scope())
                if not mapped.retryable or attempt == self.max_attempts or mapped.code == edge.TIMEOUT:
                    raise mapped from exc  # an operation that timed out already waited long enough
                wait = edge.retry_after(exc, self.context.clock.now())
                log.info("retrying %s in %s in %.1fs (attempt %d of %d): %s", call, region,
                         delay if wait is None else wait, attempt, self.max_attempts, mapped)
            self.context.clock.sleep(delay if wait is None else wait)
            delay = min(delay * 2, 30.0)
        raise AssertionError("unreachable")

    def _bucket(self, region: str) -> ratelimit.TokenBucket:
        with self._lock:
            bucket = self._buckets.get(region)
            if bucket is None:
                bucket = self._buckets[region] = ratelimit.TokenBucket(self.rate_limit, self.rate_limit,
                                                                       self.context.clock)
            return bucket

    def _pages(self, call: str, region: str, make: Callable[[], Any]) -> Iterator[Any]:
        """Every item of a paged list, one request per page, each page retried on its own."""
        token: str | None = None
        while True:
            def fetch(token: str | None = token) -> tuple[list[Any], str | None]:
                pages = make().by_page(continuation_token=token)
                items = list(next(pages))
                return items, pages.continuation_token

            items, token = self._run(call, region, fetch)
            yield from items
            if not token:
                return

    def _lro(self, call: str, region: str, begin: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Start a long-running operation and poll it to the end on our clock; retried as one call
        (ARM's PUT, PATCH, DELETE and these POSTs are idempotent)."""
        def run() -> Any:
            polling = edge.ClockPolling(self.context.clock, self.poll_interval_s, self.operation_timeout_s,
                                        self.endpoint, f"operation ({self._scope()})", self._where(region, call))
            return begin(*args, polling=polling, **kwargs).result()

        return self._run(call, region, run)

    # ------------------------------------------------------------------ reading

    def regions(self) -> tuple[str, ...]:
        return self._regions

    def list_server_groups(self, region: str) -> list[model.ServerGroup]:
        groups = self._pages("virtualMachineScaleSets.list", region,
                             lambda: self.compute.virtual_machine_scale_sets.list(self.group))
        return [self._to_model(region, g) for g in groups if _location(g) == _location_name(region)]

    def _get(self, region: str, name: str,
             call: str = "virtualMachineScaleSets.get") -> cm.VirtualMachineScaleSet | None:
        try:
            found: cm.VirtualMachineScaleSet = self._run(call, region, self.compute.virtual_machine_scale_sets.get,
                                                         self.group, name)
        except errors.NotFound:
            return None
        if _location(found) != _location_name(region):
            return None
        return found

    def _owned(self, region: str, name: str, call: str) -> cm.VirtualMachineScaleSet | None:
        found = self._get(region, name)
        if found is not None and not base.tags_say_managed(found.tags or {}):
            raise errors.Conflict(f"scale set {name} in {self._scope()} is not managed by reconciler; "
                                  f"refusing to {call}", **self._where(region, call))
        return found

    def _must_own(self, region: str, name: str, call: str) -> cm.VirtualMachineScaleSet:
        found = self._owned(region, name, call)
        if found is None:
            raise errors.NotFound(f"scale set {name} does not exist in {self._scope()}", **self._where(region, call))
        return found

    def _to_model(self, region: str, vmss: cm.VirtualMachineScaleSet) -> model.ServerGroup:
        tags = dict(vmss.tags or {})
        managed = base.tags_say_managed(tags)
        size = int(vmss.sku.capacity or 0) if vmss.sku else 0
        lbs = tuple(x for x in tags.get(TAG_LBS, "").split(",") if x)
        pools = _pool_ids(vmss)
        if managed and lbs:
            # pending: the model changed, the instances not yet, so they still have the other state
            enabled = not pools if tags.get(TAG_TRAFFIC) == PENDING else bool(pools)
        elif managed:
            enabled = tags.get(TAG_TRAFFIC) == "enabled"
        else:
            enabled = True
        props = vmss.properties
        ready = props is not None and props.provisioning_state == "Succeeded"
        profile = props.virtual_machine_profile if props else None
        storage = profile.storage_profile if profile else None
        return model.ServerGroup(
            name=vmss.name or "", provider=NAME, account=self.account, region=region,
            cluster=tags.get(model.TAG_CLUSTER) or model.cluster_of(vmss.name or ""),
            application=tags.get(model.TAG_APPLICATION, ""), managed=managed,
            launch=model.LaunchSpec(image=edge.image_of(storage.image_reference if storage else None),
                                    instance_type=vmss.sku.name or "" if vmss.sku else "",
                                    security_groups=_nsg_names(vmss), load_balancers=lbs,
                                    tags=tuple(sorted((k, v) for k, v in tags.items() if k not in _OWN))),
            capacity=model.Capacity(_int(tags.get(TAG_MIN), size), size, _int(tags.get(TAG_MAX), size)),
            enabled=enabled, healthy=size if ready else 0, instances=size,
            spec_hash=tags.get(model.TAG_SPEC_HASH, ""), commit=tags.get(model.TAG_COMMIT, ""),
            created_at=_timestamp(props.time_created if props else None),
            extra=(("autoscaler", vmss.name or ""),) if tags.get(TAG_AUTOSCALE) == "true" else (),
        )

    def _instances(self, region: str, name: str) -> list[cm.VirtualMachineScaleSetVM]:
        return list(self._pages("virtualMachineScaleSetVMs.list", region,
                                lambda: self.compute.virtual_machine_scale_set_vms.list(self.group, name,
                                                                                        expand="instanceView")))

    def health(self, region: str, name: str) -> model.Health:
        vmss = self._get(region, name, "health")
        if vmss is None:
            raise errors.NotFound(f"scale set {name} does not exist in {self._scope()}",
                                  **self._where(region, "health"))
        size = int(vmss.sku.capacity or 0) if vmss.sku else 0
        vms = self._instances(region, name)
        ready: set[tuple[str, str]] = set()  # (scale set, instance id): a pool holds other groups' instances too
        for vm in vms:
            view = vm.properties.instance_view if vm.properties else None
            codes = {s.code or "" for s in (view.statuses or [])} if view else set()
            if "ProvisioningState/succeeded" not in codes or "PowerState/running" not in codes:
                continue
            reported = view.vm_health.status.code if view and view.vm_health and view.vm_health.status else None
            if reported is not None and reported != "HealthState/healthy":
                continue
            ready.add((name.lower(), str(vm.instance_id)))
        for lb_name, rule in self._probing_rules(region, vmss):
            got = self._lro("loadBalancerLoadBalancingRules.health", region,
                            self.network.load_balancer_load_balancing_rules.begin_health, self.group, lb_name, rule)
            up = {(edge.segment(a.network_interface_ip_configuration_id or "", "virtualMachineScaleSets").lower(),
                   edge.segment(a.network_interface_ip_configuration_id or "", "virtualMachines"))
                  for a in (got.load_balancer_backend_addresses or []) if a.state == "Up"}
            ready &= up
        return model.Health(healthy=min(len(ready), size), desired=size, instances=len(vms))

    def _probing_rules(self, region: str, vmss: cm.VirtualMachineScaleSet) -> list[tuple[str, str]]:
        """(balancer, rule) for every load-balancing rule that sends a pool this group is in traffic."""
        pools = [p for p in _pool_ids(vmss) if "/Microsoft.Network/loadBalancers/" in p]
        out: list[tuple[str, str]] = []
        for lb_name in sorted({edge.segment(p, "loadBalancers") for p in pools}):
            lb = self._run("loadBalancers.get", region, self.network.load_balancers.get, self.group, lb_name)
            for rule in (lb.properties.load_balancing_rules or []) if lb.properties else []:
                rp = rule.properties
                targets = {r.id.lower() for r in ([rp.backend_address_pool] if rp and rp.backend_address_pool else [])
                           + list(rp.backend_address_pools or [] if rp else []) if r.id}
                if any(p.lower() in targets for p in pools):
                    out.append((lb_name, rule.name or ""))
        return out

    # ------------------------------------------------------------------ mutations

    def _check(self, request: base.CreateRequest) -> tuple[dict[str, str], dict[str, Any], str]:
        """Everything that can be refused before any call: tags, image, security groups, custom data."""
        call = "virtualMachineScaleSets.createOrUpdate"
        where = self._where(request.region, call)
        cap, launch = request.capacity, request.launch
        if not 0 <= cap.min <= cap.desired <= cap.max:
            raise errors.ProviderError(f"capacity must satisfy 0 <= min <= desired <= max, got {cap.as_dict()}",
                                       code="ValidationError", **where)
        try:
            image = edge.image_reference(launch.image)
        except ValueError as exc:
            raise errors.ProviderError(str(exc), code="ValidationError", **where) from exc
        if len(launch.security_groups) > 1:
            raise errors.ProviderError(f"a scale set's network interface takes one network security group, got "
                                       f"{', '.join(launch.security_groups)}", code="ValidationError", **where)
        tags = {**dict(launch.tags), **request.ownership_tags(), TAG_MIN: str(cap.min), TAG_MAX: str(cap.max),
                TAG_LBS: ",".join(launch.load_balancers)}
        if not launch.load_balancers:
            tags[TAG_TRAFFIC] = "disabled"
        if request.autoscaling:
            tags[TAG_AUTOSCALE] = "true"
        bad = [k for k, v in tags.items() if len(k) > _MAX_TAG_NAME or len(v) > _MAX_TAG_VALUE
               or set(k) & _BAD_TAG_CHARS]
        if bad or len(tags) > _MAX_TAGS:
            why = f"tag {bad[0]!r} breaks Azure's tag rules (name <= 512 characters without <>%&\\?/, value <= 256)" \
                if bad else f"{len(tags)} tags, Azure allows {_MAX_TAGS}"
            raise errors.ProviderError(why, code="ValidationError", **where)
        custom = base64.b64encode(launch.user_data.encode()).decode() if launch.user_data else ""
        if len(custom) > _MAX_CUSTOM_DATA:
            raise errors.ProviderError(f"user_data is {len(custom)} bytes base64-encoded; Azure allows "
                                       f"{_MAX_CUSTOM_DATA}", code="ValidationError", **where)
        return tags, image, custom

    def create_server_group(self, request: base.CreateRequest) -> model.ServerGroup:
        """One PUT of the whole scale set, in the balancers' pools, polled to the end.

        After a crash (or a lost answer) the scale set found by name is reused when its tags say it is
        this request's; a PUT again would reset what happened since, so it is not sent.
        """
        region, name, launch = request.region, request.name, request.launch
        call = "virtualMachineScaleSets.createOrUpdate"
        tags, image, custom = self._check(request)
        existing = self._get(region, name)
        if existing is None:
            balancers = [self._balancer(region, lb, call) for lb in launch.load_balancers]
            nsg = self._nsg(region, launch.security_groups[0], call) if launch.security_groups else None
            body = self._body(request, tags, image, custom, balancers, nsg)
            with contextlib.suppress(errors.Conflict):  # a concurrent or earlier attempt: checked below
                self._lro(call, region, self.compute.virtual_machine_scale_sets.begin_create_or_update,
                          self.group, name, cm.VirtualMachineScaleSet(body))
            existing = self._get(region, name)
            if existing is None:
                raise errors.NotFound(f"scale set {name} is missing right after its creation in {self._scope()}",
                                      **self._where(region, call))
        found = dict(existing.tags or {})
        if not base.tags_say_managed(found) or found.get(model.TAG_SPEC_HASH) != request.spec_hash:
            raise errors.Conflict(f"scale set {name} already exists in {self._scope()} and is not this "
                                  "deployment's (ownership or spec hash differ)", **self._where(region, call))
        if request.autoscaling and request.capacity.max >= 1 and self._autoscale(region, existing) is None:
            self._put_autoscale(request, existing)
        return self._to_model(region, existing)

    # ------------------------------------------------------------------ autoscale settings (Azure Monitor)

    def _autoscale(self, region: str, vmss: cm.VirtualMachineScaleSet) -> mm.AutoscaleSettingResource | None:
        """The group's own autoscale setting (named after it), if it was created with ``autoscaling``."""
        if (vmss.tags or {}).get(TAG_AUTOSCALE) != "true":
            return None
        try:
            found: mm.AutoscaleSettingResource = self._run(
                "autoscaleSettings.get", region, self.monitor.autoscale_settings.get, self.group, vmss.name)
        except errors.NotFound:
            return None
        return found

    def _put_autoscale(self, request: base.CreateRequest, vmss: cm.VirtualMachineScaleSet) -> None:
        cap = request.capacity
        setting = mm.AutoscaleSettingResource(
            location=request.region, tags=request.ownership_tags(), enabled=True, target_resource_uri=vmss.id,
            profiles=[mm.AutoscaleProfile(name="default", rules=[], capacity=mm.ScaleCapacity(
                minimum=str(cap.min), maximum=str(cap.max), default=str(cap.desired)))])
        self._run("autoscaleSettings.createOrUpdate", request.region, self.monitor.autoscale_settings.create_or_update,
                  self.group, request.name, setting)

    def _patch_autoscale(self, region: str, setting: mm.AutoscaleSettingResource, *, enabled: bool | None = None,
                         capacity: model.Capacity | None = None) -> None:
        patch = mm.AutoscaleSettingResourcePatch()
        if enabled is not None:
            patch.enabled = enabled
        if capacity is not None:
            profiles = list(setting.profiles or [])
            for profile in profiles:
                profile.capacity = mm.ScaleCapacity(minimum=str(capacity.min), maximum=str(capacity.max),
                                                    default=str(capacity.clamp(int(profile.capacity.default)
                                                                               if profile.capacity else 0).desired))
            patch.profiles = profiles
        self._run("autoscaleSettings.update", region, self.monitor.autoscale_settings.update, self.group,
                  setting.name, patch)

    def _body(self, request: base.CreateRequest, tags: dict[str, str], image: dict[str, Any], custom: str,
              balancers: list[Balancer], nsg: str | None) -> dict[str, Any]:
        ip: dict[str, Any] = {"subnet": {"id": self.subnet}, "primary": True}
        lb_pools = [{"id": b.pool_id} for b in balancers if b.kind == "loadBalancer"]
        gw_pools = [{"id": b.pool_id} for b in balancers if b.kind == "applicationGateway"]
        if lb_pools:
            ip["loadBalancerBackendAddressPools"] = lb_pools
        if gw_pools:
            ip["applicationGatewayBackendAddressPools"] = gw_pools
        nic: dict[str, Any] = {"primary": True, "ipConfigurations": [{"name": _IPCONFIG, "properties": ip}]}
        if nsg:
            nic["networkSecurityGroup"] = {"id": nsg}
        network: dict[str, Any] = {"networkInterfaceConfigurations": [{"name": _NIC, "properties": nic}]}
        probe = next((b.probe_id for b in balancers if b.probe_id), "")
        if probe:
            network["healthProbe"] = {"id": probe}
        os_profile: dict[str, Any] = {
            "computerNamePrefix": request.name[:50], "adminUsername": self.admin_username,
            "linuxConfiguration": {"disablePasswordAuthentication": True, "ssh": {"publicKeys": [
                {"path": f"/home/{self.admin_username}/.ssh/authorized_keys", "keyData": self.ssh_public_key}]}}}
        if custom:
            os_profile["customData"] = custom
        vm_profile: dict[str, Any] = {
            "storageProfile": {"imageReference": image, "osDisk": {"createOption": "FromImage", "caching": "ReadWrite",
                                                                   "managedDisk": {"storageAccountType":
                                                                                   "StandardSSD_LRS"}}},
            "osProfile": os_profile, "networkProfile": network}
        if self.health_extension:
            settings = {"protocol": self.health_extension["protocol"], "port": self.health_extension["port"]}
            if self.health_extension.get("request_path") and settings["protocol"] != "tcp":
                settings["requestPath"] = self.health_extension["request_path"]
            vm_profile["extensionProfile"] = {"extensions": [{"name": "health", "properties": {
                "publisher": "Microsoft.ManagedServices", "type": "ApplicationHealthLinux",
                "typeHandlerVersion": "1.0", "autoUpgradeMinorVersion": True, "settings": settings}}]}
        return {"location": request.region, "tags": tags,
                "sku": {"name": request.launch.instance_type, "tier": "Standard", "capacity": request.capacity.desired},
                "properties": {"orchestrationMode": "Uniform", "upgradePolicy": {"mode": "Manual"},
                               "overprovision": False, "virtualMachineProfile": vm_profile}}

    def _balancer(self, region: str, spec: str, call: str) -> Balancer:
        """``NAME`` or ``NAME/POOL``: a load balancer of that name in the resource group, else an
        application gateway; its only backend pool unless one is named."""
        name, _, pool = spec.partition("/")
        try:
            lb = self._run("loadBalancers.get", region, self.network.load_balancers.get, self.group, name)
            kind = "loadBalancer"
        except errors.NotFound:
            try:
                lb = self._run("applicationGateways.get", region, self.network.application_gateways.get,
                               self.group, name)
                kind = "applicationGateway"
            except errors.NotFound:
                raise errors.NotFound(f"no load balancer or application gateway named {name} in {self._scope()}",
                                      code="ResourceNotFound", **self._where(region, call)) from None
        pools = list(lb.properties.backend_address_pools or []) if lb.properties else []
        chosen = [p for p in pools if p.name == pool] if pool else pools
        if len(chosen) != 1:
            names = ", ".join(p.name or "" for p in pools) or "none"
            why = f"has no backend pool {pool}" if pool else "has several backend pools; name one as NAME/POOL"
            raise errors.ProviderError(f"{kind} {name} {why} (pools: {names})", code="ValidationError",
                                       **self._where(region, call))
        pool_id = chosen[0].id or ""
        rules: list[str] = []
        probe = ""
        if kind == "loadBalancer":
            for rule in lb.properties.load_balancing_rules or []:
                rp = rule.properties
                refs = ([rp.backend_address_pool] if rp and rp.backend_address_pool else []) + list(
                    (rp.backend_address_pools or []) if rp else [])
                if any((r.id or "").lower() == pool_id.lower() for r in refs):
                    rules.append(rule.name or "")
                    probe = probe or (rp.probe.id if rp and rp.probe and rp.probe.id else "")
        return Balancer(spec, kind, pool_id, tuple(rules), probe)

    def _nsg(self, region: str, name: str, call: str) -> str:
        try:
            found = self._run("networkSecurityGroups.get", region, self.network.network_security_groups.get,
                              self.group, name)
        except errors.NotFound:
            raise errors.NotFound(f"no network security group named {name} in {self._scope()}",
                                  code="ResourceNotFound", **self._where(region, call)) from None
        return str(found.id)

    def _set_traffic(self, region: str, name: str, on: bool) -> None:
        call = "enable" if on else "disable"
        vmss = self._owned(region, name, call)
        if vmss is None:
            if on:
                raise errors.NotFound(f"scale set {name} does not exist in {self._scope()}",
                                      **self._where(region, call))
            return
        setting = self._autoscale(region, vmss)
        if setting is not None and not on and setting.enabled:
            self._patch_autoscale(region, setting, enabled=False)  # first: no scale-out while leaving traffic
        self._set_pools(region, vmss, on, call)
        if setting is not None and on and not setting.enabled:
            self._patch_autoscale(region, setting, enabled=True)

    def _set_pools(self, region: str, vmss: cm.VirtualMachineScaleSet, on: bool, call: str) -> None:
        """Pools into (or out of) the model, the model onto every instance, then the traffic tag.

        The model change marks the tag ``pending`` in the same PATCH, so a listing in between reports the
        traffic the instances still have, and the next enable or disable finishes the job.
        """
        name = vmss.name or ""
        tags = dict(vmss.tags or {})
        lbs = [x for x in tags.get(TAG_LBS, "").split(",") if x]
        final = "enabled" if on else "disabled"
        if lbs:
            want = [self._balancer(region, lb, call) for lb in lbs] if on else []
            if sorted(p.lower() for p in _pool_ids(vmss)) != sorted(b.pool_id.lower() for b in want):
                tags[TAG_TRAFFIC] = PENDING
                self._update(region, name, {**_network_update(vmss, want), "tags": tags})
            if any(vm.properties is not None and vm.properties.latest_model_applied is False
                   for vm in self._instances(region, name)):
                self._lro("virtualMachineScaleSets.updateInstances", region,
                          self.compute.virtual_machine_scale_sets.begin_update_instances, self.group, name,
                          cm.VirtualMachineScaleSetVMInstanceRequiredIDs(instance_ids=["*"]))
        if tags.get(TAG_TRAFFIC, final if lbs else "") != final:
            tags[TAG_TRAFFIC] = final
            self._update(region, name, {"tags": tags})

    def _update(self, region: str, name: str, body: dict[str, Any]) -> None:
        self._lro("virtualMachineScaleSets.update", region, self.compute.virtual_machine_scale_sets.begin_update,
                  self.group, name, cm.VirtualMachineScaleSetUpdate(body))

    def enable(self, region: str, name: str) -> None:
        self._set_traffic(region, name, True)

    def disable(self, region: str, name: str) -> None:
        self._set_traffic(region, name, False)

    def resize(self, region: str, name: str, capacity: model.Capacity) -> None:
        """The scale set's capacity, and min/max in its tags."""
        if not 0 <= capacity.min <= capacity.desired <= capacity.max:
            raise errors.ProviderError(f"capacity must satisfy 0 <= min <= desired <= max, got {capacity.as_dict()}",
                                       code="ValidationError", **self._where(region, "resize"))
        vmss = self._must_own(region, name, "resize")
        tags = dict(vmss.tags or {})
        size = int(vmss.sku.capacity or 0) if vmss.sku else 0
        setting = self._autoscale(region, vmss)
        scaling = setting is not None and bool(setting.enabled)
        if setting is not None and capacity.max >= 1:  # an autoscale maximum of 0 is refused: bounds stay
            bounds = next((p.capacity for p in setting.profiles or [] if p.capacity), None)
            if bounds is None or (bounds.minimum, bounds.maximum) != (str(capacity.min), str(capacity.max)):
                self._patch_autoscale(region, setting, capacity=capacity)
        want = size if scaling else capacity.desired  # while the autoscaler is on, it owns the size
        if size == want and (tags.get(TAG_MIN), tags.get(TAG_MAX)) == (str(capacity.min), str(capacity.max)):
            return
        tags.update({TAG_MIN: str(capacity.min), TAG_MAX: str(capacity.max)})
        update: dict[str, Any] = {"tags": tags}
        if size != want:
            update["sku"] = {"capacity": want}
        self._lro("virtualMachineScaleSets.update", region, self.compute.virtual_machine_scale_sets.begin_update,
                  self.group, name, cm.VirtualMachineScaleSetUpdate(update))

    def destroy(self, region: str, name: str) -> None:
        """Delete the scale set (its instances, disks and pool memberships go with it); gone is done."""
        vmss = self._owned(region, name, "destroy")
        if vmss is None:
            return
        if self._autoscale(region, vmss) is not None:
            with contextlib.suppress(errors.NotFound):
                self._run("autoscaleSettings.delete", region, self.monitor.autoscale_settings.delete, self.group,
                          name)
        try:
            self._lro("virtualMachineScaleSets.delete", region, self.compute.virtual_machine_scale_sets.begin_delete,
                      self.group, name)
        except errors.NotFound:
            return

    def close(self) -> None:
        self.compute.close()
        self.network.close()
        self.monitor.close()
        closer = getattr(self._credential, "close", None)
        if callable(closer):
            closer()


_REQUIRED = {"subscription": "the subscription ID", "resource_group": "the resource group the scale sets live in",
             "subnet": "VNET/SUBNET in the resource group, or a subnet resource ID",
             "ssh_public_key": "the OpenSSH public key put on every instance"}


def _credential(where: str, config: Mapping[str, Any]) -> TokenCredential:
    """azure-identity: a managed identity (default), a service principal from a file, or the CLI login."""
    kind = config.get("credentials", "service_principal" if config.get("credentials_file") else "managed_identity")
    if kind not in CREDENTIALS:
        raise errors.ConfigError(f"{where}.credentials: one of {', '.join(CREDENTIALS)}, got {kind!r}")
    verify = {"connection_verify": config["ca_bundle"]} if config.get("ca_bundle") else {}
    from azure import identity  # noqa: PLC0415 - msal loads only when an account is configured

    if kind == "cli":
        return identity.AzureCliCredential(tenant_id=config.get("tenant_id") or "")
    if kind == "managed_identity":
        if config.get("credentials_file"):
            raise errors.ConfigError(f"{where}.credentials_file: only with credentials: service_principal")
        return identity.ManagedIdentityCredential(client_id=config.get("client_id"), **verify)
    path = config.get("credentials_file")
    if not path:
        raise errors.ConfigError(f"{where}.credentials_file: required with credentials: service_principal "
                                 "(a JSON file with tenant_id, client_id and client_secret or certificate_path)")
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise errors.ConfigError(f"{where}.credentials_file: cannot read {path}: {exc}") from exc
    allowed = {"tenant_id", "client_id", "client_secret", "certificate_path"}
    if not isinstance(doc, dict) or set(doc) - allowed or not doc.get("tenant_id") or not doc.get("client_id") or (
            bool(doc.get("client_secret")) == bool(doc.get("certificate_path"))):
        raise errors.ConfigError(f"{where}.credentials_file: {path} must hold tenant_id, client_id and one of "
                                 "client_secret or certificate_path, and nothing else")
    try:
        if doc.get("client_secret"):
            return identity.ClientSecretCredential(doc["tenant_id"], doc["client_id"], doc["client_secret"], **verify)
        return identity.CertificateCredential(doc["tenant_id"], doc["client_id"], doc["certificate_path"], **verify)
    except (ValueError, OSError, ClientAuthenticationError) as exc:
        raise errors.ConfigError(f"{where}.credentials_file: {exc}") from exc


def _vnet_subnet(text: str) -> tuple[str, str, str]:
    vnet, subnet = text.split("/", 1)
    return vnet, "subnets", subnet


def _location(vmss: cm.VirtualMachineScaleSet) -> str:
    return _location_name(vmss.location or "")


def _location_name(text: str) -> str:
    """ARM answers locations in either spelling ("West Europe", "westeurope")."""
    return text.replace(" ", "").lower()


def _nics(vmss: cm.VirtualMachineScaleSet) -> list[Any]:
    props = vmss.properties
    profile = props.virtual_machine_profile if props else None
    network = profile.network_profile if profile else None
    return list(network.network_interface_configurations or []) if network else []


def _pool_ids(vmss: cm.VirtualMachineScaleSet) -> list[str]:
    out: list[str] = []
    for nic in _nics(vmss):
        for ip in (nic.properties.ip_configurations or []) if nic.properties else []:
            p = ip.properties
            if p is None:
                continue
            out += [r.id for r in (p.load_balancer_backend_address_pools or []) if r.id]
            out += [r.id for r in (p.application_gateway_backend_address_pools or []) if r.id]
    return out


def _nsg_names(vmss: cm.VirtualMachineScaleSet) -> tuple[str, ...]:
    return tuple(edge.last(n.properties.network_security_group.id) for n in _nics(vmss)
                 if n.properties and n.properties.network_security_group and n.properties.network_security_group.id)


def _network_update(vmss: cm.VirtualMachineScaleSet, balancers: list[Balancer]) -> dict[str, Any]:
    """A PATCH body that sets the pools of every IP configuration (all NICs sent: a PATCH replaces the list)."""
    lb = [{"id": b.pool_id} for b in balancers if b.kind == "loadBalancer"]
    gw = [{"id": b.pool_id} for b in balancers if b.kind == "applicationGateway"]
    nics: list[dict[str, Any]] = []
    for nic in _nics(vmss):
        np = nic.properties
        ips = []
        for ip in (np.ip_configurations or []) if np else []:
            ipp = ip.properties
            props: dict[str, Any] = {"primary": bool(ipp.primary) if ipp else False}
            if ipp is not None and ipp.subnet is not None and ipp.subnet.id:
                props["subnet"] = {"id": ipp.subnet.id}
            props["loadBalancerBackendAddressPools"] = lb if props["primary"] else []
            props["applicationGatewayBackendAddressPools"] = gw if props["primary"] else []
            ips.append({"name": ip.name, "properties": props})
        nprops: dict[str, Any] = {"primary": bool(np.primary) if np else False, "ipConfigurations": ips}
        if np is not None and np.network_security_group is not None and np.network_security_group.id:
            nprops["networkSecurityGroup"] = {"id": np.network_security_group.id}
        nics.append({"name": nic.name, "properties": nprops})
    return {"properties": {"virtualMachineProfile": {"networkProfile": {"networkInterfaceConfigurations": nics}}}}


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def _timestamp(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return 0.0
    return 0.0

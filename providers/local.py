"""The embedded default cloud: server groups simulated in the state store.

Instances boot after ``boot_seconds``; an image matching one of
``unhealthy_images`` (fnmatch patterns) never becomes healthy, so failed
deployments and rollbacks can be shown and tested without a cloud. ``faults``
injects failures per call (rate, kinds, seed) to prove that passes converge.

Account config keys: ``boot_seconds`` (default 0), ``unhealthy_images``
(default ``["*-bad"]``), ``regions`` (default: any), ``faults``
(``{rate: 0.2, calls: [create, enable], kinds: [throttled, unavailable, timeout], seed: 1}``),
``images`` (the images that image patterns find: ``[{name, regions, tags, family, created}]``;
``regions`` absent: every region; ``created`` in epoch seconds, default the list order).

Why it is this long: it is the whole Provider interface for a simulated cloud (groups, instances booting
over time, health, traffic, injected faults, the images list) over one table; the declared resources
already live in ``local_resources``, and what remains is one method per verb that reads best together.
"""

from __future__ import annotations

import collections
import fnmatch
import json
import random
import threading
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from providers import base, local_resources
from reconciler.core import errors, model
from reconciler.core import images as image_mod

_meta = sa.MetaData()
local_groups = sa.Table(
    "local_server_groups",
    _meta,
    sa.Column("account", sa.String(100), primary_key=True),
    sa.Column("region", sa.String(100), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("data", sa.Text, nullable=False),
)

_KEYS = {"boot_seconds", "unhealthy_images", "regions", "faults", "images"}
_IMAGE_KEYS = {"name", "regions", "tags", "family", "created"}
_FAULT_KEYS = {"rate", "calls", "kinds", "seed"}
_CALLS = {"list", "health", "create", "enable", "disable", "resize", "destroy"}
_RESOURCE_CALLS = {"list_resources", "create_resource", "update_resource", "destroy_resource", "images"}
"""Faults reach these only when ``faults.calls`` names them (the default stays the group calls)."""
_KINDS = {"throttled", "unavailable", "timeout"}

_SCHEMA_LOCK = 0x7265636F6E63  # the store's schema lock (reconciler.state.migrate.LOCK_KEY)

_engines: dict[str, tuple[sa.engine.Engine, int]] = {}
_engines_lock = threading.Lock()


def _engine_for(context: base.ProviderContext) -> sa.engine.Engine:
    """One engine per state URL per process, shared by the providers open on it (counted, see ``_release``)."""
    url = context.state_url
    with _engines_lock:
        eng, users = _engines.get(url, (None, 0))
        if eng is None:
            eng = context.open_database()
            with eng.begin() as conn:  # several replicas may start at once on one PostgreSQL
                if conn.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK})
                _meta.create_all(conn)
                local_resources.create_tables(conn)
        _engines[url] = (eng, users + 1)
        return eng


def _release(url: str) -> None:
    """The last provider on ``url`` closed: its connections go (a long test run opens many stores)."""
    with _engines_lock:
        eng, users = _engines.get(url, (None, 0))
        if eng is None:
            return
        if users <= 1:
            del _engines[url]
            eng.dispose()
        else:
            _engines[url] = (eng, users - 1)


class LocalProvider(local_resources.LocalResources):
    name = "local"

    def __init__(
        self,
        account: str,
        context: base.ProviderContext,
        *,
        boot_seconds: float = 0.0,
        unhealthy_images: tuple[str, ...] = ("*-bad",),
        regions: tuple[str, ...] = (),
        faults: Mapping[str, Any] | None = None,
        images: tuple[tuple[tuple[str, ...], image_mod.Image], ...] = (),
    ) -> None:
        self.account = account
        self.context = context
        self.boot_seconds = boot_seconds
        self.unhealthy_images = unhealthy_images
        self._regions = regions
        self.images = images
        """(regions, image) pairs: the simulated cloud's images (empty regions: every region)."""
        self.calls: collections.Counter[str] = collections.Counter()
        faults = faults or {}
        self._fault_rate = float(faults.get("rate") or 0.0)
        self._fault_calls = set(faults.get("calls") or _CALLS)
        self._fault_kinds = list(faults.get("kinds") or ["throttled", "unavailable"])
        self._rng = random.Random(faults.get("seed"))  # noqa: S311 - fault injection, not crypto
        self._engine = _engine_for(context)
        self._closed = False

    @classmethod
    def check_settings(cls, account: str, config: Mapping[str, Any]) -> list[base.SettingsProblem]:
        """Every account setting's type and range, at config load (no state store is touched)."""
        check = base.SettingsCheck(config)
        check.keys(_KEYS)
        check.number("boot_seconds", low=0, high=86400)
        check.strings("unhealthy_images", example='["*-bad"]')
        check.strings("regions", example="[us-east-1]")
        faults = config.get("faults")
        if faults is not None:
            if not isinstance(faults, Mapping):
                check.fail("faults", f"expected a mapping with {', '.join(sorted(_FAULT_KEYS))}, got {faults!r}")
            else:
                sub = base.SettingsCheck(faults)
                sub.keys(_FAULT_KEYS)
                sub.number("rate", low=0, high=1)
                sub.strings("calls", example="[create, enable]", allowed=_CALLS | _RESOURCE_CALLS)
                sub.strings("kinds", example="[throttled, unavailable]", allowed=_KINDS)
                sub.number("seed", whole=True)
                check.problems += [(f"faults.{f}", m) for f, m in sub.problems]
        check.problems += _check_images(config.get("images"))
        return check.problems

    @classmethod
    def from_config(
        cls, account: str, config: Mapping[str, Any], context: base.ProviderContext
    ) -> LocalProvider:
        base.raise_problems("local", account, cls.check_settings(account, config))
        faults = dict(config.get("faults") or {})
        return cls(
            account,
            context,
            boot_seconds=float(config.get("boot_seconds") or 0),
            unhealthy_images=tuple(["*-bad"] if config.get("unhealthy_images") is None
                                   else config["unhealthy_images"]),
            regions=tuple(config.get("regions") or ()),
            faults=faults,
            images=tuple(_image(i, n) for n, i in enumerate(config.get("images") or ())),
        )

    # ------------------------------------------------------------------ helpers

    def _call(self, call: str, region: str) -> None:
        self.calls[call] += 1
        if self._fault_rate and call in self._fault_calls and self._rng.random() < self._fault_rate:
            kind = self._rng.choice(self._fault_kinds)
            cls: type[errors.ProviderError] = errors.Throttled if kind == "throttled" else errors.Unavailable
            msg = {"throttled": "rate exceeded (injected)", "unavailable": "service unavailable (injected)",
                   "timeout": "request timed out (injected)"}[kind]
            raise cls(msg, provider="local", call=call, account=self.account, region=region, code=kind)

    def _now(self) -> float:
        return self.context.clock.now()

    def _load(self, conn: sa.Connection, region: str, name: str) -> dict[str, Any] | None:
        row = conn.execute(
            sa.select(local_groups.c.data).where(
                local_groups.c.account == self.account,
                local_groups.c.region == region,
                local_groups.c.name == name,
            )
        ).first()
        return json.loads(row[0]) if row else None

    def _save(self, conn: sa.Connection, region: str, name: str, data: dict[str, Any]) -> None:
        payload = json.dumps(data, sort_keys=True)
        updated = conn.execute(
            local_groups.update()
            .where(local_groups.c.account == self.account, local_groups.c.region == region, local_groups.c.name == name)
            .values(data=payload)
        ).rowcount
        if not updated:
            conn.execute(local_groups.insert().values(account=self.account, region=region, name=name, data=payload))

    def _healthy(self, data: dict[str, Any], now: float) -> int:
        desired = int(data["capacity"]["desired"])
        if any(fnmatch.fnmatchcase(data["launch"]["image"], p) for p in self.unhealthy_images):
            return 0
        if now >= float(data["ready_at"]):
            return desired
        return min(int(data.get("healthy_base", 0)), desired)

    def _to_model(self, region: str, data: dict[str, Any], now: float) -> model.ServerGroup:
        launch = data["launch"]
        tags = data.get("tags", {})
        cap = data["capacity"]
        return model.ServerGroup(
            name=data["name"],
            provider=self.name,  # a plugin may reuse this class under its own name
            account=self.account,
            region=region,
            cluster=tags.get(model.TAG_CLUSTER) or model.cluster_of(data["name"]),
            application=tags.get(model.TAG_APPLICATION, ""),
            managed=base.tags_say_managed(tags),
            launch=model.LaunchSpec(
                image=launch["image"],
                instance_type=launch["instance_type"],
                user_data=launch.get("user_data", ""),
                security_groups=tuple(launch.get("security_groups", ())),
                load_balancers=tuple(launch.get("load_balancers", ())),
                tags=tuple(sorted((k, v) for k, v in launch.get("tags", {}).items())),
            ),
            capacity=model.Capacity(int(cap["min"]), int(cap["desired"]), int(cap["max"])),
            enabled=bool(data["enabled"]),
            healthy=self._healthy(data, now),
            instances=int(cap["desired"]),
            spec_hash=tags.get(model.TAG_SPEC_HASH, ""),
            commit=tags.get(model.TAG_COMMIT, ""),
            created_at=float(data["created_at"]),
        )

    def _update(self, call: str, region: str, name: str, fn: Any) -> None:
        """Load, check ownership, apply ``fn`` and save, in one transaction; gone is a no-op."""
        self._call(call, region)
        with self._engine.begin() as conn:
            data = self._load(conn, region, name)
            if data is None:
                if call == "destroy":
                    return
                raise errors.NotFound(
                    f"server group {name} does not exist", provider="local", call=call,
                    account=self.account, region=region,
                )
            if not base.tags_say_managed(data.get("tags", {})):
                raise errors.Conflict(
                    f"server group {name} is not managed by reconciler; refusing to {call} it",
                    provider="local", call=call, account=self.account, region=region,
                )
            if fn(conn, data) is not False:
                self._save(conn, region, name, data)

    # ------------------------------------------------------------------ Provider

    def find_images(self, region: str, pattern: image_mod.ImagePattern) -> list[image_mod.Image]:
        """The configured images available in ``region`` (the core matches them against the pattern)."""
        self._call("images", region)
        return [img for regions, img in self.images if not regions or region in regions]

    def regions(self) -> tuple[str, ...]:
        return self._regions

    def list_server_groups(self, region: str) -> list[model.ServerGroup]:
        self._call("list", region)
        now = self._now()
        with self._engine.begin() as conn:
            rows = conn.execute(
                sa.select(local_groups.c.data)
                .where(local_groups.c.account == self.account, local_groups.c.region == region)
                .order_by(local_groups.c.name)
            ).all()
        return [self._to_model(region, json.loads(r[0]), now) for r in rows]

    def health(self, region: str, name: str) -> model.Health:
        self._call("health", region)
        with self._engine.begin() as conn:
            data = self._load(conn, region, name)
        if data is None:
            raise errors.NotFound(
                f"server group {name} does not exist", provider="local", call="health",
                account=self.account, region=region,
            )
        desired = int(data["capacity"]["desired"])
        return model.Health(healthy=self._healthy(data, self._now()), desired=desired, instances=desired)

    def create_server_group(self, request: base.CreateRequest) -> model.ServerGroup:
        self._call("create", request.region)
        now = self._now()
        with self._engine.begin() as conn:
            existing = self._load(conn, request.region, request.name)
            if existing is not None:
                tags = existing.get("tags", {})
                if base.tags_say_managed(tags) and tags.get(model.TAG_SPEC_HASH) == request.spec_hash:
                    return self._to_model(request.region, existing, now)
                raise errors.Conflict(
                    f"server group {request.name} already exists with other contents",
                    provider="local", call="create", account=self.account, region=request.region,
                )
            missing = self.missing_resources(conn, request.region, request.launch)
            if missing:
                raise errors.NotFound(
                    f"server group {request.name} names {', '.join(missing)}, which does not exist",
                    provider="local", call="create", account=self.account, region=request.region,
                )
            launch = request.launch
            data = {
                "name": request.name,
                "launch": {
                    "image": launch.image,
                    "instance_type": launch.instance_type,
                    "user_data": launch.user_data,
                    "security_groups": list(launch.security_groups),
                    "load_balancers": list(launch.load_balancers),
                    "tags": dict(launch.tags),
                },
                "tags": {**dict(launch.tags), **request.ownership_tags()},
                "capacity": request.capacity.as_dict(),
                "enabled": False,
                "created_at": now,
                "ready_at": now + self.boot_seconds,
                "healthy_base": 0,
            }
            self._save(conn, request.region, request.name, data)
        return self._to_model(request.region, data, now)

    def enable(self, region: str, name: str) -> None:
        def fn(_conn: sa.Connection, data: dict[str, Any]) -> bool:
            if data["enabled"]:
                return False
            data["enabled"] = True
            return True

        self._update("enable", region, name, fn)

    def disable(self, region: str, name: str) -> None:
        def fn(_conn: sa.Connection, data: dict[str, Any]) -> bool:
            if not data["enabled"]:
                return False
            data["enabled"] = False
            return True

        self._update("disable", region, name, fn)

    def resize(self, region: str, name: str, capacity: model.Capacity) -> None:
        now = self._now()

        def fn(_conn: sa.Connection, data: dict[str, Any]) -> bool:
            old = int(data["capacity"]["desired"])
            if data["capacity"] == capacity.as_dict():
                return False
            if capacity.desired > old:
                data["healthy_base"] = self._healthy(data, now)
                data["ready_at"] = now + self.boot_seconds
            data["capacity"] = capacity.as_dict()
            return True

        self._update("resize", region, name, fn)

    def destroy(self, region: str, name: str) -> None:
        def fn(conn: sa.Connection, _data: dict[str, Any]) -> bool:
            conn.execute(
                local_groups.delete().where(
                    local_groups.c.account == self.account,
                    local_groups.c.region == region,
                    local_groups.c.name == name,
                )
            )
            return False

        self._update("destroy", region, name, fn)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _release(self.context.state_url)

    # ------------------------------------------------------------------ for operators and tests

    def put_foreign_group(
        self, region: str, name: str, *, image: str = "foreign", desired: int = 1, enabled: bool = True
    ) -> None:
        """Create a group the reconciler does not own (as someone else's tooling would)."""
        now = self._now()
        with self._engine.begin() as conn:
            self._save(conn, region, name, {
                "name": name,
                "launch": {"image": image, "instance_type": "small", "tags": {}},
                "tags": {"owner": "someone-else"},
                "capacity": {"min": desired, "desired": desired, "max": desired},
                "enabled": enabled,
                "created_at": now,
                "ready_at": now,
                "healthy_base": 0,
            })

    def tamper(self, region: str, name: str, **changes: Any) -> None:
        """Change a group behind the reconciler's back (drift), e.g. ``enabled=False``."""
        with self._engine.begin() as conn:
            data = self._load(conn, region, name)
            if data is None:
                raise errors.NotFound(f"server group {name} does not exist", provider="local")
            for key, value in changes.items():
                data[key] = value.as_dict() if isinstance(value, model.Capacity) else value
            self._save(conn, region, name, data)


def _check_images(raw: Any) -> list[base.SettingsProblem]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        return [("images", f"expected a list of {{name, regions, tags, family, created}}, got {raw!r}")]
    out: list[base.SettingsProblem] = []
    for n, item in enumerate(raw):
        if not isinstance(item, Mapping):
            out.append((f"images[{n}]", f"expected a mapping with name (and regions, tags, family, created), "
                                        f"got {item!r}"))
            continue
        sub = base.SettingsCheck(item)
        sub.keys(_IMAGE_KEYS)
        sub.text("name", required=True)
        sub.text("family")
        sub.strings("regions", example="[us-east-1]")
        sub.number("created", low=0)
        tags = item.get("tags")
        if tags is not None and not (isinstance(tags, Mapping) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in tags.items())):
            sub.fail("tags", f"expected a mapping of text to text, got {tags!r}")
        out += [(f"images[{n}].{f}", m) for f, m in sub.problems]
    return out


def _image(item: Mapping[str, Any], position: int) -> tuple[tuple[str, ...], image_mod.Image]:
    name = str(item["name"])
    return tuple(item.get("regions") or ()), image_mod.Image(
        id=name, name=name, created=float(item.get("created", position)),
        tags=tuple(sorted((str(k), str(v)) for k, v in (item.get("tags") or {}).items())),
        family=str(item.get("family") or ""))

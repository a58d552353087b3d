"""The local cloud's load balancers and security groups: simulated, kept in the state store beside its groups.

A simulated balancer has a traffic port and a health check; its health is that of the enabled groups
attached to it. A simulated security group holds ingress rules as text. Like a real cloud, creating a
server group that names a balancer or security group that does not exist fails, and so does destroying
one that a server group still uses.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from providers import base
from reconciler.core import errors, model
from reconciler.core.resources import Kind, LiveResource

_meta = sa.MetaData()
local_resources = sa.Table(
    "local_resources",
    _meta,
    sa.Column("account", sa.String(100), primary_key=True),
    sa.Column("region", sa.String(100), primary_key=True),
    sa.Column("kind", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("data", sa.Text, nullable=False),
)


def create_tables(bind: sa.engine.Engine | sa.engine.Connection) -> None:
    _meta.create_all(bind)


class LocalResources:
    """Mixed into ``LocalProvider`` (which brings ``account``, ``_engine``, ``_call`` and ``name``)."""

    name: str
    account: str
    _engine: sa.engine.Engine
    _call: Callable[[str, str], None]  # counts the call, may inject a fault

    def _where(self, region: str, kind: Kind, name: str) -> Any:
        t = local_resources.c
        return sa.and_(t.account == self.account, t.region == region, t.kind == kind.value, t.name == name)

    def _load_resource(self, conn: sa.Connection, region: str, kind: Kind, name: str) -> dict[str, Any] | None:
        row = conn.execute(sa.select(local_resources.c.data).where(self._where(region, kind, name))).first()
        return json.loads(row[0]) if row else None

    def _error(self, cls: type[errors.ProviderError], message: str, call: str, region: str) -> errors.ProviderError:
        return cls(message, provider=self.name, call=call, account=self.account, region=region)

    # ------------------------------------------------------------------ the resource interface

    def list_resources(self, region: str) -> list[LiveResource]:
        """Every balancer and security group in the region, in one read."""
        self._call("list_resources", region)
        with self._engine.begin() as conn:
            rows = conn.execute(
                sa.select(local_resources.c.kind, local_resources.c.data)
                .where(local_resources.c.account == self.account, local_resources.c.region == region)
                .order_by(local_resources.c.kind, local_resources.c.name)
            ).all()
        return [self._to_live(region, Kind(k), json.loads(d)) for k, d in rows]

    def _to_live(self, region: str, kind: Kind, data: dict[str, Any]) -> LiveResource:
        tags = data.get("tags", {})
        return LiveResource(
            kind=kind, name=data["name"], provider=self.name, account=self.account, region=region,
            managed=base.tags_say_managed(tags), application=tags.get(model.TAG_APPLICATION, ""),
            settings=tuple(sorted(data.get("settings", {}).items())), rules=tuple(sorted(data.get("rules", []))),
            spec_hash=tags.get(model.TAG_SPEC_HASH, ""), commit=tags.get(model.TAG_COMMIT, ""),
        )

    def put_resource(self, request: base.ResourceRequest) -> None:
        """Create the resource, or update an owned one in place to exactly the request (idempotent)."""
        call = "update_resource" if request.update else "create_resource"
        self._call(call, request.region)
        with self._engine.begin() as conn:
            existing = self._load_resource(conn, request.region, request.kind, request.name)
            if existing is not None and not base.tags_say_managed(existing.get("tags", {})):
                raise self._error(errors.Conflict, f"{request.kind.label} {request.name} exists and is not "
                                  "managed by reconciler; refusing to change it", call, request.region)
            data = {"name": request.name, "settings": dict(request.settings), "rules": sorted(request.rules),
                    "tags": request.ownership_tags()}
            payload = json.dumps(data, sort_keys=True)
            if existing is None:
                conn.execute(local_resources.insert().values(account=self.account, region=request.region,
                                                             kind=request.kind.value, name=request.name,
                                                             data=payload))
            elif existing != data:
                conn.execute(local_resources.update().where(
                    self._where(request.region, request.kind, request.name)).values(data=payload))

    def destroy_resource(self, region: str, kind: Kind, name: str) -> None:
        """Delete an owned resource nothing uses; gone already is a no-op."""
        self._call("destroy_resource", region)
        with self._engine.begin() as conn:
            existing = self._load_resource(conn, region, kind, name)
            if existing is None:
                return
            if not base.tags_say_managed(existing.get("tags", {})):
                raise self._error(errors.Conflict, f"{kind.label} {name} is not managed by reconciler; refusing "
                                  "to destroy it", "destroy_resource", region)
            users = self._users(conn, region, kind, name)
            if users:
                raise self._error(errors.Conflict, f"{kind.label} {name} is in use by {', '.join(users)}",
                                  "destroy_resource", region)
            conn.execute(local_resources.delete().where(self._where(region, kind, name)))

    def _users(self, conn: sa.Connection, region: str, kind: Kind, name: str) -> list[str]:
        from providers.local import local_groups  # noqa: PLC0415 - local imports this module

        rows = conn.execute(sa.select(local_groups.c.name, local_groups.c.data).where(
            local_groups.c.account == self.account, local_groups.c.region == region)).all()
        key = kind.spec_field
        return sorted(n for n, d in rows if name in json.loads(d).get("launch", {}).get(key, []))

    def missing_resources(self, conn: sa.Connection, region: str, launch: model.LaunchSpec) -> list[str]:
        """What a new group names that does not exist (a real cloud refuses such a group)."""
        out = []
        for kind, names in ((Kind.LOAD_BALANCER, launch.load_balancers), (Kind.SECURITY_GROUP, launch.security_groups)):
            out += [f"{kind.label} {n}" for n in names if self._load_resource(conn, region, kind, n) is None]
        return out

    # ------------------------------------------------------------------ for operators and tests

    def tamper_resource(self, region: str, kind: Kind, name: str, *, settings: dict[str, str] | None = None,
                        rules: list[str] | None = None) -> None:
        """Edit a resource behind the reconciler's back (drift), as someone in a console would."""
        with self._engine.begin() as conn:
            data = self._load_resource(conn, region, kind, name)
            if data is None:
                raise errors.NotFound(f"{kind.label} {name} does not exist", provider=self.name)
            data["settings"] = {**data["settings"], **(settings or {})}
            if rules is not None:
                data["rules"] = sorted(rules)
            conn.execute(local_resources.update().where(self._where(region, kind, name))
                         .values(data=json.dumps(data, sort_keys=True)))

    def put_foreign_resource(self, region: str, kind: Kind, name: str) -> None:
        """A resource someone else made (no ownership tags)."""
        with self._engine.begin() as conn:
            conn.execute(local_resources.insert().values(
                account=self.account, region=region, kind=kind.value, name=name,
                data=json.dumps({"name": name, "settings": {}, "rules": [], "tags": {"owner": "someone-else"}})))

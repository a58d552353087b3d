"""Reading live state: every region any spec names, any account lists, or we deployed to before.

One broken account or region hides only its own clusters (they become ``unreadable`` and are not
planned); every other application keeps reconciling.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from reconciler.core import clock as clock_mod
from reconciler.core import errors, model, planner
from reconciler.core.resources import places_of
from reconciler.runtime import metrics, status
from reconciler.runtime import providers as providers_mod
from reconciler.runtime import resources as resources_rt
from reconciler.state import keys
from reconciler.state import store as store_mod

log = logging.getLogger("reconciler.engine")  # the name log filters know

Region = tuple[str, str, str]  # provider, account, region


class LiveReader:
    def __init__(self, providers: providers_mod.Providers, store: store_mod.Store, clock: clock_mod.Clock) -> None:
        self.providers = providers
        self.store = store
        self.clock = clock

    def wanted(self, desired: model.DesiredState | None) -> set[Region]:
        """The regions a pass reads: named by a spec, or deployed to before (so orphans are found)."""
        out: set[Region] = set()
        if desired is not None:
            for c in desired.clusters():
                out.update(p for r in c.regions for p in places_of(c.provider, c.account, r))
            out.update(p for a in desired.applications.values() for res in a.resources for p in res.placements)
        known = self.store.get(keys.KNOWN_REGIONS, {}) or {}
        for k, regions in known.items():
            prov, acc = k.split("/", 1)
            out.update((prov, acc, r) for r in regions)
        return out

    def read(self, desired: model.DesiredState | None) -> planner.LiveState:
        return self.read_regions(self.wanted(desired))

    def read_regions(self, regions: Iterable[Region]) -> planner.LiveState:
        by_account: dict[tuple[str, str], set[str]] = {}
        for prov, acc, region in regions:
            by_account.setdefault((prov, acc), set()).add(region)
        groups: list[model.ServerGroup] = []
        resources: list[Any] = []
        read: set[Region] = set()
        unreadable: dict[Region, str] = {}
        for (prov_name, account), names in sorted(by_account.items()):
            try:
                provider = self.providers.get(prov_name, account)
            except Exception as exc:
                why = unexpected(exc, f"building provider {prov_name}/{account}")
                for r in names:
                    unreadable[(prov_name, account, r)] = why
                continue
            for region in sorted(names):
                try:
                    groups += provider.list_server_groups(region)
                    found = resources_rt.read(provider, region)
                    if found is not None:
                        resources += found
                        read.add((prov_name, account, region))
                except Exception as exc:  # one broken account or region hides only its own clusters
                    unreadable[(prov_name, account, region)] = unexpected(
                        exc, f"listing {prov_name}/{account}/{region}")
                    metrics.API_ERRORS.labels(prov_name, type(exc).__name__).inc()
        return planner.LiveState(tuple(groups), unreadable, tuple(resources), frozenset(read))

    def refreshed(self, live: planner.LiveState, regions: Iterable[Region]) -> planner.LiveState:
        """``live`` with ``regions`` read again (after executions there ended); the rest as it was."""
        regions = set(regions)
        fresh = self.read_regions(regions)
        kept = tuple(g for g in live.groups if (g.provider, g.account, g.region) not in regions)
        unreadable = {k: v for k, v in live.unreadable.items() if k not in regions} | dict(fresh.unreadable)
        resources = tuple(r for r in live.resources if r.placement not in regions) + fresh.resources
        return planner.LiveState(kept + fresh.groups, unreadable, resources,
                                 frozenset(live.resources_read - regions) | fresh.resources_read)

    def remember_regions(self, plan: model.Plan) -> None:
        known: dict[str, list[str]] = self.store.get(keys.KNOWN_REGIONS, {}) or {}
        changed = False
        for c in (*plan.changes, *plan.resource_changes):
            k = f"{c.provider}/{c.account}"
            if c.region not in known.get(k, []):
                known.setdefault(k, []).append(c.region)
                changed = True
        if changed:
            self.store.put(keys.KNOWN_REGIONS, known, self.clock.now())

    def assumed(self, base: model.DesiredState) -> planner.LiveState:
        """For the offline PR preview (no cloud access): the last live state this store saw, if any,
        else live state as if BASE had been fully applied."""
        known = (self.store.get(keys.STATUS) or {}).get("server_groups") or []
        if known:
            return planner.LiveState(tuple(status.group_from_entry(g) for g in known))
        groups: list[model.ServerGroup] = []
        for cluster in base.clusters():
            for region in cluster.regions:
                spec = cluster.for_region(region)
                groups.append(model.ServerGroup(
                    name=model.server_group_name(spec.name, 0), provider=spec.provider,
                    account=spec.account, region=region, cluster=spec.name, application=spec.application,
                    managed=True, launch=spec.launch, capacity=spec.capacity, enabled=True,
                    healthy=spec.capacity.desired, instances=spec.capacity.desired,
                    spec_hash=spec.launch.spec_hash(), commit=base.commit,
                ))
        return planner.LiveState(tuple(groups))


def unexpected(exc: Exception, what: str) -> str:
    """Our errors as their message; anything else logged with its traceback, then reported the same way."""
    if isinstance(exc, errors.ReconcilerError):
        return str(exc)
    log.error("%s raised %s: %s", what, type(exc).__name__, exc, exc_info=exc)
    return f"unexpected {type(exc).__name__} while {what}: {exc}"

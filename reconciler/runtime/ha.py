"""Several replicas sharing the work on one database: heartbeats, the claim step, fencing.

A replica heartbeats every ``ha.heartbeat`` (its membership row and all its
claims renewed in one transaction). Each pass, the daemon splits the commit's
rollout units over the live daemon replicas as the database lists them then
(``core.assignment``: every replica computes the same split, no election
needed), claims the keys of the runnable cluster and resource changes in its
share, and releases claims it no longer needs. A claim is what
lets an execution write (``Store.fenced``); a replica whose heartbeats fail
(the database is gone, or it was paused) stops trusting its claims after
``takeover - heartbeat`` by its own monotonic clock, stops acting and reports
not ready; by then the database lets another replica take the keys over.

Why rendezvous assignment and not ``SELECT ... FOR UPDATE SKIP LOCKED`` on a
work queue: a rollout runs for minutes, far longer than a transaction should
stay open, so a lease row with an expiry is needed anyway; with one, the
assignment only decides who *tries* first, and deterministic shares keep every
cluster's regions on one replica and move little when a replica joins or leaves.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from reconciler.config import settings as config_mod
from reconciler.core import assignment, errors, model, selection
from reconciler.core.resources import ResourceChange
from reconciler.runtime import metrics
from reconciler.state import claims as claims_mod
from reconciler.state import store as store_mod

log = logging.getLogger("reconciler.ha")

FORGET_DEAD_S = 3600.0  # rows of replicas silent this long are deleted (status shows recent deaths)


def claim_step(coordinator: Coordinator, changes: list[model.Change], resources: list[ResourceChange],
               desired: model.DesiredState, running: set[str], max_parallel: int
               ) -> tuple[list[model.Change], list[ResourceChange], list[ResourceChange]]:
    """A background pass's share: (cluster changes, resource changes) it claimed, and the resource
    changes left to other replicas (the clusters naming them wait: ``resources.run_first``)."""
    coordinator.start()
    mine, res = coordinator.select(changes, desired, running, capacity=max_parallel - len(running),
                                   resources=resources)
    return mine, res, [c for c in resources if c not in res]


class Coordinator:
    """This process's membership and claims. ``share=True`` for a daemon (it takes a share of the
    units); a one-off CLI apply registers with ``share=False`` and claims what it runs."""

    def __init__(self, store: store_mod.Store, settings: config_mod.HaSettings, *, share: bool) -> None:
        self.store = store
        self.settings = settings
        self.share = share
        self.owner = store.owner
        guard = max(min(settings.takeover_s / 4, 5.0), 0.05)  # well inside a takeover: see claims.guard
        self.claims = claims_mod.Claims(store.engine, store.owner, guard_s=guard)
        store.guard_s = guard
        self._held: dict[str, int] = {}
        self._valid_until = 0.0  # monotonic: claims are trusted until then
        self._lock = threading.Lock()
        self._db_lock = threading.Lock()  # heartbeats and claim steps never interleave
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at = time.time()
        self._forgot_at = float("-inf")  # monotonic: when rows of long-dead replicas were last deleted
        self.members: list[str] = []
        self.error: str | None = "no heartbeat yet"
        self.ready_probe: Callable[[], tuple[bool, str]] | None = None  # what the replica row says of it

    # ------------------------------------------------------------------ heartbeats

    def start(self) -> None:
        """Join the group (first heartbeat now, then every ``ha.heartbeat``); once, from any thread."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._loop, name="ha-heartbeat", daemon=True)
        self.beat()
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_s):
            self.beat()

    def beat(self) -> None:
        """One heartbeat; a failure is an outcome (claims stop being trusted once they may have lapsed)."""
        t0 = time.monotonic()
        try:
            ready, note = (True, "") if self.ready_probe is None else self.ready_probe()
            with self._db_lock:
                held = self.claims.heartbeat(
                    host=os.uname().nodename, pid=os.getpid(), role="daemon" if self.share else "cli",
                    started_at=self._started_at, ttl=self.settings.takeover_s, ready=ready,
                    note="" if ready else note)
                members = self.claims.members()
                if self.share:
                    self._export(claims_mod.view(self.store.engine))
            if self.share and t0 - self._forgot_at >= 60:
                self.claims.forget_dead(FORGET_DEAD_S)
                self._forgot_at = t0
        except Exception as exc:  # the heartbeat thread must not die: any failure is an outcome
            if self.error is None:
                log.error("heartbeat failed: %s; acting on nothing until the database answers", exc)
            self.error = f"heartbeat failed: {exc}"
            metrics.HA_HEARTBEAT_FAILURES.inc()
            return
        with self._lock:
            self._held = held
            self._valid_until = t0 + self.settings.takeover_s - self.settings.heartbeat_s
            self.members = members
        if self.error is not None and self.error != "no heartbeat yet":
            log.info("heartbeat restored: %d live replicas, %d claims held", len(members), len(held))
        self.error = None
        metrics.HA_LIVE_REPLICAS.set(len(members))
        metrics.HA_CLAIMS.set(len(held))
        metrics.HA_LAST_HEARTBEAT.set(time.time())

    def _export(self, view: dict[str, object]) -> None:
        """Per-replica figures for ``/metrics`` (any replica's scrape shows the whole group)."""
        metrics.HA_REPLICA_CLAIMS.clear()
        metrics.HA_REPLICA_HEARTBEAT_AGE.clear()
        for r in view["replicas"]:  # type: ignore[attr-defined]
            metrics.HA_REPLICA_CLAIMS.labels(r["id"]).set(r["claims"])
            metrics.HA_REPLICA_HEARTBEAT_AGE.labels(r["id"]).set(r["heartbeat_age_s"])

    def healthy(self) -> tuple[bool, str]:
        """Whether this replica may act: its last heartbeat is recent enough that its claims hold."""
        if self.error is not None:
            return False, self.error
        if time.monotonic() >= self._valid_until:
            return False, "no successful heartbeat within ha.takeover"
        return True, "ok"

    # ------------------------------------------------------------------ fencing

    def fence(self, key: str) -> claims_mod.Fence | None:
        with self._lock:
            gen = self._held.get(key)
            if gen is None or time.monotonic() >= self._valid_until:
                return None
            return claims_mod.Fence(key, self.owner, gen)

    def holds(self, fence: claims_mod.Fence) -> bool:
        """Cheap check between provider calls; the database checks again at every write."""
        with self._lock:
            return self._held.get(fence.key) == fence.generation and time.monotonic() < self._valid_until

    # ------------------------------------------------------------------ the claim step

    def select(self, changes: Iterable[model.Change], desired: model.DesiredState, running: set[str], *,
               capacity: int, resources: Iterable[ResourceChange] = ()
               ) -> tuple[list[model.Change], list[ResourceChange]]:
        """The runnable cluster and resource changes this replica runs now: its share (for a daemon),
        claimed in the database in one step.

        At most ``capacity`` new clusters are claimed (what the executor can start now): a replica never
        sits on claims it cannot work on, so a share moves to a replica that joins while work is queued.
        A key taken over from another replica runs from the next pass on: this pass was planned from
        live state read before the claim, and the previous holder may have acted since. The split is
        made from the members read now, not at the last heartbeat: a replica that joined or left since
        would otherwise be given, or keep, a share nobody runs until the next heartbeat. A load balancer
        or security group goes to the replica its key's rendezvous names (resources are few and run in
        the pass, so no load bound); the clusters naming one that is created elsewhere wait for it.
        """
        if not self.healthy()[0]:
            return [], []
        changes, res = list(changes), list(resources)
        if self.share:
            try:
                with self._db_lock:
                    members = self.claims.members()
            except errors.ReconcilerError as exc:
                log.warning("reading the replica group failed: %s; this pass acts on nothing", exc)
                return [], []
            with self._lock:
                self.members = members
            if self.owner not in members:
                return [], []
            units = {assignment.unit_of(model.cluster_key(c.provider, c.account, r, c.name))
                     for c in desired.clusters() for r in c.regions}
            table = assignment.assign(units, members)
            wanted = [c for c in changes if assignment.owner(c.key, table, members) == self.owner]
            res = [c for c in res if assignment.owner(c.key, {}, members) == self.owner]
        else:
            wanted = changes
        with self._lock:
            held_now = set(self._held)
        chosen: list[str] = []
        for c in wanted:
            unit = assignment.unit_of(c.key)
            if unit not in chosen and (c.key in held_now or len(chosen) < max(capacity, 0)):
                chosen.append(unit)
        wanted = [c for c in wanted if assignment.unit_of(c.key) in chosen]
        keys = {c.key for c in wanted} | {c.key for c in res}
        taken: set[str] = set()
        try:
            with self._db_lock:
                got = self.claims.claim(keys, self.settings.takeover_s, taken=taken)
                with self._lock:
                    stale = {k: g for k, g in self._held.items() if k not in keys and k not in running}
                    self._held = {k: g for k, g in self._held.items() if k not in stale} | got
                self.claims.release(stale)
        except errors.ReconcilerError as exc:
            log.warning("claim step failed: %s; this pass acts on nothing", exc)
            return [], []
        metrics.HA_CLAIMS.set(len(self._held))
        lost = len(keys) - len(got)
        if lost:
            log.info("%d of %d keys of this replica's share are still held by another replica", lost, len(keys))
        if taken:
            log.info("took over %d keys from other replicas; they run from the next pass, planned from "
                     "live state read after the takeover", len(taken))
        mine = [c for c in wanted if c.key in got and c.key not in taken]
        # a later wave runs only with the earlier waves it waits for: one of those may be held elsewhere
        return (selection.complete(mine, same_run=False),
                [c for c in res if c.key in got and c.key not in taken])

    def claim_now(self, key: str) -> claims_mod.Fence | None:
        """Claim one key outside the claim step (a manual apply or rollback); ``release`` it after."""
        self.start()
        if not self.healthy()[0]:
            return None
        with self._db_lock:
            got = self.claims.claim([key], self.settings.takeover_s)
            with self._lock:
                self._held.update(got)
        return self.fence(key) if key in got else None

    @contextlib.contextmanager
    def holding(self, key: str) -> Iterator[claims_mod.Fence | None]:
        """The fence of ``key``: this pass's claim, or one taken now for a one-off run (a manual apply or
        rollback) and given back at the end; None when another replica holds it or the database is away."""
        fence = self.fence(key)
        on_demand = fence is None
        if fence is None:
            fence = self.claim_now(key)
        try:
            yield fence
        finally:
            if on_demand and fence is not None:
                try:
                    self.release(fence)
                except errors.ReconcilerError as exc:
                    log.warning("%s: could not release the claim (it lapses by itself): %s", key, exc)

    def release(self, fence: claims_mod.Fence) -> None:
        with self._db_lock:
            self.claims.release({fence.key: fence.generation})
            with self._lock:
                if self._held.get(fence.key) == fence.generation:
                    del self._held[fence.key]

    def held(self) -> dict[str, int]:
        with self._lock:
            return dict(self._held)

    def status(self) -> dict[str, object]:
        """The group as the database sees it, and which row is this process (``reconciler status``)."""
        view: dict[str, object] = dict(claims_mod.view(self.store.engine))
        ok, why = self.healthy()
        view.update({"self": self.owner, "heartbeat_s": self.settings.heartbeat_s,
                     "takeover_s": self.settings.takeover_s, "healthy": ok if self._thread else None,
                     "problem": None if ok or self._thread is None else why})
        return view

    @staticmethod
    def render(view: dict[str, object]) -> list[str]:
        """The lines ``reconciler status`` prints for the group."""
        reps: list[dict[str, object]] = view.get("replicas") or []  # type: ignore[assignment]
        lines = [f"replicas ({sum(1 for r in reps if r['live'])} live, heartbeat {view.get('heartbeat_s')}s, "
                 f"takeover {view.get('takeover_s')}s):"]
        for r in reps:
            state = ("ready" if r["ready"] else "NOT READY") if r["live"] else "DEAD"
            lines.append(f"  {r['id']:<40} {r['role']:<6} {state:<9} heartbeat {r['heartbeat_age_s']}s ago, "
                         f"{r['claims']} claims" + (f" ({r['note']})" if r["note"] else ""))
        return lines

    def close(self) -> None:
        """A clean stop: leave the group so others take the claims over at once."""
        self._stop.set()
        if self._thread is None:
            return
        self._thread.join(timeout=5)
        try:
            with self._db_lock:
                self.claims.leave()
        except Exception as exc:  # the claims lapse by themselves within ha.takeover
            log.warning("could not leave the replica group cleanly (claims lapse within ha.takeover): %s", exc)

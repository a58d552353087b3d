"""Delivery: a feeder thread fills the outbox from the history, one thread per target empties it.

Nothing here is on a deploy's path: the executor only writes history rows, as
it always did. The feeder reads them after the fact; each target's thread
sends its own queue, oldest first, so a target that is down, slow or hangs
holds up only itself. A failed attempt is retried with backoff (honouring
``Retry-After``), an event older than the target's ``max_age`` is dropped with
a logged reason, and sends are paced by a token bucket per target. Leases in
the store make sure that several daemons sharing one PostgreSQL store feed and
send each event once.

Each loop is a ``step()`` that does one thing and says how long to wait, so
tests drive it with a fake clock and count what happened.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import Counter, Gauge

from reconciler.config import settings as config_mod
from reconciler.core import backoff, errors
from reconciler.core import clock as clock_mod
from reconciler.notifications import messages, outbox, pacing, routing, senders
from reconciler.notifications import settings as settings_mod
from reconciler.runtime import executor, metrics
from reconciler.source import git as gitsource
from reconciler.state import keys
from reconciler.state import store as store_mod
from specs import policy_file

log = logging.getLogger(__name__)

DELIVERED = Counter("reconciler_notifications_delivered_total", "Notifications and commit statuses delivered.",
                    ["target"], registry=metrics.REGISTRY)
FAILED = Counter("reconciler_notifications_failed_total",
                 "Failed delivery attempts (each is retried until max_age), by target and error class.",
                 ["target", "error"], registry=metrics.REGISTRY)
DROPPED = Counter("reconciler_notifications_dropped_total",
                  "Notifications given up: expired (max_age), refused (the body was rejected) or removed "
                  "(target gone from the config).", ["target", "reason"], registry=metrics.REGISTRY)
QUEUE = Gauge("reconciler_notifications_queue_depth", "Notifications waiting in the outbox, by target.",
              ["target"], registry=metrics.REGISTRY)
FAILING = Gauge("reconciler_notifications_target_failing",
                "1 while a target's last delivery attempt failed (see `reconciler status` for the error).",
                ["target"], registry=metrics.REGISTRY)
LAST_FAILURE = Gauge("reconciler_notifications_last_failure_timestamp_seconds",
                     "When a target's last delivery attempt failed.", ["target"], registry=metrics.REGISTRY)

FEED_BATCH = 500
FEEDER_LEASE = "notifications/feeder"
PRUNE_EVERY_S = 3600.0
KEEP_DONE_S = 7 * 86400.0
CRITICALITY_TTL_S = 30.0  # the status (large for a big fleet) is read at most this often for criticality

PolicySource = Callable[[], tuple[policy_file.PolicySettings, Mapping[str, str]]]


class PolicyReader:
    """``policies.yaml`` at the commit in force (from the daemon's mirror), and each application's criticality.

    Read once per commit; a file with problems yields the built-in rules (every
    event to every target), which is the safe side for telling people.
    """

    def __init__(self, config: config_mod.Config, store: store_mod.Store) -> None:
        self.config = config
        self.store = store
        self._source: gitsource.GitSource | None = None
        self._commit: str | None = None
        self._settings = policy_file.PolicySettings()
        self._criticality: Mapping[str, str] = {}
        self._criticality_at: float | None = None

    def __call__(self) -> tuple[policy_file.PolicySettings, Mapping[str, str]]:
        commit = self.store.get(keys.LAST_GOOD)
        if commit and commit != self._commit:
            self._commit = commit
            self._settings = self._load(commit)
            self._criticality_at = None
        now = time.monotonic()
        # criticality changes with a commit only; the status is read again a little later too, as the
        # engine saves it just after it takes a new commit
        if self._criticality_at is None or now - self._criticality_at > CRITICALITY_TTL_S:
            status = self.store.get(keys.STATUS) or {}
            apps: Mapping[str, Any] = status.get("applications") or {}
            self._criticality = {name: str(a.get("criticality") or "normal") for name, a in apps.items()}
            self._criticality_at = now
        return self._settings, self._criticality

    def _load(self, commit: str) -> policy_file.PolicySettings:
        name = f"{self.config.spec_path}/policies.yaml".lstrip("/")
        try:
            if self._source is None:
                self._source = gitsource.GitSource(self.config.repo_url, self.config.branch,
                                                   mirror_root=self.config.state_dir)
            files, _ = self._source.tree_files(commit, self.config.spec_path)
        except errors.ReconcilerError as exc:
            log.warning("notifications: cannot read %s at %s, using the built-in rules: %s", name, commit[:8], exc)
            return policy_file.PolicySettings(file=name)
        found = next((f for f in files if f.path == name), None)
        if found is None:
            return policy_file.PolicySettings(file=name)
        settings, problems = policy_file.load_policy_file(found.read().decode("utf-8", "replace"), file=name)
        if problems:
            log.warning("notifications: %s has %d problem(s); every event goes to every target until it is fixed",
                        name, len(problems))
        return settings


def _lease(store: store_mod.Store, key: str, now: float, ttl: float) -> bool:
    """Hold ``key``; a lease left by a process on this host that is gone (kill -9) is taken over at once."""
    if store.acquire_lease(key, now, ttl):
        return True
    holder = store.lease_holder(key, now)
    return bool(holder) and executor.owner_dead(str(holder)) and store.acquire_lease(key, now + ttl + 1, ttl)


class Feeder:
    """History -> outbox rows, one per (event, target that wants it)."""

    def __init__(self, store: store_mod.Store, box: outbox.Outbox, settings: settings_mod.NotificationSettings,
                 policies: PolicySource, clock: clock_mod.Clock, *, on_enqueued: Callable[[], None] = lambda: None,
                 ) -> None:
        self.store = store
        self.outbox = box
        self.settings = settings
        self.policies = policies
        self.clock = clock
        self.on_enqueued = on_enqueued
        self._warned: set[str] = set()
        self._pruned_at = 0.0

    def step(self) -> int:
        """Feed one batch; returns how many history rows it read (0: nothing new)."""
        now = self.clock.now()
        lease_ttl = max(30.0, 10 * self.settings.delivery.poll_s)
        if not _lease(self.store, FEEDER_LEASE, now, lease_ttl):
            return 0
        cursor = self.outbox.cursor()
        if cursor is None:  # first start with notifications: tell of what happens from now on, not the past
            self.outbox.enqueue([], cursor=self.store.last_event_id(), now=now)
            return 0
        history_rows = self.store.events_after(cursor, limit=FEED_BATCH)
        if not history_rows:
            self._prune(now)
            return 0
        pol, criticality = self.policies()
        notify_names = set(self.settings.names(commit_status=False))
        status_names = set(self.settings.names(commit_status=True))
        entries: list[outbox.Entry] = []
        for row in history_rows:
            n = messages.from_event(row)
            if n is None:
                continue
            chosen, unknown = routing.targets_for(n, pol, criticality, notify_names, status_names)
            for name in sorted(unknown - self._warned):
                self._warned.add(name)
                log.warning("notifications: policies.yaml names target %r, which is not in the config's "
                            "notifications.targets", name)
            entries += [outbox.Entry(n.event_id, t, n.kind, n.application, n.ts, n.doc()) for t in sorted(chosen)]
        self.outbox.enqueue(entries, cursor=int(history_rows[-1]["id"]), now=now)
        if entries:
            self.on_enqueued()
        return len(history_rows)

    def _prune(self, now: float) -> None:
        if now - self._pruned_at >= PRUNE_EVERY_S:
            self._pruned_at = now
            self.outbox.prune(now - KEEP_DONE_S)


class TargetWorker:
    """One target's queue, sent in order; returns from ``step`` with the seconds until it may have work."""

    def __init__(self, target: settings_mod.Target, sender: senders.Sender, store: store_mod.Store,
                 box: outbox.Outbox, delivery: settings_mod.Delivery, clock: clock_mod.Clock) -> None:
        self.target = target
        self.sender = sender
        self.store = store
        self.outbox = box
        self.delivery = delivery
        self.clock = clock
        self.bucket = pacing.TokenBucket(target.rate_limit.per_minute, target.rate_limit.burst, clock.now())
        self.lease = f"notifications/target/{target.name}"
        self.lease_ttl = max(30.0, 3 * (target.timeout_s + delivery.poll_s))
        self._lease_until = 0.0

    def step(self) -> float:
        name = self.target.name
        idle = self.delivery.poll_s
        row = self.outbox.head(name)
        if row is None:
            QUEUE.labels(name).set(0)
            return idle
        now = self.clock.now()
        age = now - row.event_ts
        if age > self.target.max_age_s:
            why = (f"not delivered within max_age ({age:.0f}s > {self.target.max_age_s:.0f}s) after "
                   f"{row.attempts} attempt(s)" + (f"; last error: {row.last_error}" if row.last_error else ""))
            log.warning("notifications: %s: dropped event %d (%s): %s", name, row.event_id, row.kind, why)
            self.outbox.dropped(row, now, reason=why)
            DROPPED.labels(name, "expired").inc()
            return 0.0
        if row.next_at > now:  # nothing after the head may go first, so wait for it (or for its expiry)
            return max(min(row.next_at, row.event_ts + self.target.max_age_s + 0.001) - now, 0.001)
        wait = self.bucket.wait_s(now)
        if wait > 0:
            return wait
        if now >= self._lease_until - self.lease_ttl / 2:  # renewed at half its time: not a write per send
            if not _lease(self.store, self.lease, now, self.lease_ttl):
                self._lease_until = 0.0
                return idle  # another daemon sends this target's queue
            self._lease_until = now + self.lease_ttl
            row = self.outbox.head(name)  # it may have sent this one while we did not hold the lease
            if row is None:
                return 0.0
        self.bucket.take(now)
        try:
            self.sender.send(messages.Notification.from_doc(row.payload))
        except senders.DeliveryError as exc:
            self._failed(row, exc)
        else:
            done = self.clock.now()
            self.outbox.delivered(row, done)
            DELIVERED.labels(name).inc()
            FAILING.labels(name).set(0)
        QUEUE.labels(name).set(self.outbox.pending(name))
        return 0.0

    def _failed(self, row: outbox.Row, exc: senders.DeliveryError) -> None:
        name, now = self.target.name, self.clock.now()
        FAILED.labels(name, exc.code).inc()
        FAILING.labels(name).set(1)
        LAST_FAILURE.labels(name).set(now)
        if exc.permanent:
            log.warning("notifications: %s: dropped event %d (%s): refused: %s", name, row.event_id, row.kind, exc)
            self.outbox.dropped(row, now, reason=f"refused: {exc}", attempted=True)
            DROPPED.labels(name, "refused").inc()
            return
        delay = backoff.delay(row.attempts + 1, first=self.delivery.retry_first_s, maximum=self.delivery.retry_max_s)
        if exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, self.target.max_age_s))
        log.warning("notifications: %s: event %d (%s) not delivered (attempt %d): %s; next attempt in %.1fs",
                    name, row.event_id, row.kind, row.attempts + 1, exc, delay)
        self.outbox.failed(row, now, error=str(exc), next_at=now + delay)


class _Loop:
    """A named daemon thread calling ``step`` until stopped; an unexpected error waits, then goes on."""

    def __init__(self, name: str, step: Callable[[], float], stop: threading.Event, error_wait_s: float) -> None:
        self.step = step
        self.stop = stop
        self.wake = threading.Event()
        self.error_wait_s = error_wait_s
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                wait = self.step()
            except Exception:  # a store hiccup or a bug must not end delivery for good
                log.exception("notifications: %s failed; trying again in %.0fs", self.thread.name, self.error_wait_s)
                wait = self.error_wait_s
            if wait > 0:
                self.wake.wait(wait)
                self.wake.clear()


class Hub:
    """The daemon's notification service: ``start``, ``reconfigure`` (SIGHUP), ``stop``."""

    def __init__(self, store: store_mod.Store, config: config_mod.Config, *,
                 clock: clock_mod.Clock | None = None, policies: PolicySource | None = None) -> None:
        self.store = store
        self.clock = clock or clock_mod.SystemClock()
        self.outbox = outbox.Outbox(store)
        self.settings = config.notifications
        self.senders = _build_senders(self.settings)
        self.policies = policies or PolicyReader(config, store)
        self._stop = threading.Event()
        self._feeder: _Loop | None = None
        self._loops: dict[str, _Loop] = {}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._forget_removed()
        feeder = Feeder(self.store, self.outbox, self.settings, self.policies, self.clock, on_enqueued=self.wake)
        self._feeder = _Loop("notify-feeder", lambda: 0.0 if feeder.step() else self.settings.delivery.poll_s,
                             self._stop, 5.0)
        self._feeder.thread.start()
        self._start_targets()
        log.info("notifications: %d target(s): %s", len(self.settings.targets),
                 ", ".join(f"{t.name} ({t.type})" for t in self.settings.targets))

    def _start_targets(self) -> None:
        depth = self.outbox.depth()
        for t in self.settings.targets:
            worker = TargetWorker(t, self.senders[t.name], self.store, self.outbox, self.settings.delivery, self.clock)
            QUEUE.labels(t.name).set(depth.get(t.name, 0))
            DELIVERED.labels(t.name)
            loop = _Loop(f"notify-{t.name}", worker.step, self._stop, 5.0)
            self._loops[t.name] = loop
            loop.thread.start()

    def wake(self) -> None:
        for loop in list(self._loops.values()):
            loop.wake.set()

    def reconfigure(self, config: config_mod.Config) -> None:
        """Take new targets (SIGHUP); raises ``ConfigError`` and changes nothing if a sender cannot be built."""
        new_senders = _build_senders(config.notifications)
        self.stop()
        self.settings = config.notifications
        self.senders = new_senders
        self._stop = threading.Event()
        self.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop feeding and sending; a send in progress is abandoned (its row stays pending for the next start)."""
        self._stop.set()
        loops = [*([self._feeder] if self._feeder else []), *self._loops.values()]
        for loop in loops:
            loop.wake.set()
        for loop in loops:
            loop.thread.join(timeout)
        self._feeder, self._loops = None, {}
        for key in [FEEDER_LEASE, *(f"notifications/target/{t.name}" for t in self.settings.targets)]:
            self.store.release_lease(key)  # the next start (or another daemon) goes on at once

    def _forget_removed(self) -> None:
        configured = {t.name for t in self.settings.targets}
        depth = self.outbox.depth()
        gone = set(depth) - configured
        n = self.outbox.drop_pending(gone, self.clock.now(), reason="the target was removed from the config")
        for name in sorted(gone):
            DROPPED.labels(name, "removed").inc(depth[name])
        if n:
            log.warning("notifications: dropped %d pending notification(s) of removed target(s) %s", n,
                        ", ".join(sorted(gone)))


def _build_senders(settings: settings_mod.NotificationSettings) -> dict[str, senders.Sender]:
    return {t.name: senders.build(t) for t in settings.targets}


def check(config: config_mod.Config) -> None:
    """Raise ``ConfigError`` (naming the target's line) if a target cannot work here, e.g. its package is missing."""
    _build_senders(config.notifications)


def restart(hub: Hub | None, store: store_mod.Store, config: config_mod.Config) -> Hub | None:
    """The hub for ``config`` (at start, after a reload): reconfigured, started, stopped or still none.

    Telling must never stop reconciling: if the store cannot take the outbox now, that is logged and
    notifications stay off until the next start or reload (the events wait in the history).
    """
    if not config.notifications.enabled:
        if hub is not None:
            hub.stop()
        return None
    try:
        if hub is None:
            hub = Hub(store, config)
            hub.start()
        else:
            hub.reconfigure(config)
    except errors.StoreError as exc:
        log.error("notifications are off until the next start or reload: %s", exc)
        return None
    return hub


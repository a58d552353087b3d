"""Image automation in the daemon: a newer admitted image's version becomes a commit (docs/environments.md).

Once per poll, for each application with ``automation:``, the images its pattern matches are listed
in every (provider, account, region) of its clusters through the providers that resolve image
patterns; ``core/automation.py`` picks the newest version the policy admits that every region has.
When it is newer than the version Git declares, it is committed through ``reconciler promote``'s
path (the same edit, checks, signing, push and retry on top of a concurrent push): the commit, not
this module's memory, is what deploys, on the next pass.

Idempotent by construction: the version is compared with the branch head that the edit is made on,
so a version already there is not committed again, and a push is a compare-and-swap on the branch
(a rejected one is fetched and judged again on top). Replicas sharing a store also share the time of
the last look, so they look about once per poll between them. What each look found is kept in the
store for ``status`` (``automation``), and each commit or new failure goes into the history.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from providers import base as provider_base
from reconciler.config import settings as config_mod
from reconciler.core import automation, clock, errors, images, model
from reconciler.runtime import live as live_rt
from reconciler.runtime import promote as promote_rt
from reconciler.state import keys
from reconciler.state import store as store_mod

log = logging.getLogger(__name__)

GetProvider = Callable[[str, str], provider_base.Provider]
Commit = Callable[[config_mod.Config, promote_rt.Request], promote_rt.Outcome]
AUTHOR = "reconciler automation <automation@reconciler.invalid>"
SIGNING_KEY_ENV = "RECONCILER_SIGNING_KEY"  # the key ``POST /api/v1/promote`` signs with, too
COMMITTED, UP_TO_DATE, NOTHING, FAILED = "committed", "up_to_date", "nothing_admitted", "failed"


@dataclass(frozen=True, slots=True)
class Look:
    """What one look for one application found and did."""

    application: str  # the key: the application, or APP/ENV for an environment's own automation
    state: str  # committed, up_to_date, nothing_admitted, failed
    version: str  # what Git declared when it looked
    latest: str | None
    message: str
    commit: str | None = None
    environment: str | None = None  # an environment's own automation; its key is APP/ENV


class Automator:
    """The daemon's looks: reads the specs in force only while some application has automation.

    A commit without any ``automation:`` is remembered, so a fleet that does not use it pays one
    spec read per commit, not one per poll.
    """

    def __init__(self, config: Callable[[], config_mod.Config], store: store_mod.Store, clk: clock.Clock,
                 desired: Callable[[str], model.DesiredState], get: GetProvider, lock: AbstractContextManager[Any]
                 ) -> None:
        self._config, self._store, self._clock, self._desired, self._get, self._lock = (
            config, store, clk, desired, get, lock)
        self._without: str | None = None  # the last commit in force that has no automation
        self.reads = 0  # spec reads (tests assert that an unused feature costs nothing per poll)

    def look(self) -> list[Look]:
        commit: str | None = self._store.get(keys.LAST_GOOD)
        if commit is None or commit == self._without:
            return []
        with self._lock:  # the mirror and the spec cache serve one reader at a time
            desired = self._desired(commit)
            self.reads += 1
        if not any(_targets(a) for a in desired.applications.values()):
            self._without = commit
            return []
        return run(self._config(), self._store, self._clock, desired, self._get)


def run(config: config_mod.Config, store: store_mod.Store, clk: clock.Clock, desired: model.DesiredState,
        get: GetProvider, *, commit: Commit = promote_rt.promote) -> list[Look]:
    """One look for every automation block (of an application, or an environment's own) that no one looked
    at within this poll."""
    looks: list[Look] = []
    for name in sorted(desired.applications):
        for target in _targets(desired.applications[name]):
            now = clk.now()
            last = store.get(keys.automation(target.key)) or {}
            if now - float(last.get("checked_at") or 0.0) < 0.9 * config.poll_interval_s:
                continue  # looked at within this poll (by this replica or another sharing the store)
            look = _look(config, target, get, commit)
            _record(store, now, look, last)
            looks.append(look)
    return looks


@dataclass(frozen=True, slots=True)
class _Target:
    """One automation block: what it writes (the application's version, or an environment's own)."""

    app: model.Application
    auto: automation.ImageAutomation
    environment: str | None
    version: str  # what Git declares there now
    clusters: tuple[model.ClusterSpec, ...]  # the clusters that run that version: where the images must exist

    @property
    def key(self) -> str:
        return self.app.name if self.environment is None else f"{self.app.name}/{self.environment}"


def _targets(app: model.Application) -> list[_Target]:
    pinned = {e.name for e in app.environments if e.version_source is not None}
    out = [_Target(app, app.automation, None, app.version,
                   tuple(c for c in app.clusters if c.environment not in pinned))] if app.automation else []
    return out + [_Target(app, e.automation, e.name, e.version, tuple(c for c in app.clusters
                                                                       if c.environment == e.name))
                  for e in app.environments if e.automation is not None and e.version_source is not None]


def _look(config: config_mod.Config, t: _Target, get: GetProvider, commit: Commit) -> Look:
    app, auto, where = t.app, t.auto, f" in {t.environment}" if t.environment else ""
    found: list[list[images.Image]] = []
    for provider, account, region in sorted({(c.provider, c.account, r) for c in t.clusters for r in c.regions}):
        try:
            prov = get(provider, account)
            if not isinstance(prov, provider_base.ImageProvider):
                return Look(t.key, FAILED, t.version, None, f"{app.source.file}:{auto.line}: automation: the "
                            f"{provider} provider does not list images; automation needs a provider that resolves "
                            "image patterns (local, aws, gcp)", environment=t.environment)
            found.append(prov.find_images(region, auto.lookup()))
        except Exception as exc:  # a cloud error, a missing account: this look fails, the next poll tries again
            return Look(t.key, FAILED, t.version, None,
                        f"{provider}/{account}/{region}: {live_rt.unexpected(exc, 'listing images')}",
                        environment=t.environment)
    decision = automation.decide(auto, found, t.version)
    if decision.version is None:
        state = UP_TO_DATE if decision.latest else NOTHING
        return Look(t.key, state, t.version, decision.latest, decision.reason, environment=t.environment)
    key = os.environ.get(SIGNING_KEY_ENV)
    req = promote_rt.Request(
        app.name, decision.version, environment=t.environment, author=AUTHOR,
        signing_key=Path(key) if key else None,
        message=f"Automation: {app.name} {t.version or '(none)'} -> {decision.version}{where} "
                f"({auto.policy.text}, images {auto.pattern.describe()})")
    try:
        out = commit(config, req)
    except errors.ReconcilerError as exc:  # refused (its image does not resolve everywhere) or the push failed
        return Look(t.key, FAILED, t.version, decision.latest, str(exc), environment=t.environment)
    if out.pushed is None:
        return Look(t.key, UP_TO_DATE, out.previous, decision.latest, f"{out.file} already declares "
                    f"{decision.version}", environment=t.environment)
    return Look(t.key, COMMITTED, out.previous, decision.latest,
                f"committed {decision.version}{where} to {out.file} {out.key} (was {out.previous or 'none'}) at "
                f"{out.pushed.commit[:8]} of {out.pushed.branch}", out.pushed.commit, environment=t.environment)


def _record(store: store_mod.Store, now: float, look: Look, last: dict[str, Any]) -> None:
    store.put(keys.automation(look.application), {
        "checked_at": now, "state": look.state, "version": look.version, "latest": look.latest,
        "message": look.message, "commit": look.commit or last.get("commit"),
        "committed_at": now if look.commit else last.get("committed_at"), "environment": look.environment}, now)
    app = look.application.split("/", 1)[0]
    if look.state == COMMITTED:
        log.info("automation: %s: %s", look.application, look.message)
        store.record("image_automation", f"{look.application}: {look.message}", now, application=app,
                     commit=look.commit or "", detail={"version": look.latest, "previous": look.version,
                                                       "environment": look.environment})
    elif look.state == FAILED and (last.get("state") != FAILED or last.get("message") != look.message):
        log.warning("automation: %s: %s", look.application, look.message)  # once per new failure, not per poll
        store.record("image_automation_failed", f"{look.application}: {look.message}", now, application=app,
                     detail={"environment": look.environment})


def status(store: store_mod.Store) -> dict[str, Any]:
    """``status``'s ``automation`` section: application -> what its last look found (from the store)."""
    return {key.removeprefix(keys.AUTOMATION_PREFIX): value
            for key, value in sorted(store.get_prefix(keys.AUTOMATION_PREFIX).items())}

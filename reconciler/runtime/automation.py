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

    application: str
    state: str  # committed, up_to_date, nothing_admitted, failed
    version: str  # what Git declared when it looked
    latest: str | None
    message: str
    commit: str | None = None


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
        if not any(a.automation is not None for a in desired.applications.values()):
            self._without = commit
            return []
        return run(self._config(), self._store, self._clock, desired, self._get)


def run(config: config_mod.Config, store: store_mod.Store, clk: clock.Clock, desired: model.DesiredState,
        get: GetProvider, *, commit: Commit = promote_rt.promote) -> list[Look]:
    """One look for every application with automation that no one looked at within this poll."""
    looks: list[Look] = []
    for name in sorted(desired.applications):
        app = desired.applications[name]
        if app.automation is None:
            continue
        now = clk.now()
        last = store.get(keys.automation(name)) or {}
        if now - float(last.get("checked_at") or 0.0) < 0.9 * config.poll_interval_s:
            continue  # looked at within this poll (by this replica or another sharing the store)
        look = _look(config, app, app.automation, get, commit)
        _record(store, now, look, last)
        looks.append(look)
    return looks


def _look(config: config_mod.Config, app: model.Application, auto: automation.ImageAutomation,
          get: GetProvider, commit: Commit) -> Look:
    found: list[list[images.Image]] = []
    for provider, account, region in sorted({(c.provider, c.account, r) for c in app.clusters for r in c.regions}):
        try:
            prov = get(provider, account)
            if not isinstance(prov, provider_base.ImageProvider):
                return Look(app.name, FAILED, app.version, None, f"{app.source.file}:{auto.line}: automation: the "
                            f"{provider} provider cannot list images; automation needs a provider that resolves "
                            "image patterns (local, aws, gcp)")
            found.append(prov.find_images(region, auto.lookup()))
        except Exception as exc:  # a cloud error, a missing account: this look fails, the next poll tries again
            return Look(app.name, FAILED, app.version, None,
                        f"{provider}/{account}/{region}: {live_rt.unexpected(exc, 'listing images')}")
    decision = automation.decide(auto, found, app.version)
    if decision.version is None:
        state = UP_TO_DATE if decision.latest else NOTHING
        return Look(app.name, state, app.version, decision.latest, decision.reason)
    key = os.environ.get(SIGNING_KEY_ENV)
    req = promote_rt.Request(
        app.name, decision.version, author=AUTHOR, signing_key=Path(key) if key else None,
        message=f"Automation: {app.name} {app.version or '(none)'} -> {decision.version} "
                f"({auto.policy.text}, images {auto.pattern.describe()})")
    try:
        out = commit(config, req)
    except errors.ReconcilerError as exc:  # refused (its image does not resolve everywhere) or the push failed
        return Look(app.name, FAILED, app.version, decision.latest, str(exc))
    if out.pushed is None:
        return Look(app.name, UP_TO_DATE, out.previous, decision.latest, f"{out.file} already declares "
                    f"{decision.version}")
    return Look(app.name, COMMITTED, out.previous, decision.latest,
                f"committed {decision.version} to {out.file} {out.key} (was {out.previous or 'none'}) at "
                f"{out.pushed.commit[:8]} of {out.pushed.branch}", out.pushed.commit)


def _record(store: store_mod.Store, now: float, look: Look, last: dict[str, Any]) -> None:
    store.put(keys.automation(look.application), {
        "checked_at": now, "state": look.state, "version": look.version, "latest": look.latest,
        "message": look.message, "commit": look.commit or last.get("commit"),
        "committed_at": now if look.commit else last.get("committed_at")}, now)
    if look.state == COMMITTED:
        log.info("automation: %s: %s", look.application, look.message)
        store.record("image_automation", f"{look.application}: {look.message}", now, application=look.application,
                     commit=look.commit or "", detail={"version": look.latest, "previous": look.version})
    elif look.state == FAILED and (last.get("state") != FAILED or last.get("message") != look.message):
        log.warning("automation: %s: %s", look.application, look.message)  # once per new failure, not per poll
        store.record("image_automation_failed", f"{look.application}: {look.message}", now,
                     application=look.application)


def status(store: store_mod.Store) -> dict[str, Any]:
    """``status``'s ``automation`` section: application -> what its last look found (from the store)."""
    return {key.removeprefix(keys.AUTOMATION_PREFIX): value
            for key, value in sorted(store.get_prefix(keys.AUTOMATION_PREFIX).items())}

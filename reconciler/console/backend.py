"""The one place the console and the HTTP API reach the engine.

``Backend`` lists every operation they use; ``EngineBackend`` maps it onto the
engine of the running daemon. Pages and routes receive a ``Backend``, never the
engine, so reshaping the engine changes this module only (and tests can drive
the routes with a recording backend).

Everything that plans (the preview, approvals) is a preview pass of the one
pipeline, serialised with the daemon's passes (one reader of the Git mirror at a
time); deployments started here run in the background, like those a pass dispatches.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from reconciler.core import model

if TYPE_CHECKING:
    from reconciler.runtime import engine as engine_mod

log = logging.getLogger(__name__)

SIGNING_KEY_ENV = "RECONCILER_SIGNING_KEY"
"""The SSH key ``POST /api/v1/promote`` signs its commits with, as ``reconciler promote`` does."""


@dataclass(frozen=True, slots=True)
class Preview:
    """The plan for the tracked branch's head against live state, and what of it will not run now."""

    plan: model.Plan
    held: tuple[tuple[model.Change, model.Held], ...]  # change, why it does not run now
    skipped: tuple[Any, ...]  # planner.Skipped: clusters not planned (paused, stalled, unreadable)
    unreadable: Mapping[tuple[str, str, str], str]  # (provider, account, region) -> why its live state is unknown
    commit: str


class Backend(Protocol):
    """What the console and the API ask of the product; ``by`` is always the caller's token name."""

    def ready(self) -> tuple[bool, str]: ...
    def status(self) -> dict[str, Any]: ...
    def plan_preview(self, *, fresh: bool = False) -> Preview: ...
    def history(self, *, limit: int, application: str | None) -> list[dict[str, Any]]: ...
    def executions(self, *, limit: int, application: str | None) -> list[dict[str, Any]]: ...
    def execution(self, ident: str) -> dict[str, Any] | None: ...
    def approve(self, ident: str, *, by: str, comment: str) -> dict[str, Any]: ...
    def reject(self, ident: str, *, by: str, comment: str) -> dict[str, Any]: ...
    def decide_environment(self, application: str, environment: str, version: str, decision: str, *, by: str,
                           comment: str) -> dict[str, Any]: ...
    def promote(self, application: str, version: str, *, environment: str | None, message: str,
                by: str) -> dict[str, Any]: ...
    def pause(self, target: str, *, by: str, reason: str, force: bool) -> None: ...
    def resume(self, target: str, *, by: str) -> None: ...
    def freeze(self, *, by: str, reason: str) -> None: ...
    def unfreeze(self, *, by: str) -> None: ...
    def rollback(self, cluster: str, *, region: str | None, by: str) -> list[str]: ...
    def trigger(self, reason: str) -> None: ...
    def event_store(self) -> Any: ...  # the store the event stream tails (notifications.stream)


class EngineBackend:
    """``Backend`` over the daemon's engine and its pass trigger."""

    def __init__(self, engine: engine_mod.Engine, trigger: Callable[[str], None]) -> None:
        self._engine = engine
        self._trigger = trigger
        self._preview: tuple[Any, Preview] | None = None  # (status updated_at, preview): one per pass
        self._preview_lock = threading.Lock()

    def ready(self) -> tuple[bool, str]:
        return self._engine.ready()

    def status(self) -> dict[str, Any]:
        return self._engine.status()

    def plan_preview(self, *, fresh: bool = False) -> Preview:
        """Planned afresh at most once per pass (the console asks often); ``fresh`` always plans."""
        stamp = (self._engine.status() or {}).get("updated_at")
        with self._preview_lock:
            cached = self._preview
            if not fresh and cached is not None and cached[0] == stamp and stamp is not None:
                return cached[1]
            ev = self._engine.plan()  # a preview pass: it waits for a running pass
            preview = Preview(plan=ev.plan, held=tuple(ev.held), skipped=tuple(ev.outcome.skipped),
                              unreadable=dict(ev.live.unreadable), commit=ev.plan.commit)
            self._preview = (stamp, preview)
            return preview

    def history(self, *, limit: int, application: str | None) -> list[dict[str, Any]]:
        return self._engine.store.history(limit=limit, application=application)

    def event_store(self) -> Any:
        return self._engine.store

    def executions(self, *, limit: int, application: str | None) -> list[dict[str, Any]]:
        rows = self._engine.store.executions(limit=limit, application=application)
        return [_public_execution(r) for r in rows]

    def execution(self, ident: str) -> dict[str, Any] | None:
        row = self._engine.store.execution(ident)
        if row is None:
            return None
        return {**_public_execution(row), "steps": self._engine.store.steps_of(ident)}

    def approve(self, ident: str, *, by: str, comment: str) -> dict[str, Any]:
        row = self._engine.approve(ident, by=by, comment=comment)  # a preview pass finds the plan in force
        self._trigger("approve")
        return row

    def reject(self, ident: str, *, by: str, comment: str) -> dict[str, Any]:
        row = self._engine.reject(ident, by=by, comment=comment)
        self._trigger("reject")
        return row

    def decide_environment(self, application: str, environment: str, version: str, decision: str, *, by: str,
                           comment: str) -> dict[str, Any]:
        row = self._engine.decide_environment(application, environment, version, decision, by=by, comment=comment)
        self._trigger(decision)
        return row

    def promote(self, application: str, version: str, *, environment: str | None, message: str,
                by: str) -> dict[str, Any]:
        """``reconciler promote`` for CI over HTTP: the commit names the token; a pass picks it up at once."""
        from reconciler.runtime import promote as promote_rt  # noqa: PLC0415 - pygit2 pushes only when asked

        key = os.environ.get(SIGNING_KEY_ENV)
        req = promote_rt.Request(application, version, environment=environment,
                                 message=message or f"Promote {application} to {version}"
                                 + (f" in {environment}" if environment else "") + f" (by {by})",
                                 signing_key=Path(key) if key else None, author=f"{by} <promote@reconciler.invalid>")
        out = promote_rt.promote(self._engine.config, req)
        if out.pushed is not None:
            self._trigger("promote")
        pushed = out.pushed
        return {"application": application, "version": version, "environment": environment, "file": out.file,
                "key": out.key, "previous": out.previous, "pushed": pushed is not None,
                "commit": pushed.commit if pushed else None, "branch": pushed.branch if pushed else None,
                "signed": bool(pushed and pushed.signed), "by": by}

    def pause(self, target: str, *, by: str, reason: str, force: bool) -> None:
        self._engine.pause(target, by=by, reason=reason, force=force)  # it takes the pass lock when it reads Git

    def resume(self, target: str, *, by: str) -> None:
        self._engine.resume(target, by=by)
        self._trigger("resume")

    def freeze(self, *, by: str, reason: str) -> None:
        self._engine.freeze(by=by, reason=reason)

    def unfreeze(self, *, by: str) -> None:
        self._engine.unfreeze(by=by)
        self._trigger("unfreeze")

    def rollback(self, cluster: str, *, region: str | None, by: str) -> list[str]:
        """Start the rollback in the background and return its regions; the cluster is paused first, so no
        pass plans it meanwhile."""
        changes = self._engine.prepare_rollback(cluster, region=region, by=by)  # it reads Git under the pass lock
        thread = threading.Thread(target=self._run_rollback, args=(changes,), name=f"rollback-{cluster}",
                                  daemon=True)
        thread.start()
        return sorted({c.region for c in changes})

    def _run_rollback(self, changes: list[model.Change]) -> None:
        try:
            results = self._engine.executor.run_rollouts("manual-rollback", changes)
        except Exception:
            log.exception("a manual rollback ended unexpectedly")
            return
        for r in results:
            log.info("manual rollback of %s in %s: %s %s", r.change.cluster, r.change.region, r.state, r.error)
        try:
            self._engine.pipeline.settle(changes, "rollback finished")  # its regions read again, no full pass
        except Exception:
            log.exception("status update after a rollback failed")

    def trigger(self, reason: str) -> None:
        self._trigger(reason)


def _public_execution(row: Mapping[str, Any]) -> dict[str, Any]:
    """An execution row without the stored change (it carries the full launch settings, user data included)."""
    return {k: v for k, v in row.items() if k != "change"}

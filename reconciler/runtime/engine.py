"""The composition root: builds the runtime's parts once per process and hands them to the surfaces.

The CLI, the daemon, the HTTP API, the console backend and notifications use an ``Engine``; what
they call is here as one line each, and the work is in the module named beside it:

- ``pipeline``: THE reconcile pass (read desired -> read live -> plan -> judge -> select -> execute
  -> record) with its modes preview / apply / background;
- ``desired`` (the Git mirror, spec loading, the last good commit), ``live`` (provider reads),
  ``providers`` (one instance per account, rebuilt when a reload changes it);
- ``dispatch`` (the daemon's background rollouts), ``executor`` (durable steps);
- ``operations`` (approve, reject, pause, resume, freeze, unfreeze, manual rollback);
- ``status`` (the status document, a pure function of the last evaluation).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from reconciler.config import settings as config_mod
from reconciler.core import clock as clock_mod
from reconciler.core import model
from reconciler.notifications import outbox as notify_outbox
from reconciler.runtime import automation as automation_mod
from reconciler.runtime import canary as canary_mod
from reconciler.runtime import desired as desired_mod
from reconciler.runtime import dispatch as dispatch_mod
from reconciler.runtime import executor as executor_mod
from reconciler.runtime import ha as ha_mod
from reconciler.runtime import live as live_mod
from reconciler.runtime import operations as operations_mod
from reconciler.runtime import pipeline as pipeline_mod
from reconciler.runtime import providers as providers_mod
from reconciler.runtime import status as status_mod
from reconciler.runtime.pipeline import Mode, Request
from reconciler.source import git as gitsource
from reconciler.state import keys
from reconciler.state import store as store_mod

log = logging.getLogger("reconciler.engine")  # the name log filters know; kept when the module moved


class Engine:
    def __init__(
        self,
        config: config_mod.Config,
        *,
        clock: clock_mod.Clock | None = None,
        background: bool = False,
        progress: Callable[[str], None] | None = None,
        after_step: Callable[[], None] | None = None,
        remember: bool = True,
    ) -> None:
        """``remember=False``: a process of one pass (``plan``, ``status``) keeps no per-cluster results for
        a next one (``Pipeline``)."""
        self.config = config
        self.clock = clock or clock_mod.SystemClock()
        self.background = background
        self.store = store_mod.Store(config.state_url)
        self.providers = providers_mod.Providers(config, self.clock)
        self.desired = desired_mod.DesiredSource(lambda: self.config, self.store, self.clock, self.providers)
        self.live = live_mod.LiveReader(self.providers, self.store, self.clock)
        self.ha = ha_mod.Coordinator(self.store, config.ha, share=background) if config.ha.enabled else None
        if self.ha is not None:
            self.ha.ready_probe = self.ready
        self.executor = executor_mod.Executor(
            store=self.store, providers=self.providers.get, clock=self.clock,
            settings=config.execution, progress=progress, after_step=after_step, hooks=config.verify,
            prometheus=config.prometheus,
            claims=self.ha,
        )
        self.dispatcher = dispatch_mod.Dispatcher(self.executor, config.execution.max_parallel,
                                                  on_done=lambda changes, _results: self.pipeline.settle(changes))
        self.pipeline = pipeline_mod.Pipeline(
            config=lambda: self.config, store=self.store, clock=self.clock, desired=self.desired, live=self.live,
            executor=self.executor, dispatcher=self.dispatcher, background=background, ha=self.ha,
            remember=remember,
        )
        self.ops = operations_mod.Operations(
            config=lambda: self.config, store=self.store, clock=self.clock, pipeline=self.pipeline,
            desired=self.desired, live=self.live, executor=self.executor,
        )
        self.pass_lock = self.pipeline.lock
        self.automator = automation_mod.Automator(
            lambda: self.config, self.store, self.clock, lambda c: self.desired.at(c, resolve_images=False).state,
            self.providers.get, self.pass_lock)
        self._interrupt_orphans()
        if self.ha is not None and background:
            self.ha.start()  # a member before the first pass, so replicas starting together share it

    # ------------------------------------------------------------------ passes

    def reconcile(self, *, reason: str = "poll") -> pipeline_mod.PassResult:
        """One pass that acts: in the background for the daemon, in this thread otherwise (run --once)."""
        mode = Mode.BACKGROUND if self.background else Mode.APPLY
        return self.pipeline.run(Request(mode, reason=reason))

    def plan(self, *, ref: str | None = None, base: str | None = None, local_repo: str | None = None,
             offline: bool = False) -> pipeline_mod.Evaluation:
        """For ``reconciler plan`` and the console: desired at REF against live (or against desired at BASE)."""
        ev = self.plan_reusing(None, ref=ref, base=base, local_repo=local_repo, offline=offline)
        assert isinstance(ev, pipeline_mod.Evaluation)
        return ev

    def plan_reusing(self, reuse: pipeline_mod.Reuse | None, *, ref: str | None = None, base: str | None = None,
                     local_repo: str | None = None, offline: bool = False
                     ) -> pipeline_mod.Evaluation | pipeline_mod.Reused:
        """``plan``, or the answer ``reuse`` persisted for the very same inputs (``reconciler plan``)."""
        reader = gitsource.LocalCheckout(local_repo) if local_repo is not None else None
        result = self.pipeline.run(Request(
            Mode.PREVIEW, reason="plan", ref=ref, base=base, reader=reader, offline=offline,
            strict_source=True, no_commit="no commit to plan", exclude_running=False, reuse=reuse))
        if result.reused is not None:
            return result.reused
        assert result.evaluation is not None
        return result.evaluation

    def refresh_status(self, reason: str = "status", *, record_events: bool = True) -> None:
        """Read Git and live state and save what ``status`` shows (nothing is applied).

        ``record_events=False`` for a look from the CLI: its Git credentials may differ from the
        daemon's, and what it sees must not be told to anyone as a transition.
        """
        try:
            self.pipeline.run(Request(Mode.PREVIEW, reason=reason, save_status=True, notify=record_events,
                                      exclude_running=True))
        except pipeline_mod.NoCommit:
            return  # nothing was ever read: status says no pass has run

    def automate(self) -> list[automation_mod.Look]:
        """Image automation's look for newer images, after a poll; a version it commits deploys on a pass."""
        return self.automator.look()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the executions dispatched so far end, and the status update after each (tests)."""
        self.dispatcher.wait(timeout)

    # ------------------------------------------------------------------ reading

    def status(self) -> status_mod.Document:
        doc = status_mod.view(
            status_mod.stamped(self.store.get(keys.STATUS) or {}, self.store.get(keys.STATUS_STAMP)),
            executions=self.store.executions(limit=20),
            paused=self.store.pauses(), freeze=self.store.get(keys.FREEZE),
            notifications=notify_outbox.status(self.store, self.config.notifications, self.clock.now()),
            ha=self.ha.status() if self.ha is not None else None,
        )
        doc["canaries"] = canary_mod.status(self.store)
        doc["automation"] = automation_mod.status(self.store)
        return doc

    def ready(self) -> tuple[bool, str]:
        now = self.clock.now()
        if self.ha is not None and self.background:
            ok, why = self.ha.healthy()
            if not ok:
                return False, why
        if not self.store.writable(now):
            return False, "state store is not writable"
        last = self.desired.last_read_ok
        if last is None:
            return False, "the repository has not been read yet"
        limit = max(3 * self.config.poll_interval_s, 60.0)
        if now - last > limit:
            return False, f"the repository was last read {now - last:.0f}s ago"
        return True, "ok"

    # ------------------------------------------------------------------ operations

    def approve(self, ident: str, *, by: str, comment: str = "") -> dict[str, Any]:
        return self.ops.approve(ident, by=by, comment=comment)

    def reject(self, ident: str, *, by: str, comment: str = "") -> dict[str, Any]:
        return self.ops.reject(ident, by=by, comment=comment)

    def decide_environment(self, application: str, environment: str, version: str, decision: str, *, by: str,
                           comment: str = "") -> dict[str, Any]:
        return self.ops.decide_environment(application, environment, version, decision, by=by, comment=comment)

    def pause(self, target: str, *, by: str, reason: str = "", force: bool = False) -> None:
        self.ops.pause(target, by=by, reason=reason, force=force)

    def resume(self, target: str, *, by: str) -> None:
        self.ops.resume(target, by=by)

    def freeze(self, *, by: str, reason: str) -> None:
        self.ops.freeze(by=by, reason=reason)

    def unfreeze(self, *, by: str) -> None:
        self.ops.unfreeze(by=by)

    def rollback(self, cluster: str, *, region: str | None = None, by: str = "cli"
                 ) -> list[executor_mod.ExecutionResult]:
        return self.ops.rollback(cluster, region=region, by=by)

    def prepare_rollback(self, cluster: str, *, region: str | None = None, by: str) -> list[model.Change]:
        return self.ops.prepare_rollback(cluster, region=region, by=by)

    # ------------------------------------------------------------------ lifecycle

    def apply_config(self, new: config_mod.Config) -> list[str]:
        """Make a reloaded config (already validated whole) the one every part uses; say what changed.

        It waits for a running pass, so no pass sees half of each. The repository URL, the state
        store and ``ha.enabled`` stay as they are (they need a restart). Providers whose account settings changed are
        built afresh on their next use; executions already running keep the instance they started
        with, which is closed with the engine.
        """
        with self.pass_lock:
            old = self.config
            new = dataclasses.replace(new, repo_url=old.repo_url, state_url=old.state_url, state_dir=old.state_dir,
                                      ha=dataclasses.replace(new.ha, enabled=old.ha.enabled))
            changed: list[str] = []
            if self.ha is not None and new.ha != old.ha:
                self.ha.settings = new.ha  # the next heartbeat uses the new timings
                changed.append("ha")
            changed += self.providers.reconfigure(new)
            self.config = new
            self.executor.settings = new.execution
            self.executor.hooks = new.verify
            self.executor.prometheus = new.prometheus
            if new.execution != old.execution:
                changed.append("execution")
            self.dispatcher.resize(new.execution.max_parallel)
            self.desired.reconfigure(new)
        for attr, label in (("branch", "repo.branch"), ("spec_path", "repo.path"), ("git", "repo credentials"),
                            ("allow_force_push", "repo.allow_force_push"), ("prune", "prune"),
                            ("allowed_signers", "repo.allowed_signers"), ("approval_ttl_s", "approvals.ttl"),
                            ("verify", "verify.endpoints"), ("prometheus", "analysis.prometheus")):
            if getattr(old, attr) != getattr(new, attr):
                changed.append(label)
        return changed

    def _interrupt_orphans(self) -> None:
        """Executions left 'running' by a dead process: mark them; the next pass re-plans from live."""
        for ex in self.store.active_executions():
            if ex.owner != self.store.owner and executor_mod.owner_dead(ex.owner):
                self.store.finish_execution(ex.id, self.clock.now(), state=model.ExecState.INTERRUPTED,
                                            error="the process running it died; resumed from live state")
                self.store.record("execution_interrupted", f"{ex.key}: resuming after a restart",
                                  self.clock.now(), application=ex.application, cluster=ex.cluster,
                                  region=ex.region, execution_id=ex.id, commit=ex.commit)

    def stop(self, deadline_s: float) -> bool:
        self.executor.stopping.set()
        self.clock.wake()
        return self.dispatcher.stop(deadline_s)

    def close(self) -> None:
        self.desired.close()  # first: a pass stuck on a template returns at once
        self.dispatcher.close()
        self.providers.close()
        if self.ha is not None:
            self.ha.close()
        self.store.close()

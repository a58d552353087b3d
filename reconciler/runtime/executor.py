"""Run planned steps against providers, durably.

Every step is recorded before it starts and after it ends; every step is
idempotent, so after a crash the engine re-plans from live state and the next
execution simply continues. An error becomes an outcome, never a dead loop:
transient provider errors are retried with backoff, a failed health wait rolls
the change back (DESIGN §4 step 6), and the runtime traffic guard refuses any
disable or shrink that would leave a serving cluster without healthy capacity.

Why it is this long: one step kind per branch of ``_run_step``, and the recording, retries, waves, runtime
traffic guard and rollback around them, form one state machine that must be read together to see that every
step is recorded before and after it runs; running rollouts in worker threads is in ``dispatch``.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import groupby

from providers import base as provider_base
from reconciler.config import settings as config_mod
from reconciler.core import backoff, errors, model
from reconciler.core import clock as clock_mod
from reconciler.core.model import Action, ExecState, Step, StepKind, StepState
from reconciler.core.strategies import canary as canary_strategy
from reconciler.core.strategies import rolling
from reconciler.notifications import history
from reconciler.runtime import canary, ha, metrics, rolling_state, verify
from reconciler.state import store as store_mod

log = logging.getLogger("reconciler.executor")  # the name log filters know; kept when the module moved

class Interrupted(errors.ReconcilerError):
    """The process is stopping; the execution stays resumable at a step boundary."""


@dataclass
class ExecutionResult:
    change: model.Change
    execution_id: str
    state: ExecState  # SUCCEEDED, FAILED, ROLLED_BACK, INTERRUPTED or SKIPPED
    error: str = ""
    steps_run: int = 0
    step: str = ""  # the kind of the step that failed, if one did


ProviderLookup = Callable[[str, str], provider_base.Provider]
Progress = Callable[[str], None]


@dataclass
class Executor:
    store: store_mod.Store
    providers: ProviderLookup
    clock: clock_mod.Clock
    settings: config_mod.ExecutionSettings = field(default_factory=config_mod.ExecutionSettings)
    stopping: threading.Event = field(default_factory=threading.Event)
    progress: Progress | None = None
    after_step: Callable[[], None] | None = None  # called after each step is recorded (the crash tests' hook)
    hooks: Mapping[str, config_mod.VerifyEndpoint] = field(default_factory=dict)  # verification endpoints
    prometheus: config_mod.PrometheusSettings | None = None  # canary analysis (config analysis.prometheus)
    claims: ha.Coordinator | None = None  # several replicas: claims replace leases, writes are fenced
    _held: threading.local = field(default_factory=threading.local)
    deploys: history.DeployTracker = field(init=False)

    def __post_init__(self) -> None:
        self.deploys = history.DeployTracker(self.store, self.clock)

    # ------------------------------------------------------------------ rollouts

    def run_rollouts(self, plan_id: str, changes: list[model.Change]) -> list[ExecutionResult]:
        """Run changes grouped by cluster; clusters in parallel, waves in order, regions of a wave in parallel.

        Destroys that wait for replacement clusters (``Change.after``) run last, once everything else
        of the run has ended, and each checks again that its replacements serve.
        """
        first = [c for c in changes if not (c.action is Action.DESTROY and c.after)]
        last = [c for c in changes if c.action is Action.DESTROY and c.after]
        results = self._run_parallel(plan_id, first)
        if last:
            results += self._run_parallel(plan_id, last)
        return results

    def _run_parallel(self, plan_id: str, changes: list[model.Change]) -> list[ExecutionResult]:
        key = lambda c: (c.application, c.cluster, c.provider, c.account)  # noqa: E731
        rollouts = [list(g) for _, g in groupby(sorted(changes, key=key), key=key)]
        self.deploys.started(plan_id, changes)
        if len(rollouts) <= 1:
            return [r for ro in rollouts for r in self.run_rollout(plan_id, ro)]
        with ThreadPoolExecutor(max_workers=self.settings.max_parallel, thread_name_prefix="rollout") as pool:
            futures = [pool.submit(self.run_rollout, plan_id, ro) for ro in rollouts]
            return [r for f in futures for r in f.result()]

    def run_rollout(self, plan_id: str, changes: list[model.Change]) -> list[ExecutionResult]:
        """One cluster across its regions, wave by wave; a failed wave stops the later ones."""
        results: list[ExecutionResult] = []
        try:
            self._run_waves(plan_id, changes, results)
        finally:
            self.deploys.rollout_ended(plan_id, changes, results)
        return results

    def _run_waves(self, plan_id: str, changes: list[model.Change], results: list[ExecutionResult]) -> None:
        waves = sorted({c.wave for c in changes})
        for i, wave in enumerate(waves):
            batch = [c for c in changes if c.wave == wave]
            if i > 0:
                spec = batch[0].desired
                pause = spec.rollout.pause_s if spec else 0.0
                if pause > 0:
                    self._say(f"{batch[0].cluster}: pausing {pause:.0f}s before wave {wave + 1}")
                    self._sleep(pause)
            if len(batch) == 1:
                wave_results = [self.run_change(plan_id, batch[0])]
            else:
                with ThreadPoolExecutor(max_workers=min(len(batch), self.settings.max_parallel),
                                        thread_name_prefix="region") as pool:
                    wave_results = list(pool.map(lambda c: self.run_change(plan_id, c), batch))
            results += wave_results
            bad = [r for r in wave_results if r.state is not ExecState.SUCCEEDED]
            if bad:
                for later in [c for c in changes if c.wave > wave]:
                    msg = (f"not started: wave {wave + 1} did not succeed in "
                           f"{', '.join(r.change.region for r in bad)}")
                    self.store.record("skipped", msg, self.clock.now(), application=later.application,
                                      cluster=later.cluster, region=later.region, commit=later.commit)
                    results.append(ExecutionResult(later, "", ExecState.SKIPPED, msg))
                break

    # ------------------------------------------------------------------ one change

    def run_change(self, plan_id: str, change: model.Change) -> ExecutionResult:
        if self.claims is not None:
            return self._run_claimed(self.claims, plan_id, change)
        now = self.clock.now()
        lease_key = change.key
        if not self._acquire(lease_key):
            holder = self.store.lease_holder(lease_key, now)
            msg = f"{change.key}: another execution holds the lease ({holder}); not started"
            self._say(msg)
            return ExecutionResult(change, "", ExecState.SKIPPED, msg)
        self._held.key = lease_key
        self._held.renewed = now
        try:
            self._abandon_stale(change)
            return self._run_locked(plan_id, change)
        except errors.ReconcilerError as exc:  # the store or the provider lookup, before any step ran
            msg = f"{change.key}: not started: {exc}"
            log.error("%s", msg, extra=_context(change))
            return ExecutionResult(change, "", ExecState.FAILED, msg)
        finally:
            self._held.key = None
            try:
                self.store.release_lease(lease_key)
            except errors.ReconcilerError as exc:
                log.warning("%s: could not release the lease (it expires by itself): %s", lease_key, exc)

    def _run_claimed(self, claims: ha.Coordinator, plan_id: str, change: model.Change) -> ExecutionResult:
        """With several replicas: run under this replica's claim, every store write fenced by it."""
        with claims.holding(change.key) as fence:
            if fence is None:
                msg = f"{change.key}: claimed by another replica (or the database is unreachable); not started"
                self._say(msg)
                return ExecutionResult(change, "", ExecState.SKIPPED, msg)
            self._held.fence = fence
            try:
                with self.store.fenced(fence):
                    self._abandon_stale(change)
                    return self._run_locked(plan_id, change)
            except errors.Fenced as exc:
                metrics.HA_FENCED.inc()
                log.warning("%s", exc, extra=_context(change))
                return ExecutionResult(change, "", ExecState.FENCED, str(exc))
            except errors.ReconcilerError as exc:
                msg = f"{change.key}: not started: {exc}"
                log.error("%s", msg, extra=_context(change))
                return ExecutionResult(change, "", ExecState.FAILED, msg)
            finally:
                self._held.fence = None

    def _abandon_stale(self, change: model.Change) -> None:
        """No zombies: executions of this cluster left running by an owner whose lease lapsed are closed."""
        for ex in self.store.active_executions():
            if ex.key == change.key and ex.owner != self.store.owner:
                msg = ("no progress: its process stopped renewing the lease; "
                       "the next execution continued from live state")
                self.store.finish_execution(ex.id, self.clock.now(), state=ExecState.ABANDONED, error=msg)
                self.store.record("execution_abandoned", msg, self.clock.now(), application=ex.application,
                                  cluster=ex.cluster, region=ex.region, execution_id=ex.id, commit=ex.commit)

    def _acquire(self, key: str) -> bool:
        now = self.clock.now()
        if self.store.acquire_lease(key, now, self.settings.lease_ttl_s):
            return True
        holder = self.store.lease_holder(key, now)
        if holder and owner_dead(holder):
            log.warning("taking over lease %s from dead owner %s", key, holder)
            return self.store.take_over_lease(key, holder, now, self.settings.lease_ttl_s)
        return False

    def _run_locked(self, plan_id: str, change: model.Change) -> ExecutionResult:
        provider = self.providers(change.provider, change.account)
        if change.action is Action.DESTROY and change.after:
            missing = self._replacements_missing(provider, change)
            if missing:
                msg = (f"not started: {', '.join(missing)} does not serve in {change.region} yet; "
                       f"{change.cluster} keeps serving {change.application} there")
                self.store.record("skipped", msg, self.clock.now(), application=change.application,
                                  cluster=change.cluster, region=change.region, commit=change.commit)
                self._say(f"{change.application}/{change.cluster} {change.region}: {msg}", change)
                return ExecutionResult(change, "", ExecState.SKIPPED, msg)
        self.store.clear_failures(change.key, keep=change.spec_hash)  # a new spec starts a new count
        now = self.clock.now()
        ex_id = self.store.start_execution(
            {
                "plan_id": plan_id, "change_id": change.change_id, "commit": change.commit,
                "key": change.key, "application": change.application, "cluster": change.cluster,
                "provider": change.provider, "account": change.account, "region": change.region,
                "action": change.action.value, "spec_hash": change.spec_hash,
                "change": change.reason,
            },
            [{"kind": s.kind.value, "server_group": s.server_group, "description": s.describe()}
             for s in change.steps],
            now,
        )
        metrics.EXECUTIONS_RUNNING.inc()
        try:
            return self._run_steps(ex_id, change)
        except Interrupted:
            self.store.finish_execution(ex_id, self.clock.now(), state=ExecState.INTERRUPTED,
                                        error="process stopping; the next pass continues from live state")
            return ExecutionResult(change, ex_id, ExecState.INTERRUPTED, "stopping")
        except errors.Fenced:
            raise
        except Exception as exc:  # a bug or an SDK surprise outside any step: the execution still ends
            return self._crashed(ex_id, change, exc)
        finally:
            metrics.EXECUTIONS_RUNNING.dec()

    def _run_steps(self, ex_id: str, change: model.Change) -> ExecutionResult:
        provider = self.providers(change.provider, change.account)
        ctx = f"{change.application}/{change.cluster} {change.region}"
        self.store.record("execution_started", f"{change.action.value} {change.desired_server_group or ''}"
                          f" ({change.reason})", self.clock.now(), application=change.application,
                          cluster=change.cluster, region=change.region, execution_id=ex_id, commit=change.commit)
        self._say(f"{ctx}: {change.action.value} ({change.reason})", change, ex_id)
        result = ExecutionResult(change, ex_id, ExecState.SUCCEEDED)
        rolling_state.remember(self.store, change, self.clock.now())
        canary.remember(self.store, change, self.clock.now())
        disabled_any = False
        for idx, step in enumerate(change.steps):
            self._check_stop()
            self.store.step_started(ex_id, idx, self.clock.now())
            self._say(f"{ctx}: {step.describe()}", change, ex_id)
            try:
                self._run_step(provider, change, step)
            except Interrupted:
                self.store.step_ended(ex_id, idx, self.clock.now(), state=StepState.INTERRUPTED)
                raise
            except errors.Fenced:
                raise  # the claim moved: nothing more is written or called; the new holder continues
            except Exception as exc:
                failure = _as_error(exc, change, f"step {step.kind.value} {step.server_group}")
                self.store.step_ended(ex_id, idx, self.clock.now(), state=StepState.FAILED, error=str(failure))
                return self._fail(ex_id, change, step, failure, provider, disabled_any)
            self.store.step_ended(ex_id, idx, self.clock.now(), state=StepState.DONE)
            result.steps_run += 1
            if step.kind is StepKind.DISABLE and step.reason != canary_strategy.REMOVE_BASELINE:
                disabled_any = True  # a canary's baseline leaving is not the serving group leaving
            if self.after_step is not None:
                self.after_step()
        self.store.finish_execution(ex_id, self.clock.now(), state=ExecState.SUCCEEDED)
        self.store.clear_failures(change.key)
        rolling_state.ended(self.store, change, self.clock.now())
        canary.ended(self.store, change)
        metrics.CHANGES.labels(change.action.value, "applied").inc()
        self.store.record("execution_succeeded", f"{change.action.value} done: "
                          f"{change.desired_server_group or change.cluster} serves", self.clock.now(),
                          application=change.application, cluster=change.cluster, region=change.region,
                          execution_id=ex_id, commit=change.commit)
        self._say(f"{ctx}: done", change, ex_id)
        return result

    def _crashed(self, ex_id: str, change: model.Change, exc: Exception) -> ExecutionResult:
        """End the execution as failed (counted like any failure, so it backs off, then stalls)."""
        failure = _as_error(exc, change, "the execution")
        now = self.clock.now()
        try:
            count = self.store.add_failure(change.key, change.spec_hash, str(failure), now)
            self.store.finish_execution(ex_id, now, state=ExecState.FAILED, error=str(failure))
            self.store.record("execution_failed", f"{failure} (attempt {count})", now,
                              application=change.application, cluster=change.cluster, region=change.region,
                              execution_id=ex_id, commit=change.commit)
        except errors.ReconcilerError as store_exc:
            log.error("%s: cannot record the failure of execution %s: %s", change.key, ex_id, store_exc,
                      extra=_context(change, ex_id))
        metrics.CHANGES.labels(change.action.value, "failed").inc()
        return ExecutionResult(change, ex_id, ExecState.FAILED, str(failure))

    # ------------------------------------------------------------------ steps

    def _run_step(self, provider: provider_base.Provider, change: model.Change, step: Step) -> None:
        region = change.region
        if step.kind is StepKind.CREATE:
            assert change.desired is not None and step.capacity is not None
            spec = change.desired
            req = provider_base.CreateRequest(
                name=step.server_group, application=change.application, cluster=change.cluster,
                region=region, launch=spec.launch, capacity=step.capacity, spec_hash=change.spec_hash,
                commit=change.commit, autoscaling=spec.autoscaling,
            )
            self._retry(change, "create", lambda: provider.create_server_group(req))
            self.store.put(_unproven_key(change, step.server_group), True, self.clock.now())
        elif step.kind is StepKind.WAIT_HEALTHY:
            self._wait_healthy(provider, change, step)
            if _proven_by_wait(change, step):
                self.store.put(_unproven_key(change, step.server_group), False, self.clock.now())
        elif step.kind is StepKind.BASELINE:
            self._create_baseline(provider, change, step)
        elif step.kind is StepKind.ANALYZE:
            canary.Analyzer(self.store, self.clock, self._sleep, self.prometheus).run(change, step)
        elif step.kind is StepKind.JUDGMENT:  # the selection ran this change only once it was approved
            if step.percent:  # a rolling step's
                rolling_state.approved(self.store, change, step.percent, self.clock.now())
            else:
                canary.approved(self.store, change, self.clock.now())
        elif step.kind is StepKind.VERIFY:  # a group is proven once its last hook passed
            self._check_stop()
            verify.ask(self.hooks, change, step)
            last = [s for s in change.steps if s.kind is StepKind.VERIFY and s.server_group == step.server_group]
            if step is last[-1]:
                self.store.put(_unproven_key(change, step.server_group), False, self.clock.now())
        elif step.kind is StepKind.ENABLE:
            self._retry(change, "enable", lambda: provider.enable(region, step.server_group))
        elif step.kind is StepKind.DISABLE:
            if change.action is not Action.DESTROY:
                self._traffic_guard(provider, change, step.server_group, "disable")
            self._retry(change, "disable", lambda: provider.disable(region, step.server_group))
        elif step.kind is StepKind.RESIZE:
            assert step.capacity is not None
            cap = step.capacity
            if cap.desired == 0:
                self._traffic_guard(provider, change, step.server_group, "scale down")
            self._retry(change, "resize", lambda: provider.resize(region, step.server_group, cap))
        elif step.kind is StepKind.DELAY:
            self._sleep(step.seconds)
        elif step.kind is StepKind.DESTROY:
            if change.action is not Action.DESTROY:
                self._traffic_guard(provider, change, step.server_group, "destroy")
            self._retry(change, "destroy", lambda: provider.destroy(region, step.server_group))

    def _create_baseline(self, provider: provider_base.Provider, change: model.Change, step: Step) -> None:
        """A group of the serving version (``step.reason``, read live) at the canary's size, out of traffic."""
        assert step.capacity is not None
        source = next((g for g in provider.list_server_groups(change.region) if g.name == step.reason), None)
        if source is None:
            raise errors.ReconcilerError(f"baseline {step.server_group}: the serving group {step.reason} is gone "
                                         f"from {change.region}")
        req = provider_base.CreateRequest(
            name=step.server_group, application=change.application, cluster=change.cluster, region=change.region,
            launch=source.launch, capacity=step.capacity, spec_hash=source.spec_hash, commit=source.commit,
            autoscaling=False)
        self._retry(change, "create", lambda: provider.create_server_group(req))

    def _retry(self, change: model.Change, call: str, fn: Callable[[], object]) -> None:
        waits = backoff.delays(self.settings.step_backoff_s, maximum=30.0)
        retries = max(self.settings.step_retries, 1)
        for attempt in range(1, retries + 1):
            self._check_stop()
            try:
                metrics.API_CALLS.labels(change.provider, call).inc()
                fn()
                return
            except errors.ProviderError as exc:
                metrics.API_ERRORS.labels(change.provider, type(exc).__name__).inc()
                if not exc.retryable or attempt == retries:
                    raise
                delay = next(waits)
                log.warning("%s: %s failed (%s); retry %d/%d in %.1fs", change.key, call, exc,
                            attempt, retries - 1, delay)
                self._sleep(delay)

    def _wait_healthy(self, provider: provider_base.Provider, change: model.Change, step: Step) -> None:
        start = self.clock.now()
        name = step.server_group
        last = model.Health(0, 0, 0)
        while True:
            self._check_stop()
            try:
                last = provider.health(change.region, name)
            except errors.ProviderError as exc:
                if not exc.retryable:
                    raise
                log.warning("%s: health read failed (%s); retrying", change.key, exc)
            else:
                if last.satisfies(step.healthy_percent):
                    return
            elapsed = self.clock.now() - start
            if elapsed >= step.seconds:
                raise errors.ReconcilerError(
                    f"{name} in {change.region}: {last.healthy} of {last.desired} instances healthy "
                    f"after {model._fmt_seconds(elapsed)} (needs {step.healthy_percent}% within "
                    f"{model._fmt_seconds(step.seconds)})"
                )
            self._sleep(min(self.settings.poll_health_s, max(step.seconds - elapsed, 0.01)))

    def _replacements_missing(self, provider: provider_base.Provider, change: model.Change) -> list[str]:
        """The clusters in ``change.after`` that do not serve now, while the doomed cluster still does
        (read live: a saved plan may be applied long after it was made)."""
        own = [g for g in provider.list_server_groups(change.region) if g.cluster == change.cluster]
        if not any(g.managed and g.enabled and g.healthy > 0 for g in own):
            return []
        missing: list[str] = []
        for key in change.after:
            prov_name, account, region, cluster = model.split_key(key)
            try:
                groups = self.providers(prov_name, account).list_server_groups(region)
            except errors.ReconcilerError:
                groups = []
            if not any(g.cluster == cluster and g.managed and g.enabled and g.healthy > 0 for g in groups):
                missing.append(cluster)
        return missing

    def _traffic_guard(self, provider: provider_base.Provider, change: model.Change, name: str, what: str) -> None:
        """Refuse to take ``name`` out of service if it is the cluster's last healthy enabled capacity."""
        groups = [g for g in provider.list_server_groups(change.region) if g.cluster == change.cluster]
        target = next((g for g in groups if g.name == name), None)
        if target is None or not target.enabled or target.healthy == 0:
            return
        others = [g for g in groups if g.name != name and g.enabled and g.healthy > 0]
        if not others:
            raise errors.PolicyDenied(
                f"traffic guard: refusing to {what} {name} in {change.region}: it is the last group of "
                f"{change.cluster} with healthy enabled capacity ({target.healthy} healthy)"
            )

    # ------------------------------------------------------------------ failure

    def _fail(self, ex_id: str, change: model.Change, step: Step, exc: errors.ReconcilerError,
              provider: provider_base.Provider, disabled_any: bool) -> ExecutionResult:
        now = self.clock.now()
        reason = f"{step.kind.value} {step.server_group} failed: {exc}"
        count = self.store.add_failure(change.key, change.spec_hash, reason, now)
        detail = history.change_detail(change) | {"step": step.kind.value, "error": history.redact(str(exc)),
                                                   "attempt": count}
        metrics.CHANGES.labels(change.action.value, "failed").inc()
        self._say(f"{change.application}/{change.cluster} {change.region}: FAILED: {reason}", change, ex_id)
        spec = change.desired
        target = change.desired_server_group
        can_roll_back = (
            spec is not None and spec.strategy.rollback_on_failure and target is not None
            and not disabled_any and change.action in (Action.CREATE, Action.REPLACE, Action.ROLLBACK)
        )
        if not can_roll_back or target is None:
            self.store.finish_execution(ex_id, now, state=ExecState.FAILED, error=reason)
            self.store.record("execution_failed", f"{reason} (attempt {count})", now,
                              application=change.application, cluster=change.cluster, region=change.region,
                              execution_id=ex_id, commit=change.commit, detail=detail)
            return ExecutionResult(change, ex_id, ExecState.FAILED, reason, step=step.kind.value)
        undo: list[Step] = self._remove_baseline(provider, change)
        unproven = bool(self.store.get(_unproven_key(change, target), False))
        if change.restore and spec is not None:  # (a canary's baseline first, then: rolling_red_black)
            undo += rolling.undo_steps(change, spec.health.timeout_s, spec.health.healthy_percent)
        elif change.action is Action.ROLLBACK:
            undo += [Step(StepKind.DISABLE, target, reason="undo rollback"),
                    Step(StepKind.RESIZE, target, capacity=model.Capacity(0, 0, 0), reason="undo rollback")]
        elif unproven:
            undo += [Step(StepKind.DISABLE, target, reason="roll back"),
                     Step(StepKind.DESTROY, target, reason="roll back failed group")]
        else:
            undo += [Step(StepKind.DISABLE, target, reason="roll back")]
        start = self.store.add_steps(ex_id, [{"kind": s.kind.value, "server_group": s.server_group,
                                              "description": s.describe()} for s in undo])
        rb_error = ""
        for i, s in enumerate(undo):
            self.store.step_started(ex_id, start + i, self.clock.now())
            try:
                self._undo_step(provider, change, s)
            except errors.Fenced:
                raise
            except Exception as rb_exc:
                rb_error = str(_as_error(rb_exc, change, f"rollback step {s.kind.value} {s.server_group}"))
                self.store.step_ended(ex_id, start + i, self.clock.now(), state=StepState.FAILED, error=rb_error)
                break
            self.store.step_ended(ex_id, start + i, self.clock.now(), state=StepState.DONE)
        if not rb_error and unproven:
            self.store.put(_unproven_key(change, target), False, self.clock.now())
        if not rb_error:
            rolling_state.forget(self.store, change)
            canary.forget(self.store, change)
        state = ExecState.FAILED if rb_error else ExecState.ROLLED_BACK
        message = f"{reason}; " + (f"rollback failed: {rb_error}" if rb_error else
                                   f"rolled back ({', '.join(s.describe() for s in undo)}); "
                                   + self._who_serves(provider, change, target))
        self.store.finish_execution(ex_id, self.clock.now(), state=state, error=message)
        self.store.record("execution_" + state, f"{message} (attempt {count})", self.clock.now(),
                          application=change.application, cluster=change.cluster, region=change.region,
                          execution_id=ex_id, commit=change.commit,
                          detail=detail | ({"rollback_error": history.redact(rb_error)} if rb_error else {}))
        metrics.CHANGES.labels(change.action.value, state).inc()
        self._say(f"{change.application}/{change.cluster} {change.region}: {state.replace('_', ' ')}")
        return ExecutionResult(change, ex_id, state, message, step=step.kind.value)

    def _remove_baseline(self, provider: provider_base.Provider, change: model.Change) -> list[Step]:
        """A failed canary: its baseline goes too, if it exists (the serving group is never touched)."""
        name = canary.baseline(self.store, change) if change.desired and change.desired.strategy.canary else ""
        if not name or not any(g.name == name for g in provider.list_server_groups(change.region)):
            return []
        return [Step(StepKind.DISABLE, name, reason="roll back: remove the baseline"),
                Step(StepKind.DESTROY, name, reason="roll back: remove the baseline")]

    def _who_serves(self, provider: provider_base.Provider, change: model.Change, target: str) -> str:
        """After a rollback, say truthfully what still serves (never claim a previous group that is not there)."""
        try:
            groups = [g for g in provider.list_server_groups(change.region)
                      if g.managed and g.enabled and g.healthy > 0 and g.name != target]
        except errors.ReconcilerError as exc:
            return f"could not read what serves now: {exc}"
        own = [g.name for g in groups if g.cluster == change.cluster]
        if own:
            return f"{', '.join(own)} keeps serving"
        app = [g.name for g in groups if g.application == change.application]
        if app:
            return f"no group of {change.cluster} serves in {change.region}; {change.application} is served by " \
                   f"{', '.join(app)}"
        return f"nothing of {change.application} serves in {change.region}"

    def _undo_step(self, provider: provider_base.Provider, change: model.Change, s: Step) -> None:
        region, name = change.region, s.server_group
        if s.kind is StepKind.DISABLE:
            self._traffic_guard(provider, change, name, "disable")
            self._retry(change, "disable", functools.partial(provider.disable, region, name))
        elif s.kind is StepKind.DESTROY:
            self._retry(change, "destroy", functools.partial(provider.destroy, region, name))
        elif s.kind is StepKind.RESIZE and s.capacity is not None:
            self._retry(change, "resize", functools.partial(provider.resize, region, name, s.capacity))
        elif s.kind is StepKind.WAIT_HEALTHY:
            self._wait_healthy(provider, change, s)

    # ------------------------------------------------------------------ helpers

    def _check_stop(self) -> None:
        if self.stopping.is_set():
            raise Interrupted("stopping")
        fence = getattr(self._held, "fence", None)
        if fence is not None and self.claims is not None and not self.claims.holds(fence):
            raise errors.Fenced(f"{fence.key}: this replica's claim lapsed or moved; stopping before the next call")
        key = getattr(self._held, "key", None)
        if not key:
            return
        now = self.clock.now()
        if now - getattr(self._held, "renewed", 0.0) < self.settings.lease_ttl_s / 4:
            return  # renewed recently: the lease holds for three quarters of its TTL more
        if not self.store.renew_lease(key, now, self.settings.lease_ttl_s):
            raise Interrupted(f"lost the lease on {key}: another process took the cluster over")
        self._held.renewed = now

    def _sleep(self, seconds: float) -> None:
        self._check_stop()
        self.clock.sleep(seconds)
        self._check_stop()

    def _say(self, message: str, change: model.Change | None = None, ex_id: str = "") -> None:
        log.info("%s", message, extra={} if change is None else _context(change, ex_id))
        if self.progress is not None:
            self.progress(message)


def _context(change: model.Change, ex_id: str = "") -> dict[str, str]:
    """The log context of one change (see logs.CONTEXT_FIELDS)."""
    return {"application": change.application, "cluster": change.cluster, "region": change.region,
            "commit": change.commit[:12], "execution_id": ex_id}


def _as_error(exc: Exception, change: model.Change, what: str) -> errors.ReconcilerError:
    """Our own errors as they are; anything else is logged with its traceback and wrapped, never lost."""
    if isinstance(exc, errors.ReconcilerError):
        return exc
    log.error("%s: %s raised %s: %s", change.key, what, type(exc).__name__, exc, exc_info=exc,
              extra=_context(change))
    return errors.ReconcilerError(f"unexpected {type(exc).__name__} in {what}: {exc}")


def _proven_by_wait(change: model.Change, step: Step) -> bool:
    """A group is proven by its health wait unless hooks judge it (then by its last hook), or a canary
    analysis does (then by its last wait, at full capacity, after the analysis passed)."""
    mine = [s for s in change.steps if s.server_group == step.server_group]
    if any(s.kind is StepKind.VERIFY for s in mine):
        return False
    if any(s.kind is StepKind.ANALYZE for s in mine):
        return step is [s for s in mine if s.kind is StepKind.WAIT_HEALTHY][-1]
    return True


def _unproven_key(change: model.Change, name: str) -> str:
    return f"unproven/{change.provider}/{change.account}/{change.region}/{name}"


def owner_dead(owner: str) -> bool:
    """An owner ``host:pid:nonce`` on this host whose process is gone."""
    parts = owner.split(":")
    if len(parts) != 3 or parts[0] != os.uname().nodename:
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False

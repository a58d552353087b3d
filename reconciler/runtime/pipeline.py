"""THE reconcile pass, in one place: read desired -> read live -> plan -> judge -> select -> execute -> record.

Every entry point runs it: ``reconciler plan`` and the console's preview (``Mode.PREVIEW``: nothing
runs), ``reconciler apply`` and ``run --once`` (``Mode.APPLY``: changes run now, in this thread), the
daemon's passes, whether polled, scheduled or triggered over HTTP (``Mode.BACKGROUND``: changes start
in worker threads), approvals (a preview: a decision binds to the plan in force) and ``status``
(a preview that saves what it saw). What differs between them is a ``Request``, never a copy of the
chain.

A background rollout that ends does not cause another pass: ``settle`` re-reads only the regions
it touched and re-judges the desired state of the last pass (no Git read, no spec parsing), so
status tells the truth until the next pass.

Why it is this long: the pass, the inputs ``evaluate`` names and the two ways it is cut short (the
unchanged pass's memo, and ``plan``'s answers persisted across runs, asked through ``Request.reuse``
with the digest of the same inputs) belong together: both short cuts are only as right as that one
list, so it stays beside the code that reads each input.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from policies import approvals as policy_approvals
from policies import base as policy_base
from policies import per_cluster as policy_per_cluster
from policies import windows as policy_windows
from reconciler.config import settings as config_mod
from reconciler.core import backoff, errors, memo, model, planner, resource_plan, selection
from reconciler.core import clock as clock_mod
from reconciler.core.resources import ResourceChange
from reconciler.runtime import canary, collector, metrics, promotion, rolling_state, status_record
from reconciler.runtime import desired as desired_mod
from reconciler.runtime import dispatch as dispatch_mod
from reconciler.runtime import executor as executor_mod
from reconciler.runtime import ha as ha_mod
from reconciler.runtime import live as live_mod
from reconciler.runtime import resources as resources_rt
from reconciler.state import keys
from reconciler.state import store as store_mod
from specs import policy_file


class Mode(enum.Enum):
    """What a pass does with the changes it selects."""

    PREVIEW = "preview"  # nothing runs: plan, the console's preview, approvals, status
    APPLY = "apply"  # they run now, in this thread: apply, run --once
    BACKGROUND = "background"  # they start in worker threads: the daemon


RUNS: collections.Counter[Mode] = collections.Counter()
"""Passes run in this process, by mode: the proof (tests) that every entry point comes through here."""


class NoCommit(errors.SourceError):
    """Nothing was ever read from the repository: there is no commit to plan."""


class Gate(Protocol):
    """A caller's say between the steps of a pass (``apply``: the saved plan's checks, the prompt)."""

    def source(self, commit: str | None, error: str | None) -> None:
        """Raise to refuse the commit in force (or the lack of one)."""

    def proceed(self, ev: Evaluation) -> bool:
        """Raise to refuse the plan; False runs and records nothing."""


@dataclass(frozen=True, slots=True)
class Request:
    """One pass: its mode and where its desired and live state come from."""

    mode: Mode
    reason: str = "poll"
    ref: str | None = None  # plan --ref: desired at this ref instead of the branch head
    base: str | None = None  # plan --base: against desired at BASE (PR previews)
    reader: desired_mod.TreeReader | None = None  # a local checkout instead of the mirror
    offline: bool = False  # with ``base``: no cloud access (live as last seen, or as BASE applied)
    strict_source: bool = False  # a source error refuses the pass instead of keeping the last good commit
    no_commit: str = "no commit could be read"  # the error when nothing was ever read
    save_status: bool = False  # a preview that saves what ``status`` shows (APPLY and BACKGROUND always do)
    notify: bool = True  # saved status feeds notifications (False for a look from the CLI)
    exclude_running: bool | None = None  # hold changes of running clusters (default: in BACKGROUND)
    settle: bool = False  # APPLY: status shows the executed regions read again (apply), not the plan (run --once)
    gate: Gate | None = None
    environment: str | None = None  # apply --env: only this environment's changes
    reuse: Reuse | None = None  # plan: an answer persisted by an earlier run for the very same inputs


class Reuse(Protocol):
    """``reconciler plan``'s persisted answers, asked before planning with the digest of every input."""

    def __call__(self, digest: str) -> object | None:
        """The answer kept for inputs with this digest (the pass then stops), or None (it plans)."""


@dataclass(frozen=True, slots=True)
class Reused:
    """A pass that stopped before planning: ``answer`` is what ``Request.reuse`` kept for ``digest``."""

    digest: str
    answer: object


class _Answered(Exception):
    """Not an error: the way out of ``evaluate`` to ``run`` when a persisted answer ends the pass."""

    def __init__(self, reused: Reused) -> None:
        super().__init__(reused.digest)
        self.reused = reused


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A judged plan and what the planner skipped, before anything runs."""

    desired: model.DesiredState
    live: planner.LiveState
    outcome: planner.Outcome
    plan: model.Plan
    runnable: tuple[model.Change, ...]
    held: tuple[tuple[model.Change, model.Held], ...]  # change, why it is not run now
    source_error: str | None = None  # why the branch head is not the commit in force
    policy_file: policy_file.PolicySettings | None = None  # what it was judged with (to judge it again)
    resources_runnable: tuple[ResourceChange, ...] = ()  # run before the clusters
    resources_held: tuple[tuple[ResourceChange, model.Held], ...] = ()
    promo: promotion.Promotion = dataclasses.field(default_factory=promotion.Promotion)  # environment gates


@dataclass(frozen=True, slots=True)
class PassResult:
    commit: str | None
    new_commit: bool
    changes: int
    dispatched: int
    problems: int
    error: str | None
    results: tuple[executor_mod.ExecutionResult, ...] = ()
    evaluation: Evaluation | None = None
    resource_results: tuple[resources_rt.ResourceResult, ...] = ()
    resource_waiting: int = 0  # cluster changes held because a resource they name was not created
    reused: Reused | None = None  # PREVIEW with ``Request.reuse``: the persisted answer (no evaluation)


class Pipeline:
    """The pass and its locks; the composition root (``runtime.engine``) builds one per process."""

    def __init__(self, *, config: Callable[[], config_mod.Config], store: store_mod.Store, clock: clock_mod.Clock,
                 desired: desired_mod.DesiredSource, live: live_mod.LiveReader, executor: executor_mod.Executor,
                 dispatcher: dispatch_mod.Dispatcher, background: bool,
                 ha: ha_mod.Coordinator | None = None, remember: bool = True) -> None:
        self._config = config  # the config in force (a reload replaces it between passes)
        self.store = store
        self.clock = clock
        self.desired = desired
        self.live = live
        self.executor = executor
        self.dispatcher = dispatcher
        self.background = background
        self.ha = ha  # several replicas on one database: a background pass runs only its claimed share
        self.lock = threading.RLock()  # one pass at a time; one reader of the mirror
        self._settle_lock = threading.Lock()
        self._to_settle: list[model.Change] = []  # ended rollouts whose regions status has not re-read
        self._last: Evaluation | None = None  # the evaluation status shows
        self.evaluations: memo.LastResult[Evaluation] = memo.LastResult()  # an unchanged pass decides nothing anew
        self.status = status_record.StatusRecorder(store)  # a reused evaluation's document is not rewritten
        # a one-file commit plans its clusters and judges them, the rest is reused; a process of one pass
        # (``plan``, ``status``) has no next pass to reuse them in, and keeps no inputs of 10,000 clusters for it
        self.clusters: memo.PerKey[model.Change | None] = memo.PerKey(keep=remember)
        self.verdicts: policy_per_cluster.Memo = memo.PerKey(keep=remember)

    # ------------------------------------------------------------------ the pass

    def run(self, req: Request) -> PassResult:
        with self.lock, collector.paused():
            RUNS[req.mode] += 1
            t0 = time.monotonic()
            try:
                return self._run(req)
            finally:
                if req.mode is not Mode.PREVIEW:
                    metrics.PASS_DURATION.observe(time.monotonic() - t0)

    def _run(self, req: Request) -> PassResult:
        previous: str | None = self.store.get(keys.LAST_GOOD)
        commit, source_error, reader = self._commit(req)
        accounts = not req.offline or self._config().path is not None  # offline without a config: providers only
        want = self.desired.at(commit, reader, check_accounts=accounts, resolve_images=not req.offline)
        try:
            ev = self._judge(req, want, source_error)
        except _Answered as answered:
            return PassResult(commit, commit != previous, 0, 0, len(want.state.problems), source_error,
                              reused=answered.reused)
        if req.environment is not None:
            ev = promotion.only_environment(ev, req.environment)
        if req.gate is not None and not req.gate.proceed(ev):
            return self._result(ev, previous, dispatched=0)
        if req.mode is Mode.PREVIEW:
            if req.save_status:
                self._record_status(ev, req.reason, notify=req.notify)
            return self._result(ev, previous, dispatched=0)
        now = self.clock.now()
        metrics.SPEC_ERRORS.set(len(want.state.problems))
        if source_error is None:
            self.store.put(keys.LAST_GOOD, commit, now)
        if commit != previous:
            self.store.record("commit", f"reconciling {commit[:8]} ({req.reason})", now, commit=commit)
        self.live.remember_regions(ev.plan)
        _count(ev)
        results: list[executor_mod.ExecutionResult] = []
        dispatched = 0
        runnable, res_todo = list(ev.runnable), list(ev.resources_runnable)
        res_elsewhere: list[ResourceChange] = []
        if self.ha is not None and req.mode is Mode.BACKGROUND:  # several replicas: this one's claimed share
            runnable, res_todo, res_elsewhere = ha_mod.claim_step(
                self.ha, runnable, res_todo, want.state, self.dispatcher.running(),
                self._config().execution.max_parallel)
        ready = len(runnable)
        # load balancers and security groups first, in this thread; a cluster naming one not created waits
        res_results, runnable = resources_rt.run_first(self.executor, ev.plan.plan_id, res_todo, runnable,
                                                       elsewhere=res_elsewhere)
        if res_results:
            ev = self._after_resources(ev, res_results)
        if runnable and req.mode is Mode.BACKGROUND:
            # status first: a rollout that ends at once then updates it from its own regions (``settle``)
            self._record_status(ev, req.reason, notify=req.notify)
            dispatched = self.dispatcher.dispatch(ev.plan.plan_id, runnable)
        elif runnable:
            results = self.executor.run_rollouts(ev.plan.plan_id, runnable)
            dispatched = len(runnable)
            freed = resources_rt.run_freed(self.executor, ev.plan.plan_id, ev.resources_runnable, results)
            if freed:  # resources the destroyed groups were the last to use
                ev, res_results = self._after_resources(ev, freed), res_results + freed
            self._record_status(self._after(ev, runnable) if req.settle else ev, req.reason, notify=req.notify)
        else:
            self._record_status(ev, req.reason, notify=req.notify)
        if source_error is None and not want.state.problems:
            metrics.LAST_SUCCESS.set(self.clock.now())
        return dataclasses.replace(self._result(ev, previous, dispatched=dispatched, results=results),
                                   resource_results=tuple(res_results),
                                   resource_waiting=ready - len(runnable))

    def _after_resources(self, ev: Evaluation, results: Iterable[resources_rt.ResourceResult]) -> Evaluation:
        """``ev`` with the regions of the resource changes that ran read again (status shows them done)."""
        regions = {(r.change.provider, r.change.account, r.change.region) for r in results}
        live = self.live.refreshed(ev.live, regions)
        return dataclasses.replace(ev, live=live)

    def _commit(self, req: Request) -> tuple[str, str | None, desired_mod.TreeReader | None]:
        """The commit to plan, the source error (the head is not in force), and the reader of its tree."""
        if req.reader is not None:  # a local checkout: the mirror is not read
            return req.reader.resolve(req.ref or "HEAD"), None, req.reader
        head, err = self.desired.fetch()
        if req.gate is not None:
            req.gate.source(head, err)
        if req.ref:
            return self.desired.git.resolve(req.ref), None, None
        if head is None:
            raise NoCommit(err or req.no_commit)
        if err is not None and req.strict_source:
            raise errors.SourceError(f"{err}; {head[:8]} stays in force")
        return head, err, None

    def _judge(self, req: Request, want: desired_mod.Desired, source_error: str | None) -> Evaluation:
        exclude = req.mode is Mode.BACKGROUND if req.exclude_running is None else req.exclude_running
        if req.base is None:
            return self.evaluate(want, exclude_running=exclude, source_error=source_error, reuse=req.reuse)
        src = req.reader or self.desired.git
        base_commit = src.resolve(req.base)
        base = self.desired.at(base_commit, req.reader,
                               check_accounts=not req.offline or self._config().path is not None,
                               resolve_images=not req.offline)
        live = self.live.assumed(base.state) if req.offline else self.live.read(want.state)
        return self.evaluate(want, live=live, base_commit=base_commit, exclude_running=exclude,
                             app_files={n: a.source.file for n, a in base.state.applications.items()},
                             source_error=source_error, reuse=req.reuse)

    def evaluate(self, want: desired_mod.Desired, *, live: planner.LiveState | None = None, base_commit: str = "",
                 exclude_running: bool = True, app_files: dict[str, str] | None = None,
                 source_error: str | None = None, reuse: Reuse | None = None) -> Evaluation:
        """Plan ``want`` against live state (read now unless given), judge it, select what runs now.

        With ``reuse``, the digest of every input is asked first: an answer persisted for it ends the
        pass (``_Answered``, caught by ``run``) before anything is planned."""
        now = self.clock.now()
        desired = want.state
        # running at any time since live was read: that read may predate a rollout's end
        running_before = self.dispatcher.running() if exclude_running else set()
        live = live if live is not None else self.live.read(desired)
        observed = not base_commit  # live state as it is (not a PR preview's): its environment facts are kept
        stalled, backing_off = failure_state(self.store, self._config().execution, now)
        pauses = self.store.pauses()
        files: dict[str, str] = {**(self.store.get(keys.APP_FILES, {}) or {}), **(app_files or {})}
        origins = rolling_state.origins(self.store)
        judgments = rolling_state.judgments(self.store)
        canaries = canary.progress(self.store)
        freeze_switch = self.store.get(keys.FREEZE)
        signature = self.desired.signature(desired.commit, want.policies)
        approvals = valid_approvals(self.store, now)
        running = running_before | self.dispatcher.running() if exclude_running else set()
        # environment facts advance every pass (soaks, approvals, healthy-since): judged before the memo, and
        # their gates are one of its inputs, so a soak that ends with the clock is never answered from memory
        promo = promotion.evaluate(self.store, desired, live, now, record=observed)
        clock_verdicts = policy_windows.clock_view(want.policies, desired, live.groups, now)
        inputs = memo.Inputs(tuple(desired.applications.values()), (  # every input of what follows
            tuple(desired.applications), desired.commit, desired.problems, desired.broken_files, desired.notices,
            desired.unread_files, live.groups, live.unreadable, live.resources, want.policies, stalled, backing_off,
            pauses, planner.files_read(files, live.groups), origins, canaries, judgments, freeze_switch,
            signature, approvals, running, base_commit, self._config().prune, self.background, source_error, promo,
            clock_verdicts))
        reused = self.evaluations.get(inputs)
        if reused is not None:
            return reused
        digest = memo.digest(inputs) if reuse is not None else None
        answer = reuse(digest) if reuse is not None and digest is not None else None
        if digest is not None and answer is not None:
            raise _Answered(Reused(digest, answer))
        desired = resource_plan.hold_unknown_references(desired, live.resource_inputs())
        outcome = planner.plan(desired, live, planner.Options(
            prune=self._config().prune, stalled=stalled, paused=frozenset(pauses), base_commit=base_commit,
            app_files=files, rolling_origins=origins, canaries=canaries, rolling_judgments=judgments,
            clusters=self.clusters))
        ctx = policy_base.PolicyContext(
            now=now, live=live.groups, desired=desired, prune=self._config().prune, policy_file=want.policies,
            freeze_switch=policy_base.Freeze(str(freeze_switch.get("by") or ""), str(freeze_switch.get("reason") or ""))
            if freeze_switch else None,
            commit_signature=signature, approvals=approvals, paused=frozenset(pauses), resources=live.resources,
        )
        judged = policy_per_cluster.judge(outcome.plan, ctx, clusters=self.verdicts, clock=clock_verdicts)
        runnable, held = selection.select(
            judged, lambda c: policy_approvals.is_approved(c, judged, ctx), running=running,
            backing_off=backing_off, skipped=outcome.skipped, same_run=not self.background,
        )
        res_run, res_held = resources_rt.select(
            judged.resource_changes, lambda c: policy_approvals.is_approved(c, judged, ctx),
            backing_off=backing_off, plan_denied=any(v.verdict is model.Verdict.DENY for v in judged.plan_verdicts))
        runnable, waiting = resources_rt.hold_dependents(runnable, [c for c, _ in res_held])
        runnable, env_held = promotion.hold(runnable, desired, promo, held)
        res_run, freed_held = resources_rt.hold_freed(res_run, runnable)
        res_held = [*res_held, *freed_held]
        ev = Evaluation(desired, live, outcome, judged, tuple(runnable), tuple(held + waiting + env_held),
                        source_error, want.policies, tuple(res_run), tuple(res_held), promo)
        self.evaluations.put(inputs, ev)
        return ev

    # ------------------------------------------------------------------ after executions

    def settle(self, changes: Iterable[model.Change], reason: str = "rollout finished") -> None:
        """Executions of ``changes`` ended: status shows their regions read again (no other pass).

        Rollouts that end while a pass or another settle holds the lock are settled together, by
        whichever gets the lock first: one evaluation, not one per rollout (a batch of rollouts ends
        together, and each rollout thread waits here before it takes the next rollout)."""
        with self._settle_lock:
            self._to_settle += list(changes)
        with self.lock, collector.paused():
            with self._settle_lock:
                todo, self._to_settle = self._to_settle, []
            if not todo or self._last is None or self.executor.stopping.is_set():
                return  # settled by another thread meanwhile (or nothing to read again)
            self._record_status(self._after(self._last, todo), reason, notify=True)

    def _after(self, ev: Evaluation, changes: Iterable[model.Change]) -> Evaluation:
        """``ev`` judged again with the regions of ``changes`` read again (the rest as it was)."""
        want = desired_mod.Desired(ev.desired, ev.policy_file or policy_file.PolicySettings())
        regions = {(c.provider, c.account, c.region) for c in changes}
        live = self.live.refreshed(ev.live, regions)
        return self.evaluate(want, live=live, exclude_running=True, source_error=ev.source_error)

    # ------------------------------------------------------------------ record

    def _record_status(self, ev: Evaluation, reason: str, *, notify: bool) -> None:
        self.desired.remember_file_apps(ev.desired)
        self._remember_app_files(ev)
        self.status.save(ev, reason=reason, now=self.clock.now(), notify=notify)
        self._last = ev

    def _remember_app_files(self, ev: Evaluation) -> None:
        """Application -> the file that last defined it, kept while the application has live groups:
        an application missing from Git whose file is still there was renamed, not removed."""
        known: dict[str, str] = self.store.get(keys.APP_FILES, {}) or {}
        live_apps = {g.application for g in ev.live.groups if g.managed}
        # while some region cannot be read, an application's groups may be hiding there: forget nothing
        merged = dict(known) if ev.live.unreadable else {a: f for a, f in known.items() if a in live_apps}
        merged.update({name: app.source.file for name, app in ev.desired.applications.items()})
        if merged != known:
            self.store.put(keys.APP_FILES, merged, self.clock.now())

    def _result(self, ev: Evaluation, previous: str | None, *, dispatched: int,
                results: list[executor_mod.ExecutionResult] | None = None) -> PassResult:
        commit = ev.desired.commit
        return PassResult(commit=commit, new_commit=commit != previous, changes=len(ev.plan.changes),
                          dispatched=dispatched, problems=len(ev.desired.problems), error=ev.source_error,
                          results=tuple(results or ()), evaluation=ev)


def _count(ev: Evaluation) -> None:
    metrics.DRIFT.set(len(ev.outcome.drift))
    metrics.PENDING_APPROVALS.set(sum(1 for _, why in ev.held if why.kind is model.Hold.APPROVAL))
    # one increment per label, not per change: the same counts at a fleet's 20,000 changes a pass
    planned = collections.Counter(change.action.value for change in ev.plan.changes)
    denied = collections.Counter(change.action.value for change, why in ev.held if why.kind is model.Hold.DENIED)
    for counts, state in ((planned, "planned"), (denied, "denied")):
        for action, n in counts.items():
            metrics.CHANGES.labels(action, state).inc(n)


def failure_state(store: store_mod.Store, settings: config_mod.ExecutionSettings, now: float
                  ) -> tuple[set[tuple[str, str]], dict[tuple[str, str], str]]:
    """Stalled and backing-off (change key, spec hash) pairs: both belong to the spec that failed,
    so a commit that changes the spec is planned and run on the next pass."""
    stalled: set[tuple[str, str]] = set()
    backing_off: dict[tuple[str, str], str] = {}
    for (key, spec_hash), row in store.failures().items():
        if row.count >= settings.max_attempts:
            stalled.add((key, spec_hash))
        else:
            retry_at = row.updated_at + backoff.delay(row.count, first=settings.retry_backoff_s)
            if retry_at > now:
                backing_off[(key, spec_hash)] = (
                    f"retrying after failure {row.count}/{settings.max_attempts} "
                    f"in {retry_at - now:.0f}s: {row.last_error}")
    return stalled, backing_off


def valid_approvals(store: store_mod.Store, now: float) -> dict[str, dict[str, object]]:
    """Unexpired approval rows by the plan id or change id they bind to."""
    valid: dict[str, dict[str, object]] = {}
    for a in store.approvals():
        if a["expires_at"] <= now:
            continue
        for ident in (a["plan_id"], a["change_id"]):
            if ident:
                valid[ident] = a
    return valid

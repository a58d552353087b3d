"""One reconcile pass, and everything the CLI, daemon and HTTP API ask of the product.

A pass: fetch Git (keep the last good commit on any source error) -> load specs
(cached by blob id) -> read live state per provider account and region (a
broken account only hides its own clusters) -> plan -> judge with the
guardrails -> dispatch the allowed changes. In background mode executions run
in worker threads, so one application's slow rollout never delays another's
pass; a cluster with an execution in flight is not planned again until it ends.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from policies import approvals as policy_approvals
from policies import base as policy_base
from policies import registry as policy_registry
from providers import base as provider_base
from reconciler.config import settings as config_mod
from reconciler.core import clock as clock_mod
from reconciler.core import errors, escaping, model, planner
from reconciler.notifications import history as notify_history
from reconciler.notifications import outbox as notify_outbox
from reconciler.runtime import executor, ha, metrics
from reconciler.source import git as gitsource
from reconciler.state import store as store_mod
from specs import catalog as spec_catalog
from specs import loader as spec_loader
from specs import renderpool

log = logging.getLogger("reconciler.engine")  # the name log filters know; kept when the module moved

KEY_LAST_GOOD = "source/last_good_commit"
KEY_SOURCE_ERROR = "source/error"
KEY_FILE_APPS = "specs/file_apps"
KEY_APP_FILES = "specs/app_files"
KEY_STATUS = "status/last_pass"
KEY_FREEZE = "policy/freeze_switch"
KEY_KNOWN_REGIONS = "live/known_regions"



@dataclass(frozen=True, slots=True)
class PassResult:
    commit: str | None
    new_commit: bool
    changes: int
    dispatched: int
    problems: int
    error: str | None
    results: tuple[executor.ExecutionResult, ...] = ()


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A judged plan and what the planner skipped, before anything runs."""

    desired: model.DesiredState
    live: planner.LiveState
    outcome: planner.Outcome
    plan: model.Plan
    runnable: tuple[model.Change, ...]
    held: tuple[tuple[model.Change, model.Held], ...]  # change, why it is not run now


class Engine:
    def __init__(
        self,
        config: config_mod.Config,
        *,
        clock: clock_mod.Clock | None = None,
        background: bool = False,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or clock_mod.SystemClock()
        self.background = background
        self.store = store_mod.Store(config.state_url)
        self.source = gitsource.GitSource(config.repo_url, config.branch, mirror_root=config.state_dir,
                                          credentials=config.git)
        self.cache = spec_loader.SpecCache()
        self._renderer: renderpool.RenderPool | None = None
        self._renderer_lock = threading.Lock()
        self._providers: dict[tuple[str, str], provider_base.Provider] = {}
        self._retired: list[provider_base.Provider] = []  # replaced by a reload; closed with the engine
        self._provider_errors: dict[tuple[str, str], str] = {}
        self._providers_lock = threading.Lock()
        self._pass_lock = threading.Lock()
        self.ha = ha.Coordinator(self.store, config.ha, share=background) if config.ha.enabled else None
        if self.ha is not None:
            self.ha.ready_probe = self.ready
        self.executor = executor.Executor(
            store=self.store, providers=self.provider, clock=self.clock,
            settings=config.execution, progress=progress, claims=self.ha,
        )
        self._pool: ThreadPoolExecutor | None = None
        self._running: dict[str, Future[list[executor.ExecutionResult]]] = {}
        self._running_lock = threading.Lock()
        self._refreshes = threading.Condition()
        self._refreshing = 0  # status refreshes still to run after background rollouts
        self._refresh_due = 0  # rollouts ended since the last status refresh or pass began (coalesced)
        self._last_read_ok: float | None = None
        self._installed = provider_base.installed_names()
        self._interrupt_orphans()
        if self.ha is not None and background:
            self.ha.start()  # a member before the first pass, so replicas starting together share it

    def catalog(self, *, accounts: bool = True) -> spec_catalog.Catalog:
        """What specs may name: installed providers; with ``accounts``, the config's accounts and regions."""
        return catalog_for(self.config, self._installed, accounts=accounts)

    # ------------------------------------------------------------------ providers

    def provider(self, name: str, account: str) -> provider_base.Provider:
        key = (name, account)
        with self._providers_lock:
            if key in self._providers:
                return self._providers[key]
            accounts = self.config.accounts(name)
            if account not in accounts:
                known = ", ".join(sorted(accounts)) or "none"
                raise errors.ConfigError(
                    f"provider {name!r} has no account {account!r} in the config "
                    f"(providers.{name}.accounts; configured: {known})"
                )
            ctx = provider_base.ProviderContext(
                state_url=self.config.state_url, state_dir=self.config.state_dir, clock=self.clock,
                open_database=functools.partial(store_mod.make_engine, self.config.state_url),
            )
            prov = provider_base.make_provider(name, account, dict(accounts[account] or {}), ctx)
            self._providers[key] = prov
            return prov

    def apply_config(self, new: config_mod.Config) -> list[str]:
        """Make a reloaded config (already validated whole) the one every part uses; say what changed.

        It waits for a running pass, so no pass sees half of each. The repository URL, the state
        store and ``ha.enabled`` stay as they are (they need a restart). Providers whose account settings changed are
        built afresh on their next use; executions already running keep the instance they started
        with, which is closed with the engine.
        """
        with self._pass_lock:
            old = self.config
            new = dataclasses.replace(new, repo_url=old.repo_url, state_url=old.state_url, state_dir=old.state_dir,
                                      ha=dataclasses.replace(new.ha, enabled=old.ha.enabled))
            if self.ha is not None and new.ha != old.ha:
                self.ha.settings = new.ha  # the next heartbeat uses the new timings
                changed_ha = True
            else:
                changed_ha = False
            changed: list[str] = ["ha"] if changed_ha else []
            with self._providers_lock:
                for key in list(self._providers):
                    name, account = key
                    if dict(old.accounts(name).get(account) or {}) != dict(new.accounts(name).get(account) or {}):
                        self._retired.append(self._providers.pop(key))
                        changed.append(f"providers.{name}.accounts.{account}")
                self.config = new
            self.executor.settings = new.execution
            if new.execution != old.execution:
                changed.append("execution")
            if self._pool is not None and new.execution.max_parallel != old.execution.max_parallel:
                previous, self._pool = self._pool, None  # the next dispatch makes a pool of the new size
                previous.shutdown(wait=False)  # running rollouts finish on the old pool's threads
            self.source.branch = new.branch
            self.source.credentials = new.git
        for attr, label in (("branch", "repo.branch"), ("spec_path", "repo.path"), ("git", "repo credentials"),
                            ("allow_force_push", "repo.allow_force_push"), ("prune", "prune"),
                            ("allowed_signers", "repo.allowed_signers"), ("approval_ttl_s", "approvals.ttl")):
            if getattr(old, attr) != getattr(new, attr):
                changed.append(label)
        return changed

    def renderer(self) -> renderpool.RenderPool:
        """The template rendering workers, started on first use and replaced when a reload changed the limits."""
        with self._renderer_lock:
            if self._renderer is None or self._renderer.limits != self.config.specs:
                if self._renderer is not None:
                    self._renderer.close()
                self._renderer = renderpool.RenderPool(self.config.specs)
            return self._renderer

    # ------------------------------------------------------------------ reading

    def fetch(self) -> tuple[str | None, str | None]:
        """(commit in force, source error). On any error the last good commit stays in force."""
        now = self.clock.now()
        last_good: str | None = self.store.get(KEY_LAST_GOOD)
        try:
            res = self.source.fetch(last_good)
        except errors.SourceError as exc:
            self.store.put(KEY_SOURCE_ERROR, str(exc), now)
            log.error("%s; keeping %s", exc, (last_good or "nothing")[:8])
            return last_good, str(exc)
        if res.force_pushed and not self.config.allow_force_push and last_good:
            msg = (f"branch {self.config.branch} was force-pushed: {res.head[:8]} does not descend from "
                   f"{last_good[:8]}; keeping {last_good[:8]} in force (set repo.allow_force_push: true "
                   "to follow rewritten history)")
            self.store.put(KEY_SOURCE_ERROR, msg, now)
            log.error("%s", msg)
            return last_good, msg
        try:  # a tree over the spec limits is refused whole, like a force-push: nothing of it is used
            self.source.tree_files(res.head, self.config.spec_path, self.config.specs)
        except gitsource.TreeTooLarge as exc:
            msg = f"{exc}; keeping {(last_good or 'nothing')[:8]} in force"
            self.store.put(KEY_SOURCE_ERROR, msg, now)
            log.error("%s", msg)
            return last_good, msg
        self.store.put(KEY_SOURCE_ERROR, None, now)
        self._last_read_ok = now
        return res.head, None

    def desired_at(self, commit: str, source: Any = None, *, check_accounts: bool = True
                   ) -> tuple[model.DesiredState, Any]:
        """Specs and the policy file at ``commit`` (from the mirror, or another reader).

        A cluster naming an unknown provider (or, with ``check_accounts``, an account the config does
        not have, or a region the account does not allow) makes its file a spec problem: the
        application is held whole instead of half its clusters looking deleted.
        """
        src = source or self.source
        files, refusals = src.tree_files(commit, self.config.spec_path, self.config.specs)
        spec_files = [spec_loader.SpecFile(path=f.path, blob_id=f.blob_id, read=f.read) for f in files]
        pool = self.renderer()
        desired = spec_loader.load_specs(
            spec_files, spec_path=self.config.spec_path, commit=commit, cache=self.cache,
            limits=pool.limits, pool=pool, catalog=self.catalog(accounts=check_accounts),
        )
        if pool.closed:  # closed meanwhile (stopping, or a reload changed the limits): no half-rendered state
            raise errors.ReconcilerError("stopping: this pass was cut short while rendering templates")
        extra = [errors.SpecProblem(path, 1, "", why) for path, why in refusals]
        pol, problems = spec_loader.load_policies(spec_files, spec_path=self.config.spec_path, cache=self.cache)
        extra += problems
        if extra:
            desired = dataclasses.replace(
                desired,
                problems=tuple(desired.problems) + tuple(extra),
                broken_files=desired.broken_files | {p.file for p in extra},
            )
        return desired, pol

    def read_live(self, desired: model.DesiredState | None) -> planner.LiveState:
        """Every region any spec names, any account lists, or we deployed to before."""
        wanted: dict[tuple[str, str], set[str]] = {}
        if desired is not None:
            for c in desired.clusters():
                wanted.setdefault((c.provider, c.account), set()).update(c.regions)
        known = self.store.get(KEY_KNOWN_REGIONS, {}) or {}
        for k, regions in known.items():
            prov, acc = k.split("/", 1)
            wanted.setdefault((prov, acc), set()).update(regions)
        groups: list[model.ServerGroup] = []
        unreadable: dict[tuple[str, str, str], str] = {}
        for (prov_name, account), regions in sorted(wanted.items()):
            try:
                prov = self.provider(prov_name, account)
            except Exception as exc:
                why = _unexpected(exc, f"building provider {prov_name}/{account}")
                for r in regions:
                    unreadable[(prov_name, account, r)] = why
                continue
            for region in sorted(regions):
                try:
                    groups += prov.list_server_groups(region)
                except Exception as exc:  # one broken account or region hides only its own clusters
                    unreadable[(prov_name, account, region)] = _unexpected(
                        exc, f"listing {prov_name}/{account}/{region}")
                    metrics.API_ERRORS.labels(prov_name, type(exc).__name__).inc()
        return planner.LiveState(tuple(groups), unreadable)

    def remember_regions(self, plan: model.Plan) -> None:
        known: dict[str, list[str]] = self.store.get(KEY_KNOWN_REGIONS, {}) or {}
        changed = False
        for c in plan.changes:
            k = f"{c.provider}/{c.account}"
            if c.region not in known.get(k, []):
                known.setdefault(k, []).append(c.region)
                changed = True
        if changed:
            self.store.put(KEY_KNOWN_REGIONS, known, self.clock.now())

    # ------------------------------------------------------------------ planning

    def evaluate(
        self,
        desired: model.DesiredState,
        policy_settings: Any,
        *,
        live: planner.LiveState | None = None,
        base_commit: str = "",
        exclude_running: bool = True,
        app_files: dict[str, str] | None = None,
    ) -> Evaluation:
        now = self.clock.now()
        with self._running_lock:  # running at any time since live was read: that read may predate its end
            running_before = {k for k, f in self._running.items() if not f.done()}
        live = live if live is not None else self.read_live(desired)
        stalled, backing_off = self._failure_state(now)
        pauses = self.store.pauses()
        files: dict[str, str] = dict(self.store.get(KEY_APP_FILES, {}) or {})
        files.update(app_files or {})
        outcome = planner.plan(desired, live, planner.Options(
            prune=self.config.prune, stalled=stalled, paused=frozenset(pauses), base_commit=base_commit,
            app_files=files,
        ))
        ctx = policy_base.PolicyContext(
            now=now, live=live.groups, desired=desired, prune=self.config.prune,
            settings=policy_registry.context_settings(
                policy_settings, prune=self.config.prune, freeze_switch=self.store.get(KEY_FREEZE),
                commit_signature=self._signature(desired.commit, policy_settings),
            ),
            approvals=self._approvals(now), paused=frozenset(pauses),
        )
        judged = policy_base.judge(outcome.plan, ctx, policy_registry.default_policies())
        running: set[str] = set()
        if exclude_running:
            with self._running_lock:
                running = running_before | {k for k, f in self._running.items() if not f.done()}
        runnable, held = select(
            judged, lambda c: policy_approvals.is_approved(c, judged, ctx), running=running,
            backing_off=backing_off, skipped=outcome.skipped, same_run=not self.background,
        )
        return Evaluation(desired, live, outcome, judged, tuple(runnable), tuple(held))

    def _signature(self, commit: str, policy_settings: Any) -> dict[str, Any] | None:
        """Verify the commit's signature only when policies.yaml requires signed commits."""
        if not commit or not policy_settings.global_settings()["signed_commits"]["required"]:
            return None
        if not self.source.has_commit(commit):
            return {"verified": False, "key": "", "reason": f"commit {commit[:8]} is not in the mirror"}
        sig = self.source.verify_signature(commit, self.config.allowed_signers)
        return {"verified": sig.verified, "key": sig.key, "reason": sig.reason}

    def plan(self, *, ref: str | None = None, base: str | None = None, local_repo: str | None = None,
             offline: bool = False) -> Evaluation:
        """For ``reconciler plan``: desired at REF against live (or against desired at BASE)."""
        reader: Any = self.source
        if local_repo is not None:
            reader = gitsource.LocalCheckout(local_repo)
            commit = reader.resolve(ref or "HEAD")
        elif ref:
            self.fetch()
            commit = reader.resolve(ref)
        else:
            head, err = self.fetch()
            if head is None or err is not None:
                kept = f"; {head[:8]} stays in force" if head else ""
                raise errors.SourceError(f"{err or 'no commit to plan'}{kept}")
            commit = head
        # an offline preview without a config file (CI) cannot know the accounts: it checks providers only
        accounts = not offline or self.config.path is not None
        desired, pol = self.desired_at(commit, reader, check_accounts=accounts)
        if base is None:
            return self.evaluate(desired, pol, exclude_running=False)
        base_commit = reader.resolve(base)
        base_desired, _ = self.desired_at(base_commit, reader, check_accounts=accounts)
        live = self._assumed_live(base_desired) if offline else self.read_live(desired)
        return self.evaluate(desired, pol, live=live, base_commit=base_commit, exclude_running=False,
                             app_files={n: a.source.file for n, a in base_desired.applications.items()})

    def _assumed_live(self, base: model.DesiredState) -> planner.LiveState:
        """For the offline PR preview (no cloud access): the last live state this store saw, if any,
        else live state as if BASE had been fully applied."""
        known = (self.store.get(KEY_STATUS) or {}).get("server_groups") or []
        if known:
            return planner.LiveState(tuple(_group_from_status(g) for g in known))
        groups: list[model.ServerGroup] = []
        for spec in base.clusters():
            for region in spec.regions:
                groups.append(model.ServerGroup(
                    name=model.server_group_name(spec.name, 0), provider=spec.provider,
                    account=spec.account, region=region, cluster=spec.name, application=spec.application,
                    managed=True, launch=spec.launch, capacity=spec.capacity, enabled=True,
                    healthy=spec.capacity.desired, instances=spec.capacity.desired,
                    spec_hash=spec.launch.spec_hash(), commit=base.commit,
                ))
        return planner.LiveState(tuple(groups))

    # ------------------------------------------------------------------ a pass

    def reconcile(self, *, reason: str = "poll") -> PassResult:
        with self._pass_lock:
            t0 = time.monotonic()
            try:
                return self._reconcile(reason)
            finally:
                metrics.PASS_DURATION.observe(time.monotonic() - t0)

    def _reconcile(self, reason: str) -> PassResult:
        with self._refreshes:  # this pass reads live after those rollouts ended: its status covers them
            self._refresh_due = 0
        now = self.clock.now()
        previous = self.store.get(KEY_LAST_GOOD)
        commit, source_error = self.fetch()
        if commit is None:
            raise errors.SourceError(source_error or "no commit could be read")
        desired, pol = self.desired_at(commit)
        self._remember_file_apps(desired)
        metrics.SPEC_ERRORS.set(len(desired.problems))
        if source_error is None:
            self.store.put(KEY_LAST_GOOD, commit, now)
        if commit != previous:
            self.store.record("commit", f"reconciling {commit[:8]} ({reason})", now, commit=commit)
        ev = self.evaluate(desired, pol)
        self.remember_regions(ev.plan)
        self._remember_app_files(ev)
        metrics.DRIFT.set(len(ev.outcome.drift))
        metrics.PENDING_APPROVALS.set(sum(1 for _, why in ev.held if why.kind is model.Hold.APPROVAL))
        for change in ev.plan.changes:
            metrics.CHANGES.labels(change.action.value, "planned").inc()
        for change, why in ev.held:
            if why.kind is model.Hold.DENIED:
                metrics.CHANGES.labels(change.action.value, "denied").inc()
        results: list[executor.ExecutionResult] = []
        dispatched = 0
        runnable = list(ev.runnable)
        if self.ha is not None and self.background:  # several replicas: this one's claimed share
            self.ha.start()
            with self._running_lock:
                running = {k for k, f in self._running.items() if not f.done()}
            runnable = self.ha.select(runnable, desired, running,
                                      capacity=self.config.execution.max_parallel - len(running))
        if runnable:
            if self.background:
                dispatched = self._dispatch(ev.plan.plan_id, runnable)
            else:
                results = self.executor.run_rollouts(ev.plan.plan_id, runnable)
                dispatched = len(runnable)
        self._save_status(ev, commit, source_error, reason)
        if source_error is None and not desired.problems:
            metrics.LAST_SUCCESS.set(self.clock.now())
        return PassResult(
            commit=commit, new_commit=commit != previous, changes=len(ev.plan.changes),
            dispatched=dispatched, problems=len(desired.problems), error=source_error,
            results=tuple(results),
        )

    def _dispatch(self, plan_id: str, changes: list[model.Change]) -> int:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.config.execution.max_parallel, thread_name_prefix="rollout")
        by_cluster: dict[tuple[str, ...], list[model.Change]] = {}
        for c in changes:
            by_cluster.setdefault((c.application, c.cluster, c.provider, c.account), []).append(c)
        n = 0
        with self._running_lock:
            todo = [ro for ro in by_cluster.values()
                    if not any(c.key in self._running and not self._running[c.key].done() for c in ro)]
            self.executor.deploys.started(plan_id, [c for ro in todo for c in ro])
            for rollout in todo:
                fut = self._pool.submit(self.executor.run_rollout, plan_id, rollout)
                with self._refreshes:
                    self._refreshing += 1
                fut.add_done_callback(self._rollout_done)
                for c in rollout:
                    self._running[c.key] = fut
                n += len(rollout)
        return n

    def _rollout_done(self, fut: Future[list[executor.ExecutionResult]]) -> None:
        """A background rollout ended: say how if it raised, refresh what status shows (one reader of Git)."""
        exc = None if fut.cancelled() else fut.exception()
        if isinstance(exc, executor.Interrupted):
            log.info("a rollout stopped: %s", exc)
        elif isinstance(exc, errors.ReconcilerError):
            log.error("a rollout ended with an error: %s", exc)
        elif exc is not None:
            log.error("a rollout ended with an unexpected %s: %s", type(exc).__name__, exc, exc_info=exc)
        try:
            if self.executor.stopping.is_set():
                return
            with self._refreshes:
                self._refresh_due += 1
            with self._pass_lock:  # rollouts ending together share one refresh, begun after each ended
                with self._refreshes:
                    due, self._refresh_due = self._refresh_due, 0
                if due:
                    self.refresh_status("rollout finished")
        except errors.ReconcilerError as exc2:
            log.warning("status refresh after a rollout failed: %s", exc2)
        except Exception:
            log.exception("status refresh after a rollout failed unexpectedly")
        finally:
            with self._refreshes:
                self._refreshing -= 1
                self._refreshes.notify_all()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the executions dispatched so far end, and the status refresh after each (tests)."""
        with self._running_lock:
            futures = list(self._running.values())
        for f in futures:
            f.result(timeout=timeout)
        with self._refreshes:
            self._refreshes.wait_for(lambda: self._refreshing == 0, timeout=timeout)

    # ------------------------------------------------------------------ failures, approvals

    def _failure_state(self, now: float) -> tuple[set[tuple[str, str]], dict[tuple[str, str], str]]:
        """Stalled and backing-off (change key, spec hash) pairs: both belong to the spec that failed,
        so a commit that changes the spec is planned and run on the next pass."""
        stalled: set[tuple[str, str]] = set()
        backing_off: dict[tuple[str, str], str] = {}
        settings = self.config.execution
        for (key, spec_hash), row in self.store.failures().items():
            if row["count"] >= settings.max_attempts:
                stalled.add((key, spec_hash))
            else:
                retry_at = row["updated_at"] + settings.retry_backoff_s * 2 ** (row["count"] - 1)
                if retry_at > now:
                    backing_off[(key, spec_hash)] = (
                        f"retrying after failure {row['count']}/{settings.max_attempts} "
                        f"in {retry_at - now:.0f}s: {row['last_error']}")
        return stalled, backing_off

    def _approvals(self, now: float) -> dict[str, Any]:
        valid: dict[str, Any] = {}
        for a in self.store.approvals():
            if a["expires_at"] <= now:
                continue
            for ident in (a["plan_id"], a["change_id"]):
                if ident:
                    valid[ident] = a
        return valid

    def approve(self, ident: str, *, by: str, comment: str = "") -> dict[str, Any]:
        return self._decide(ident, "approved", by=by, comment=comment)

    def reject(self, ident: str, *, by: str, comment: str = "") -> dict[str, Any]:
        return self._decide(ident, "rejected", by=by, comment=comment)

    def _decide(self, ident: str, decision: str, *, by: str, comment: str) -> dict[str, Any]:
        """Bind a decision to a change id or plan id of the plan in force (a new commit needs a new one)."""
        commit, _ = self.fetch()
        if commit is None:
            raise errors.SourceError("no commit to approve against")
        desired, pol = self.desired_at(commit)
        ev = self.evaluate(desired, pol, exclude_running=False)
        ids: dict[str, model.Change] = {c.change_id: c for c in ev.plan.changes}
        if ident != ev.plan.plan_id and ident not in ids:
            pending = [c.change_id for c in ev.plan.changes if c.verdict is model.Verdict.APPROVE]
            raise errors.ReconcilerError(
                f"{ident} is neither the current plan ({ev.plan.plan_id}) nor one of its changes "
                f"(waiting for approval: {', '.join(pending) or 'none'}); re-run `reconciler plan`"
            )
        ttl = self.config.approval_ttl_s
        row = self.store.add_approval(
            plan_id=ev.plan.plan_id if ident == ev.plan.plan_id else "",
            change_id=ident if ident in ids else "", decision=decision, by=by, comment=comment,
            now=self.clock.now(), ttl=ttl,
        )
        target = ids.get(ident)
        self.store.record(decision, f"{ident} {decision} by {by}" + (f": {comment}" if comment else ""),
                          self.clock.now(), application=target.application if target else "",
                          cluster=target.cluster if target else "", region=target.region if target else "",
                          commit=commit)
        return {**row, "id": ident}

    def pause(self, target: str, *, by: str, reason: str = "", force: bool = False) -> None:
        """Pause an application or cluster; a name nobody knows is refused unless ``force`` (a typo is
        more likely than pausing something that is not in Git yet)."""
        if not force and target not in self._target_names(with_git=False):
            names = self._target_names(with_git=True)
            if target not in names:
                raise _unknown_target(target, names, "application or cluster",
                                      tip="pause --force pauses a name that is not in Git yet")
        self.store.pause(target, by=by, reason=reason, now=self.clock.now())
        self.store.record("paused", f"{target} paused by {by}" + (f": {reason}" if reason else ""),
                          self.clock.now(), application=target)

    def resume(self, target: str, *, by: str) -> None:
        if not self.store.resume(target):
            paused = set(self.store.pauses())
            raise _unknown_target(target, paused, "paused application or cluster",
                                  tip="" if paused else "nothing is paused")
        self.store.record("resumed", f"{target} resumed by {by}", self.clock.now(), application=target)

    def _target_names(self, *, with_git: bool) -> set[str]:
        """Applications and clusters of the last pass (desired and live), paused names, and with ``with_git``
        those in Git at the commit in force (that waits for a running pass: one reader of the mirror)."""
        status = self.store.get(KEY_STATUS) or {}
        names = set(status.get("applications") or {}) | set(self.store.pauses())
        for app in (status.get("applications") or {}).values():
            names.update(app.get("clusters") or ())
        for g in status.get("server_groups") or ():
            names.update(x for x in (g.get("application"), g.get("cluster")) if x)
        if not with_git:
            return names
        with self._pass_lock:
            commit = self.store.get(KEY_LAST_GOOD) or self.fetch()[0]
            if commit and self.source.has_commit(commit):
                desired, _ = self.desired_at(commit)
                names.update(desired.applications)
                names.update(c.name for c in desired.clusters())
        return names

    def freeze(self, *, by: str, reason: str) -> None:
        self.store.put(KEY_FREEZE, {"by": by, "reason": reason, "at": self.clock.now()}, self.clock.now())
        self.store.record("freeze", f"changes frozen by {by}: {reason}", self.clock.now())

    def unfreeze(self, *, by: str) -> None:
        self.store.put(KEY_FREEZE, None, self.clock.now())
        self.store.record("unfreeze", f"freeze lifted by {by}", self.clock.now())

    # ------------------------------------------------------------------ rollback from the CLI

    def rollback(self, cluster: str, *, region: str | None = None, by: str = "cli") -> list[executor.ExecutionResult]:
        """Re-enable the newest retained group of CLUSTER (Git now disagrees until reverted)."""
        return self.executor.run_rollouts("manual-rollback", self.prepare_rollback(cluster, region=region, by=by))

    def prepare_rollback(self, cluster: str, *, region: str | None = None, by: str) -> list[model.Change]:
        """The rollback changes of CLUSTER, with the cluster paused so no pass undoes them; nothing runs yet
        (the daemon runs them in the background, the CLI at once)."""
        commit, _ = self.fetch()
        desired, _ = self.desired_at(commit) if commit else (None, None)
        specs = [c for c in (desired.clusters() if desired else []) if c.name == cluster]
        if not specs:
            known = {c.name for c in desired.clusters()} if desired else set()
            raise _unknown_target(cluster, known, "cluster", where="in the desired state")
        spec = specs[0]
        live = self.read_live(desired)
        changes: list[model.Change] = []
        for r in spec.regions:
            if region and r != region:
                continue
            groups = [g for g in live.groups if g.cluster == cluster and g.region == r and g.provider == spec.provider
                      and g.account == spec.account and g.managed]
            groups.sort(key=lambda g: (g.created_at, g.version), reverse=True)
            enabled = [g for g in groups if g.enabled]
            retained = [g for g in groups if not g.enabled and (not enabled or g.created_at < enabled[0].created_at)]
            if not retained:
                raise errors.ReconcilerError(f"{cluster} in {r}: no retained disabled group to roll back to")
            target = retained[0]
            fake_spec = dataclasses.replace(spec, launch=target.launch)
            change = planner.plan_cluster(fake_spec, r, 0, [g for g in live.groups if g.cluster == cluster
                                                            and g.region == r], commit or "")
            if change is None:
                continue
            changes.append(dataclasses.replace(change, reason=f"manual rollback to {target.name} by {by}; "
                                               "Git disagrees until the deploy is reverted"))
        if not changes:
            raise errors.ReconcilerError(f"{cluster}: nothing to roll back")
        self.pause(cluster, by=by, reason="manual rollback; revert the commit in Git, then resume", force=True)
        return changes

    # ------------------------------------------------------------------ status

    def _remember_app_files(self, ev: Evaluation) -> None:
        """Application -> the file that last defined it, kept while the application has live groups:
        an application missing from Git whose file is still there was renamed, not removed."""
        known: dict[str, str] = self.store.get(KEY_APP_FILES, {}) or {}
        live_apps = {g.application for g in ev.live.groups if g.managed}
        # while some region cannot be read, an application's groups may be hiding there: forget nothing
        merged = dict(known) if ev.live.unreadable else {a: f for a, f in known.items() if a in live_apps}
        merged.update({name: app.source.file for name, app in ev.desired.applications.items()})
        if merged != known:
            self.store.put(KEY_APP_FILES, merged, self.clock.now())

    def _remember_file_apps(self, desired: model.DesiredState) -> None:
        known: dict[str, str] = self.store.get(KEY_FILE_APPS, {}) or {}
        fresh = {app.source.file: name for name, app in desired.applications.items()}
        merged = {**{f: a for f, a in known.items() if f in desired.broken_files}, **fresh}
        if merged != known:
            self.store.put(KEY_FILE_APPS, merged, self.clock.now())

    def _save_status(self, ev: Evaluation, commit: str, source_error: str | None, reason: str, *,
                     record_events: bool = True) -> None:
        now = self.clock.now()
        file_apps: dict[str, str] = self.store.get(KEY_FILE_APPS, {}) or {}
        apps: dict[str, dict[str, Any]] = {}
        for name, app in ev.desired.applications.items():
            apps[name] = {"file": app.source.file, "owner": app.owner, "criticality": app.criticality.value,
                          "conditions": [], "clusters": sorted({c.name for c in app.clusters})}
        stalled_files: dict[str, list[str]] = {}
        for p in ev.desired.problems:
            stalled_files.setdefault(p.file, []).append(str(p))
        for file, problems in stalled_files.items():
            app_name = file_apps.get(file, file)
            apps.setdefault(app_name, {"file": file, "conditions": [], "clusters": []})
            apps[app_name]["conditions"].append(_cond("Stalled", "SpecInvalid", "; ".join(problems[:5]), commit, now))
        pending: dict[str, list[str]] = {}
        for c in ev.runnable:
            pending.setdefault(c.application, []).append(f"{c.action.value} {c.cluster} in {c.region}")
        held: dict[str, list[str]] = {}
        for c, why in ev.held:
            held.setdefault(c.application, []).append(f"{c.cluster} in {c.region}: {why}")
        skipped: dict[str, list[planner.Skip]] = {}
        for s in ev.outcome.skipped:
            skipped.setdefault(s.application, []).append(s)
            if s.kind is model.SkipKind.UNREAD_FILE and s.application not in apps:
                apps[s.application] = {"file": "", "conditions": [], "clusters": []}
        for name, entry in apps.items():
            conds = entry["conditions"]
            if name in pending:
                conds.append(_cond("Reconciling", "Applying", "; ".join(pending[name]), commit, now))
            mine = skipped.get(name, [])
            stalls = [f"{s.cluster}: {s.reason}" for s in mine
                      if s.kind in (model.SkipKind.STALLED, model.SkipKind.UNREADABLE)]
            if stalls:
                conds.append(_cond("Stalled", "ChangeFailing", "; ".join(stalls), commit, now))
            unread = [f"{s.cluster}: {s.reason}" for s in mine if s.kind is model.SkipKind.UNREAD_FILE]
            if unread:
                conds.append(_cond("Stalled", "SpecNotRead", "; ".join(dict.fromkeys(unread)), commit, now))
            if name in held:
                conds.append(_cond("Reconciling", "Held", "; ".join(held[name]), commit, now))
            if not conds:
                conds.append(_cond("Ready", "Reconciled", f"live state matches {commit[:8]}", commit, now))
        if source_error:
            for entry in apps.values():
                entry["conditions"].append(_cond("Stalled", "SourceError", source_error, commit, now))
        status = {
            "commit": commit,
            "updated_at": now,
            "reason": reason,
            "source_error": source_error,
            "plan_id": ev.plan.plan_id,
            "applications": apps,
            "changes": [{"change_id": c.change_id, "key": c.key, "action": c.action.value,
                         "verdict": c.verdict.value, "reason": c.reason} for c in ev.plan.changes],
            "held": [{"key": c.key, "change_id": c.change_id, "why": str(why), "kind": why.kind.value,
                      "waiting": list(c.waiting)} for c, why in ev.held],
            "skipped": [dataclasses.asdict(s) for s in ev.outcome.skipped],
            "drift": list(ev.outcome.drift),
            "problems": [str(p) for p in ev.desired.problems],
            "notices": [str(p) for p in ev.desired.notices],
            "server_groups": [
                {**g.view(), "provider": g.provider, "account": g.account, "region": g.region,
                 "cluster": g.cluster, "application": g.application, "managed": g.managed,
                 "created_at": g.created_at, "commit": g.commit, "load_balancers": list(g.launch.load_balancers),
                 "security_groups": list(g.launch.security_groups), "tags": escaping.tag_view(g.launch.tags)}
                for g in ev.live.groups
            ],
            "unreadable": {"/".join(k): v for k, v in ev.live.unreadable.items()},
        }
        self.store.put(KEY_STATUS, status, now)
        if record_events:  # approvals now awaited, denials, stalls, source errors: once, when they begin
            notify_history.record_transitions(self.store, status, now)

    def refresh_status(self, reason: str = "status", *, record_events: bool = True) -> None:
        """Re-read Git and live state and save what ``status`` shows (nothing is applied).

        ``record_events=False`` for a look from the CLI: its Git credentials may differ from the
        daemon's, and what it sees must not be told to anyone as a transition.
        """
        commit, source_error = self.fetch()
        if commit is None:
            return
        desired, pol = self.desired_at(commit)
        self._remember_file_apps(desired)
        ev = self.evaluate(desired, pol)
        self._remember_app_files(ev)
        self._save_status(ev, commit, source_error, reason, record_events=record_events)

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = dict(self.store.get(KEY_STATUS) or {})
        status["executions"] = [
            {k: v for k, v in e.items() if k != "change"} for e in self.store.executions(limit=20)
        ]
        status["paused"] = self.store.pauses()
        status["freeze"] = self.store.get(KEY_FREEZE)
        status["notifications"] = notify_outbox.status(self.store, self.config.notifications, self.clock.now())
        if self.ha is not None:
            status["ha"] = self.ha.status()
        return status

    def ready(self) -> tuple[bool, str]:
        now = self.clock.now()
        if self.ha is not None and self.background:
            ok, why = self.ha.healthy()
            if not ok:
                return False, why
        if not self.store.writable(now):
            return False, "state store is not writable"
        if self._last_read_ok is None:
            return False, "the repository has not been read yet"
        limit = max(3 * self.config.poll_interval_s, 60.0)
        if now - self._last_read_ok > limit:
            return False, f"the repository was last read {now - self._last_read_ok:.0f}s ago"
        return True, "ok"

    # ------------------------------------------------------------------ lifecycle

    def _interrupt_orphans(self) -> None:
        """Executions left 'running' by a dead process: mark them; the next pass re-plans from live."""
        for ex in self.store.active_executions():
            if ex["owner"] != self.store.owner and executor._owner_dead(ex["owner"]):
                self.store.finish_execution(ex["id"], self.clock.now(), state="interrupted",
                                            error="the process running it died; resumed from live state")
                self.store.record("execution_interrupted", f"{ex['key']}: resuming after a restart",
                                  self.clock.now(), application=ex["application"], cluster=ex["cluster"],
                                  region=ex["region"], execution_id=ex["id"], commit=ex["commit"])

    def stop(self, deadline_s: float) -> bool:
        self.executor.stopping.set()
        self.clock.wake()
        if self._pool is None:
            return True
        end = time.monotonic() + deadline_s
        with self._running_lock:
            futures = list(self._running.values())
        for f in futures:
            try:
                f.result(timeout=max(end - time.monotonic(), 0.0))
            except Exception:
                return False
        return True

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()  # first: a pass stuck on a template returns at once
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        for p in [*self._providers.values(), *self._retired]:
            p.close()
        if self.ha is not None:
            self.ha.close()
        self.store.close()


def _unexpected(exc: Exception, what: str) -> str:
    """Our errors as their message; anything else logged with its traceback, then reported the same way."""
    if isinstance(exc, errors.ReconcilerError):
        return str(exc)
    log.error("%s raised %s: %s", what, type(exc).__name__, exc, exc_info=exc)
    return f"unexpected {type(exc).__name__} while {what}: {exc}"


def _unknown_target(target: str, names: set[str], what: str, *, where: str = "",
                    tip: str = "") -> errors.ReconcilerError:
    """``no application or cluster named 'chekout'; did you mean checkout?`` (closest names first)."""
    near = difflib.get_close_matches(target, sorted(names), n=3, cutoff=0.6)
    if near:
        hint = f"; did you mean {' or '.join(near)}?"
    elif names:
        shown = sorted(names)
        hint = f"; known: {', '.join(shown[:10])}" + (f" and {len(shown) - 10} more" if len(shown) > 10 else "")
    else:
        hint = ""
    return errors.ReconcilerError(f"no {what} named {target!r}" + (f" {where}" if where else "") + hint
                                  + (f" ({tip})" if tip else ""))


def catalog_for(config: config_mod.Config, installed: frozenset[str], *, accounts: bool) -> spec_catalog.Catalog:
    """The names specs may use under ``config``: installed providers, configured accounts and regions."""
    if not accounts:
        return spec_catalog.Catalog(installed)
    table: dict[str, dict[str, tuple[str, ...]]] = {}
    for prov in config.providers:
        table[prov] = {}
        for name, acc in config.accounts(prov).items():
            regions = acc.get("regions") if isinstance(acc, dict) else None
            table[prov][str(name)] = tuple(str(r) for r in regions) if isinstance(regions, list) else ()
    return spec_catalog.Catalog(installed, table, source=str(config.path) if config.path else "the config")


def select(
    plan: model.Plan,
    approved: Callable[[model.Change], bool],
    *,
    running: set[str],
    backing_off: dict[tuple[str, str], str],
    skipped: tuple[planner.Skip, ...],
    same_run: bool,
) -> tuple[list[model.Change], list[tuple[model.Change, model.Held]]]:
    """Which judged changes run now, and why each other one does not.

    A change that waits for other clusters (``Change.waiting``: an earlier wave that does not serve
    its spec yet, or the clusters replacing a destroyed one) runs only when each of them has a change
    running in the same execution, which orders it first: the waves of one cluster always (the
    executor runs them in order and stops at a failed one); a destroy after its replacements only
    when ``same_run`` (a foreground run; the daemon leaves it for a later pass). Otherwise it is
    held with the reason the earlier one is held or skipped.
    """
    runnable: list[model.Change] = []
    held: list[tuple[model.Change, model.Held]] = []
    for change in plan.changes:
        verdict = change.verdict
        if verdict is model.Verdict.DENY:
            held.append((change, model.Held(model.Hold.DENIED, "denied: " + "; ".join(
                v.message for v in change.verdicts if v.verdict is model.Verdict.DENY))))
        elif verdict is model.Verdict.APPROVE and not approved(change):
            held.append((change, model.Held(
                model.Hold.APPROVAL, f"waiting for approval (reconciler approve {change.change_id})")))
        elif change.key in running:
            held.append((change, model.Held(model.Hold.RUNNING, "an execution is in progress")))
        elif (change.key, change.spec_hash) in backing_off:
            held.append((change, model.Held(model.Hold.BACKOFF, backing_off[(change.key, change.spec_hash)])))
        else:
            runnable.append(change)
    if any(v.verdict is model.Verdict.DENY for v in plan.plan_verdicts):
        held += [(c, model.Held(model.Hold.PLAN_DENIED, "denied by a plan-wide policy")) for c in runnable]
        runnable = []
    why_not: dict[str, str] = {s.key: s.reason for s in skipped}
    why_not.update({c.key: str(h) for c, h in held})
    keys = {c.key for c in runnable}
    moved = True
    while moved:  # a hold can hold others (a replacement waiting for its own earlier wave)
        moved = False
        keep: list[model.Change] = []
        for c in runnable:
            in_run = same_run or c.action is not model.Action.DESTROY
            blocked = [k for k in c.waiting if not (in_run and k in keys)]
            if blocked:
                hold = _wait_hold(c, blocked, why_not, keys)
                held.append((c, hold))
                why_not[c.key] = str(hold)
                keys.discard(c.key)
                moved = True
            else:
                keep.append(c)
        runnable = keep
    return runnable, held


def _wait_hold(change: model.Change, blocked: list[str], why_not: dict[str, str], keys: set[str]) -> model.Held:
    def why(k: str) -> str:
        if k in why_not:
            return why_not[k]
        return "deploying in this pass; destroyed on a later one" if k in keys else "not serving yet"

    if change.action is model.Action.DESTROY:
        parts = [f"{model.split_key(k)[3]} in {model.split_key(k)[2]} ({why(k)})" for k in blocked]
        return model.Held(model.Hold.REPLACEMENT, f"waiting for {'; '.join(parts)} to serve before destroying "
                          f"{change.cluster}: {change.application} would have no serving capacity there")
    spec = change.desired
    wave_of = {r: i for i, w in enumerate(spec.waves) for r in w} if spec else {}
    regions = [model.split_key(k)[2] for k in blocked]
    waves = sorted({wave_of.get(r, 0) + 1 for r in regions})
    parts = [f"{r}: {why(k)}" for r, k in zip(regions, blocked, strict=True)]
    return model.Held(model.Hold.WAVE, f"waiting for wave {', '.join(map(str, waves))} to succeed with spec "
                      f"{change.spec_hash[:8]} ({'; '.join(parts)})")


def _group_from_status(g: dict[str, Any]) -> model.ServerGroup:
    cap = g["capacity"]
    return model.ServerGroup(
        name=g["server_group"], provider=g["provider"], account=g["account"], region=g["region"],
        cluster=g["cluster"], application=g.get("application", ""), managed=bool(g["managed"]),
        launch=model.LaunchSpec(image=g["image"], instance_type=g["instance_type"]),
        capacity=model.Capacity(int(cap["min"]), int(cap["desired"]), int(cap["max"])), enabled=bool(g["enabled"]),
        healthy=int(g["healthy"]), instances=int(g["instances"]), spec_hash=g.get("spec_hash", ""),
    )


def _cond(kind: str, reason: str, message: str, commit: str, now: float) -> dict[str, Any]:
    return {"type": kind, "status": True, "reason": reason, "message": message, "commit": commit,
            "at": now}


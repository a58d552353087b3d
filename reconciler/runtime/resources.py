"""Running resource changes: before the clusters, durably, with the guards of server groups.

Every resource change is one execution of one step in the store (recorded before and after, under a lease
on its key), retried with the executor's bounded backoff; a failure is counted per (key, spec hash), so it
backs off and then stalls like a cluster change. Creates and updates run before any cluster change of the
same pass, and a cluster whose spec names a resource that was to be created and was not is held (it would
be created before what it needs). At run time a destroy re-reads the region and refuses while any server
group (ours or not) uses the resource.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from providers import base as provider_base
from reconciler.core import errors, model
from reconciler.core.resources import (
    GLOBAL,
    Kind,
    LiveResource,
    ResourceAction,
    ResourceChange,
    places_of,
    serves,
    used_by,
)
from reconciler.runtime import executor as executor_mod
from reconciler.runtime import ha, metrics
from reconciler.state import keys

log = logging.getLogger("reconciler.executor")


@dataclass(frozen=True, slots=True)
class ResourceResult:
    change: ResourceChange
    execution_id: str
    state: str  # succeeded | failed | skipped | fenced (several replicas: the claim moved mid-way)
    error: str = ""


def read(provider: provider_base.Provider, region: str) -> list[LiveResource] | None:
    """The region's resources, or None for a provider that does not manage any."""
    if not isinstance(provider, provider_base.ResourceProvider):
        return None
    return provider.list_resources(region)


def select(changes: Iterable[ResourceChange], approved: Callable[[ResourceChange], bool], *,
           backing_off: Mapping[tuple[str, str], str], plan_denied: bool
           ) -> tuple[list[ResourceChange], list[tuple[ResourceChange, model.Held]]]:
    """Which resource changes run now, and why each other one does not (as ``engine.select``)."""
    runnable: list[ResourceChange] = []
    held: list[tuple[ResourceChange, model.Held]] = []
    for c in changes:
        if c.verdict is model.Verdict.DENY:
            held.append((c, model.Held(model.Hold.DENIED, "denied: " + "; ".join(
                v.message for v in c.verdicts if v.verdict is model.Verdict.DENY))))
        elif c.verdict is model.Verdict.APPROVE and not approved(c):
            held.append((c, model.Held(model.Hold.APPROVAL,
                                       f"waiting for approval (reconciler approve {c.change_id})")))
        elif (c.key, c.spec_hash) in backing_off:
            held.append((c, model.Held(model.Hold.BACKOFF, backing_off[(c.key, c.spec_hash)])))
        elif plan_denied:
            held.append((c, model.Held(model.Hold.PLAN_DENIED, "denied by a plan-wide policy")))
        else:
            runnable.append(c)
    return runnable, held


def hold_freed(changes: Iterable[ResourceChange], runnable: Iterable[model.Change]
               ) -> tuple[list[ResourceChange], list[tuple[ResourceChange, model.Held]]]:
    """A destroy that waits for cluster changes (``after``) runs only beside them: when one of them is held,
    so is the destroy, with the reason (it would never run, and a pass would look unfinished forever)."""
    keys = {c.key for c in runnable}
    run: list[ResourceChange] = []
    held: list[tuple[ResourceChange, model.Held]] = []
    for c in changes:
        missing = sorted(set(c.after) - keys)
        if missing:
            held.append((c, model.Held(model.Hold.FREED, f"waits for {', '.join(missing)} to destroy the groups "
                                                         "using it")))
        else:
            run.append(c)
    return run, held


def needs(change: model.Change) -> list[tuple[Kind, str]]:
    """The resources a cluster change creates a group with."""
    if change.desired is None or not any(s.kind is model.StepKind.CREATE for s in change.steps):
        return []
    launch = change.desired.launch
    return [(Kind.LOAD_BALANCER, n) for n in launch.load_balancers] + \
        [(Kind.SECURITY_GROUP, n) for n in launch.security_groups]


def hold_dependents(changes: Iterable[model.Change], pending: Iterable[ResourceChange]
                    ) -> tuple[list[model.Change], list[tuple[model.Change, model.Held]]]:
    """Cluster changes that would create a group naming a resource whose create did not run (held,
    denied, failed): they wait, so no group is ever created before what it names exists."""
    missing = {(c.provider, c.account, c.region, c.kind, c.name): c for c in pending
               if c.action is ResourceAction.CREATE}
    run: list[model.Change] = []
    held: list[tuple[model.Change, model.Held]] = []
    for ch in changes:
        gone = [missing[k] for kind, name in needs(ch) for place in places_of(ch.provider, ch.account, ch.region)
                if (k := (*place, kind, name)) in missing]
        if gone:
            held.append((ch, model.Held(model.Hold.RESOURCE, "waiting for " + ", ".join(
                f"{r.label} to be created" for r in gone))))
        else:
            run.append(ch)
    return run, held


def run_first(executor: executor_mod.Executor, plan_id: str, resource_changes: Iterable[ResourceChange],
              changes: Iterable[model.Change], *, elsewhere: Iterable[ResourceChange] = ()
              ) -> tuple[list[ResourceResult], list[model.Change]]:
    """Run the resource changes, then say which cluster changes may run: those not waiting for a resource
    whose create just failed (the one place every entry point goes through, CLI and daemon alike), or
    whose create another replica runs (``elsewhere``: its share; the cluster follows once it exists)."""
    todo = [c for c in resource_changes if not c.after]  # those wait for the clusters (``run_freed``)
    other = list(elsewhere)
    if not todo and not other:
        return [], list(changes)
    results = ResourceRunner(executor).run_all(plan_id, todo)
    run, held = hold_dependents(changes, [r.change for r in results if r.state != "succeeded"] + other)
    for ch, why in held:
        executor.store.record("skipped", f"not started: {why}", executor.clock.now(), application=ch.application,
                              cluster=ch.cluster, region=ch.region, commit=ch.commit)
    return results, run


def run_freed(executor: executor_mod.Executor, plan_id: str, resource_changes: Iterable[ResourceChange],
              results: Iterable[executor_mod.ExecutionResult]) -> list[ResourceResult]:
    """After the cluster changes ran: destroy what their group destroys freed (``ResourceChange.after``), each
    once every change it waits for succeeded. The runtime guard reads the regions again first, so a group
    that is still there (or a new one) keeps the resource. One that waits on a change that did not succeed
    is left for a later pass, which plans it again from what is live then."""
    done = {r.change.key for r in results if r.state is model.ExecState.SUCCEEDED}
    ran = {r.change.key for r in results}
    todo = []
    for c in resource_changes:
        if not c.after:
            continue
        if all(k in done for k in c.after):
            todo.append(c)
        elif any(k in ran for k in c.after):
            executor.store.record("skipped", f"{c.describe()} not started: {', '.join(sorted(set(c.after) - done))} "
                                  "did not succeed", executor.clock.now(), application=c.application, cluster=c.name,
                                  region=c.region, commit=c.commit)
    return ResourceRunner(executor).run_all(plan_id, todo) if todo else []


def ordered(changes: Iterable[ResourceChange]) -> list[ResourceChange]:
    """Creates and updates first, a security group before the groups whose rules name it; destroys last."""
    todo = sorted(changes, key=lambda c: c.key)
    puts = [c for c in todo if c.action is not ResourceAction.DESTROY]
    out: list[ResourceChange] = []
    while puts:
        pending = {(c.provider, c.account, c.region, c.name) for c in puts if c.kind is Kind.SECURITY_GROUP}
        ready = [c for c in puts if not any(
            (c.provider, c.account, c.region, r.group) in pending and r.group != c.name
            for r in (c.desired.rules if c.desired else ()))]
        ready = ready or puts[:1]  # a cycle of references: the provider's error will name it
        out += ready
        puts = [c for c in puts if c not in ready]
    return out + [c for c in todo if c.action is ResourceAction.DESTROY]


class ResourceRunner:
    """Runs resource changes with the executor's store, providers, retries and leases."""

    def __init__(self, executor: executor_mod.Executor) -> None:
        self.ex = executor

    def run_all(self, plan_id: str, changes: Iterable[ResourceChange]) -> list[ResourceResult]:
        """Creates and updates first, destroys last (a destroy may free what an update removed)."""
        return [self.run(plan_id, c) for c in ordered(changes)]

    def run(self, plan_id: str, change: ResourceChange) -> ResourceResult:
        ex = self.ex
        if ex.claims is not None:
            return self._run_claimed(ex.claims, plan_id, change)
        if not ex._acquire(change.key):
            msg = f"{change.key}: another execution holds the lease; not started"
            return ResourceResult(change, "", "skipped", msg)
        try:
            return self._run_locked(plan_id, change)
        except errors.ReconcilerError as exc:
            return ResourceResult(change, "", "failed", f"{change.key}: not started: {exc}")
        finally:
            try:
                ex.store.release_lease(change.key)
            except errors.ReconcilerError as exc:
                log.warning("%s: could not release the lease (it expires by itself): %s", change.key, exc)

    def _run_claimed(self, claims: ha.Coordinator, plan_id: str, change: ResourceChange) -> ResourceResult:
        """With several replicas: under this replica's claim of the resource's key (taken in the claim
        step, or now for a one-off apply), every store write fenced by it, as a cluster change."""
        ex = self.ex
        with claims.holding(change.key) as fence:
            if fence is None:
                return ResourceResult(change, "", "skipped", f"{change.key}: claimed by another replica (or the "
                                      "database is unreachable); not started")
            ex._held.fence = fence  # checked before every provider call (Executor._check_stop)
            try:
                with ex.store.fenced(fence):
                    return self._run_locked(plan_id, change)
            except errors.Fenced as exc:
                metrics.HA_FENCED.inc()
                log.warning("%s", exc)
                return ResourceResult(change, "", "fenced", str(exc))
            except errors.ReconcilerError as exc:
                return ResourceResult(change, "", "failed", f"{change.key}: not started: {exc}")
            finally:
                ex._held.fence = None

    def _run_locked(self, plan_id: str, change: ResourceChange) -> ResourceResult:
        ex, store, now = self.ex, self.ex.store, self.ex.clock.now()
        provider = ex.providers(change.provider, change.account)
        store.clear_failures(change.key, keep=change.spec_hash)
        ex_id = store.start_execution(
            {"plan_id": plan_id, "change_id": change.change_id, "commit": change.commit, "key": change.key,
             "application": change.application, "cluster": f"{change.kind.value}:{change.name}",
             "provider": change.provider, "account": change.account, "region": change.region,
             "action": change.action.value, "spec_hash": change.spec_hash, "change": change.reason},
            [{"kind": f"{change.action.value}_resource", "server_group": change.name,
              "description": change.describe()}], now)
        where: dict[str, Any] = {"application": change.application, "cluster": change.name, "region": change.region,
                 "execution_id": ex_id, "commit": change.commit}
        store.record("execution_started", f"{change.describe()} ({change.reason})", now, **where)
        ex._say(f"{change.application}/{change.label} {change.region}: {change.action.value} ({change.reason})")
        store.step_started(ex_id, 0, now)
        try:
            self._step(provider, change)
        except errors.Fenced:
            raise  # the claim moved: nothing more is written or called; the new holder plans it again
        except Exception as exc:
            failure = executor_mod._as_error(exc, _as_change(change), change.describe())
            at = ex.clock.now()
            count = store.add_failure(change.key, change.spec_hash, str(failure), at)
            store.step_ended(ex_id, 0, at, state=model.StepState.FAILED, error=str(failure))
            store.finish_execution(ex_id, at, state=model.ExecState.FAILED, error=str(failure))
            store.record("execution_failed", f"{change.describe()} failed: {failure} (attempt {count})", at, **where)
            metrics.CHANGES.labels(f"{change.action.value}_resource", "failed").inc()
            ex._say(f"{change.application}/{change.label} {change.region}: FAILED: {failure}")
            return ResourceResult(change, ex_id, "failed", str(failure))
        at = ex.clock.now()
        store.step_ended(ex_id, 0, at, state=model.StepState.DONE)
        store.finish_execution(ex_id, at, state=model.ExecState.SUCCEEDED)
        store.clear_failures(change.key)
        store.record("execution_succeeded", f"{change.describe()} done", at, **where)
        metrics.CHANGES.labels(f"{change.action.value}_resource", "applied").inc()
        if ex.after_step is not None:  # the crash tests' hook, as after every cluster step
            ex.after_step()
        return ResourceResult(change, ex_id, "succeeded")

    def _step(self, provider: provider_base.Provider, change: ResourceChange) -> None:
        if not isinstance(provider, provider_base.ResourceProvider):
            raise errors.ReconcilerError(f"provider {change.provider} does not manage {change.kind.label}s")
        rp: provider_base.ResourceProvider = provider
        shim = _as_change(change)
        if change.action is ResourceAction.DESTROY:
            self._guard(provider, change)
            self.ex._retry(shim, "destroy_resource",
                           lambda: rp.destroy_resource(change.region, change.kind, change.name))
            return
        spec = change.desired
        assert spec is not None
        request = provider_base.ResourceRequest(
            kind=change.kind, name=change.name, application=change.application, region=change.region,
            settings=spec.settings, rules=spec.rule_lines(), spec_hash=change.spec_hash, commit=change.commit,
            update=change.action is ResourceAction.UPDATE)
        self.ex._retry(shim, "put_resource", lambda: rp.put_resource(request))

    def _guard(self, provider: provider_base.Provider, change: ResourceChange) -> None:
        """Never destroy what a server group uses: read live again (a saved plan may be old); for a global
        resource, every region of the account (configured or deployed to)."""
        regions = [change.region]
        if change.region == GLOBAL:
            known = self.ex.store.get(keys.KNOWN_REGIONS, {}) or {}
            regions = sorted({*provider.regions(), *known.get(f"{change.provider}/{change.account}", [])} - {GLOBAL})
        groups = tuple(g for r in regions for g in provider.list_server_groups(r))
        live = tuple(read(provider, change.region) or ())
        users = used_by(change.kind, change.name, (change.provider, change.account, change.region), groups, live)
        if users:
            raise errors.PolicyDenied(f"resource guard: refusing to destroy {change.label} in {change.region}: "
                                      f"used by {', '.join(users)}")


def _as_change(change: ResourceChange) -> model.Change:
    """The executor's retry and error helpers speak of cluster changes: the same key and names."""
    return model.Change(application=change.application, cluster=f"{change.kind.value}:{change.name}",
                        provider=change.provider, account=change.account, region=change.region,
                        action=model.Action.DESTROY if change.action is ResourceAction.DESTROY
                        else model.Action.CREATE, steps=(), commit=change.commit)


def status_rows(resources: Iterable[LiveResource], groups: Iterable[model.ServerGroup]) -> list[dict[str, Any]]:
    """What ``reconciler status`` lists per resource: the groups attached to it and their health.

    A balancer is ``healthy`` when some enabled group attached to it has healthy instances; ``unused``
    when no group names it.
    """
    groups = list(groups)
    rows: list[dict[str, Any]] = []
    for r in resources:
        users = set(used_by(r.kind, r.name, r.placement, tuple(groups)))
        attached = [g for g in groups if g.name in users and serves(r.placement, g.provider, g.account, g.region)]
        enabled = [g for g in attached if g.enabled]
        healthy = sum(g.healthy for g in enabled)
        apps = sorted({g.application for g in attached if g.application})
        rows.append({
            **r.view(),
            "applications": sorted({r.application, *apps} - {""}),
            "server_groups": [{"server_group": g.name, "application": g.application, "enabled": g.enabled,
                               "healthy": g.healthy, "desired": g.capacity.desired} for g in attached],
            "healthy": healthy, "instances": sum(g.capacity.desired for g in enabled),
            "health": "unused" if not attached else "healthy" if healthy else "unhealthy",
        })
    return sorted(rows, key=lambda x: (x["application"], x["kind"], x["name"], x["region"]))

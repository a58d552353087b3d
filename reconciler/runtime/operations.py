"""What people do to the fleet besides committing: approve, reject, pause, resume, freeze, roll back.

Each is recorded in history under the person's name. A decision binds to a change id or plan id
of the plan in force, which it learns from a preview pass of the pipeline (a new commit needs a
new decision). A manual rollback pauses its cluster first, so no pass undoes it.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any

from reconciler.config import settings as config_mod
from reconciler.core import clock as clock_mod
from reconciler.core import errors, model, planner
from reconciler.notifications import kinds as notify_kinds
from reconciler.runtime import desired as desired_mod
from reconciler.runtime import executor as executor_mod
from reconciler.runtime import live as live_mod
from reconciler.runtime import pipeline as pipeline_mod
from reconciler.runtime import promotion
from reconciler.state import keys
from reconciler.state import store as store_mod


class Operations:
    def __init__(self, *, config: Callable[[], config_mod.Config], store: store_mod.Store, clock: clock_mod.Clock,
                 pipeline: pipeline_mod.Pipeline, desired: desired_mod.DesiredSource, live: live_mod.LiveReader,
                 executor: executor_mod.Executor) -> None:
        self._config = config
        self.store = store
        self.clock = clock
        self.pipeline = pipeline
        self.desired = desired
        self.live = live
        self.executor = executor

    # ------------------------------------------------------------------ approvals

    def approve(self, ident: str, *, by: str, comment: str = "") -> dict[str, Any]:
        return self._decide(ident, "approved", by=by, comment=comment)

    def reject(self, ident: str, *, by: str, comment: str = "") -> dict[str, Any]:
        return self._decide(ident, "rejected", by=by, comment=comment)

    def decide_environment(self, application: str, environment: str, version: str, decision: str, *, by: str,
                           comment: str = "") -> dict[str, Any]:
        """Approve or reject a version for an environment (``reconciler approve APP --env ENV --version V``),
        against the branch head as a change id is."""
        with self.pipeline.lock:
            commit, _ = self.desired.fetch()
            if not commit:
                raise errors.SourceError("no commit to approve against")
            desired = self.desired.at(commit).state
        return promotion.decide(self.store, desired, application, environment, version, decision, by=by,
                                comment=comment, now=self.clock.now())

    def _decide(self, ident: str, decision: str, *, by: str, comment: str) -> dict[str, Any]:
        """Bind a decision to a change id or plan id of the plan in force (a new commit needs a new one)."""
        result = self.pipeline.run(pipeline_mod.Request(
            pipeline_mod.Mode.PREVIEW, reason=decision, no_commit="no commit to approve against",
            exclude_running=False))
        ev = result.evaluation
        assert ev is not None
        ids: dict[str, Any] = {c.change_id: c for c in (*ev.plan.changes, *ev.plan.resource_changes)}
        if ident != ev.plan.plan_id and ident not in ids:
            pending = [c.change_id for c in ids.values() if c.verdict is model.Verdict.APPROVE]
            raise errors.ReconcilerError(
                f"{ident} is neither the current plan ({ev.plan.plan_id}) nor one of its changes "
                f"(waiting for approval: {', '.join(pending) or 'none'}); "
                + (self._moved(ident, ids.values()) or "re-run `reconciler plan`")
            )
        row = self.store.add_approval(
            plan_id=ev.plan.plan_id if ident == ev.plan.plan_id else "",
            change_id=ident if ident in ids else "", decision=decision, by=by, comment=comment,
            now=self.clock.now(), ttl=self._config().approval_ttl_s,
        )
        target = ids.get(ident)
        self.store.record(decision, f"{ident} {decision} by {by}" + (f": {comment}" if comment else ""),
                          self.clock.now(), application=target.application if target else "",
                          cluster=target.cluster if target else "", region=target.region if target else "",
                          commit=ev.desired.commit)
        return {**row, "id": ident}

    def _moved(self, ident: str, changes: Iterable[Any]) -> str:
        """Where an announced change id went: a later commit gave the same change another id (ids name the
        commit; ``waiting_for_approval`` told its content id too). Empty when no announcement names it."""
        for event in self.store.history(limit=500, kinds=(notify_kinds.WAITING_FOR_APPROVAL,)):
            told = next((c for c in event["detail"].get("changes") or () if c.get("change_id") == ident), None)
            if told is None or not told.get("content_id"):
                continue
            now = next((c for c in changes if c.content_id == told["content_id"]), None)
            if now is None:
                return f"{ident} was announced at {str(event['commit'])[:8]}, and that change is not planned now"
            return (f"{ident} was announced at {str(event['commit'])[:8]}; a later commit gave the same change "
                    f"({now.action.value} {now.cluster} in {now.region}) the id {now.change_id}: "
                    f"run `reconciler approve {now.change_id}`")
        return ""

    # ------------------------------------------------------------------ pause, freeze

    def pause(self, target: str, *, by: str, reason: str = "", force: bool = False) -> None:
        """Pause an application or cluster; a name nobody knows is refused unless ``force`` (a typo is
        more likely than pausing something that is not in Git yet)."""
        if not force and target not in self._target_names(with_git=False):
            names = self._target_names(with_git=True)
            if target not in names:
                raise unknown_target(target, names, "application or cluster",
                                     tip="pause --force pauses a name that is not in Git yet")
        self.store.pause(target, by=by, reason=reason, now=self.clock.now())
        self.store.record("paused", f"{target} paused by {by}" + (f": {reason}" if reason else ""),
                          self.clock.now(), application=target)

    def resume(self, target: str, *, by: str) -> None:
        if not self.store.resume(target):
            paused = set(self.store.pauses())
            raise unknown_target(target, paused, "paused application or cluster",
                                 tip="" if paused else "nothing is paused")
        self.store.record("resumed", f"{target} resumed by {by}", self.clock.now(), application=target)

    def _target_names(self, *, with_git: bool) -> set[str]:
        """Applications and clusters of the last pass (desired and live), paused names, and with ``with_git``
        those in Git at the commit in force (that waits for a running pass: one reader of the mirror)."""
        status = self.store.get(keys.STATUS) or {}
        names = set(status.get("applications") or {}) | set(self.store.pauses())
        for app in (status.get("applications") or {}).values():
            names.update(app.get("clusters") or ())
        for g in status.get("server_groups") or ():
            names.update(x for x in (g.get("application"), g.get("cluster")) if x)
        if not with_git:
            return names
        with self.pipeline.lock:
            commit = self.store.get(keys.LAST_GOOD) or self.desired.fetch()[0]
            if commit and self.desired.git.has_commit(commit):
                want = self.desired.at(commit)
                names.update(want.state.applications)
                names.update(c.name for c in want.state.clusters())
        return names

    def freeze(self, *, by: str, reason: str) -> None:
        self.store.put(keys.FREEZE, {"by": by, "reason": reason, "at": self.clock.now()}, self.clock.now())
        self.store.record("freeze", f"changes frozen by {by}: {reason}", self.clock.now())

    def unfreeze(self, *, by: str) -> None:
        self.store.put(keys.FREEZE, None, self.clock.now())
        self.store.record("unfreeze", f"freeze lifted by {by}", self.clock.now())

    # ------------------------------------------------------------------ manual rollback

    def rollback(self, cluster: str, *, region: str | None = None, by: str = "cli"
                 ) -> list[executor_mod.ExecutionResult]:
        """Re-enable the newest retained group of CLUSTER now (Git disagrees until reverted)."""
        changes = self.prepare_rollback(cluster, region=region, by=by)
        results = self.executor.run_rollouts("manual-rollback", changes)
        self.pipeline.settle(changes, "rollback finished")
        return results

    def prepare_rollback(self, cluster: str, *, region: str | None = None, by: str) -> list[model.Change]:
        """The rollback changes of CLUSTER, with the cluster paused so no pass undoes them; nothing runs yet
        (the daemon runs them in the background, the CLI at once)."""
        with self.pipeline.lock:
            commit, _ = self.desired.fetch()
            desired = self.desired.at(commit).state if commit else None
            specs = [c for c in (desired.clusters() if desired else []) if c.name == cluster]
            if not specs:
                known = {c.name for c in desired.clusters()} if desired else set()
                raise unknown_target(cluster, known, "cluster", where="in the desired state")
            live = self.live.read(desired)
        changes = rollback_changes(specs[0], live, region=region, commit=commit or "", by=by)
        self.pause(cluster, by=by, reason="manual rollback; revert the commit in Git, then resume", force=True)
        return changes


def rollback_changes(spec: model.ClusterSpec, live: planner.LiveState, *, region: str | None, commit: str,
                     by: str) -> list[model.Change]:
    """Per region of ``spec``: the change that brings its newest retained disabled group back into traffic.

    ``planner.rollback_to`` plans it for that group by name, with the steps a revert in Git would run; the
    group's launch settings as read back from the cloud are never turned into a spec to plan from (a cloud
    may not return every field, such as user data, and the spec would then ask for a new group).
    """
    cluster = spec.name
    changes: list[model.Change] = []
    for r in spec.regions:
        if region and r != region:
            continue
        mine = [g for g in live.groups if g.cluster == cluster and g.region == r]
        groups = [g for g in mine if g.provider == spec.provider and g.account == spec.account and g.managed]
        groups.sort(key=lambda g: (g.created_at, g.version), reverse=True)
        serving = next((i for i, g in enumerate(groups) if g.enabled), -1)
        retained = [g for g in groups[serving + 1:] if not g.enabled]  # older than the newest serving group
        if not retained:
            raise errors.ReconcilerError(f"{cluster} in {r}: no retained disabled group to roll back to")
        target = retained[0]
        changes.append(planner.rollback_to(spec, r, target, mine, commit, reason=(
            f"manual rollback to {target.name} by {by}; Git disagrees until the deploy is reverted")))
    if not changes:
        raise errors.ReconcilerError(f"{cluster}: nothing to roll back")
    return changes


def unknown_target(target: str, names: set[str], what: str, *, where: str = "",
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

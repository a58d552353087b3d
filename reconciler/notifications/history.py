"""The history events notifications need and the core did not record: deploys and status transitions.

Two sources, both written through ``Store.record`` like every other event, so
``reconciler history``, ``reconciler events`` and the outbox see them alike:

- ``DeployTracker`` (used by the executor): one ``deploy_started`` per
  application when its changes are dispatched, and one end event
  (``deploy_succeeded``, ``drift_corrected`` or ``deploy_failed``) when the last
  of its clusters' rollouts ends. A commit status needs exactly this: "every
  cluster the commit changed serves" is a statement about all rollouts of one
  application, which no single execution knows.
- ``transitions`` (called where the engine saves its status): what changed
  since the last status it saw, e.g. a change newly waiting for approval.
  Each pass recomputes the status, so comparing with the previous one records
  an event once, when it starts, not on every pass.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from reconciler import logs
from reconciler.core import clock as clock_mod
from reconciler.core import model
from reconciler.notifications import kinds
from reconciler.state import store as store_mod

_URL_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)
MAX_ERROR_CHARS = 300


def redact(text: str) -> str:
    """Text safe to send: registered secrets and credentials in URLs removed, cut to a short length."""
    text = _URL_USERINFO.sub(r"\1", logs.redact(text))
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


class Result(Protocol):
    """What the tracker reads of an executor result (``executor.ExecutionResult``)."""

    @property
    def change(self) -> model.Change: ...
    @property
    def state(self) -> str: ...
    @property
    def error(self) -> str: ...
    @property
    def step(self) -> str: ...


def change_detail(change: model.Change) -> dict[str, Any]:
    """The parts of a change a message may show: never user data, tags or other spec values."""
    launch = change.desired.launch if change.desired is not None else (
        change.current.launch if change.current is not None else None)
    return {
        "cluster": change.cluster,
        "region": change.region,
        "provider": change.provider,
        "account": change.account,
        "action": change.action.value,
        "image": launch.image if launch is not None else "",
        "server_group": change.desired_server_group or (change.current.name if change.current else ""),
        "change_id": change.change_id,
        "drift": change.reason.startswith("drift"),
    }


def _where(changes: Iterable[Mapping[str, Any]]) -> str:
    by_cluster: dict[str, list[str]] = {}
    for c in changes:
        by_cluster.setdefault(str(c["cluster"]), []).append(str(c["region"]))
    return "; ".join(f"{cluster} in {', '.join(regions)}" for cluster, regions in by_cluster.items())


@dataclass
class _Deploy:
    id: str
    plan_id: str
    application: str
    commit: str
    changes: list[model.Change]
    waiting: set[tuple[str, ...]]
    results: list[Result] = field(default_factory=list)


def _rollout_key(change: model.Change) -> tuple[str, ...]:
    return (change.application, change.cluster, change.provider, change.account)


class DeployTracker:
    """Deploy-level events for the executor; in memory, since a restart re-plans from live state anyway.

    After a restart the next pass dispatches what is left as a new deploy of
    the same commit, whose end event then tells how the commit fared.
    """

    def __init__(self, store: store_mod.Store, clock: clock_mod.Clock) -> None:
        self.store = store
        self.clock = clock
        self._open: dict[tuple[str, tuple[str, ...]], _Deploy] = {}
        self._lock = threading.Lock()

    def started(self, plan_id: str, changes: Sequence[model.Change]) -> None:
        """Record ``deploy_started`` for every application among ``changes`` (called before they run)."""
        by_app: dict[str, list[model.Change]] = {}
        for c in changes:
            by_app.setdefault(c.application, []).append(c)
        for app, app_changes in by_app.items():
            deploy = _Deploy(uuid.uuid4().hex[:12], plan_id, app, app_changes[0].commit, app_changes,
                             {_rollout_key(c) for c in app_changes})
            with self._lock:
                for key in deploy.waiting:
                    self._open[(plan_id, key)] = deploy
            details = [change_detail(c) for c in app_changes]
            images = sorted({d["image"] for d in details if d["image"]})
            self.store.record(
                kinds.DEPLOY_STARTED,
                f"deploying {deploy.commit[:8]}: {_where(details)}" + (f" ({', '.join(images)})" if images else ""),
                self.clock.now(), application=app, cluster=app_changes[0].cluster, commit=deploy.commit,
                detail={"deploy": deploy.id, "plan_id": plan_id, "changes": details},
            )

    def rollout_ended(self, plan_id: str, changes: Sequence[model.Change], results: Sequence[Result]) -> None:
        """One cluster's rollout ended; the last one of its application's deploy records the end event."""
        if not changes:
            return
        key = _rollout_key(changes[0])
        with self._lock:
            deploy = self._open.pop((plan_id, key), None)
            if deploy is None:
                return
            deploy.results.extend(results)
            deploy.waiting.discard(key)
            if deploy.waiting:
                return
        self._record_end(deploy)

    def _record_end(self, deploy: _Deploy) -> None:
        outcome: list[dict[str, Any]] = []
        for r in deploy.results:
            entry = change_detail(r.change) | {"state": r.state}
            if r.state is not model.ExecState.SUCCEEDED:
                entry |= {"step": r.step, "error": redact(r.error)}
            outcome.append(entry)
        failed = [e for e in outcome if e["state"] in (model.ExecState.FAILED, model.ExecState.ROLLED_BACK)]
        detail = {"deploy": deploy.id, "plan_id": deploy.plan_id, "changes": outcome}
        common = {"application": deploy.application, "cluster": deploy.changes[0].cluster, "commit": deploy.commit}
        now = self.clock.now()
        if failed:
            first = failed[0]
            undone = "rolled back; the previous group keeps serving" if first["state"] == model.ExecState.ROLLED_BACK \
                else "not rolled back"
            self.store.record(
                kinds.DEPLOY_FAILED,
                f"deploy of {deploy.commit[:8]} failed: {first['cluster']} in {first['region']}: "
                f"{first['error']} ({undone})", now, region=first["region"], detail=detail, **common)
        elif len(outcome) == len(deploy.changes) and all(e["state"] == model.ExecState.SUCCEEDED for e in outcome):
            kind = kinds.DRIFT_CORRECTED if all(e["drift"] for e in outcome) else kinds.DEPLOY_SUCCEEDED
            verb = "drift corrected" if kind == kinds.DRIFT_CORRECTED else f"{deploy.commit[:8]} deployed"
            self.store.record(kind, f"{verb}: {_where(outcome)} serve(s)", now, detail=detail, **common)
        # else: interrupted (the process is stopping) or started elsewhere; the next deploy tells


# ---------------------------------------------------------------------------- status transitions


@dataclass(frozen=True, slots=True)
class Record:
    """One history event to write: the arguments of ``Store.record`` but the time."""

    kind: str
    message: str
    application: str = ""
    cluster: str = ""
    region: str = ""
    commit: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)


_HELD_KINDS = {model.Hold.APPROVAL.value: kinds.WAITING_FOR_APPROVAL, model.Hold.DENIED.value: kinds.GUARDRAIL_DENIED,
               model.Hold.PLAN_DENIED.value: kinds.GUARDRAIL_DENIED,
               model.Hold.ENV_APPROVAL.value: kinds.WAITING_FOR_APPROVAL}
_STALL_REASONS = {model.SkipKind.STALLED.value: "ChangeFailing", model.SkipKind.UNREADABLE.value: "LiveStateUnreadable"}


def _held_kind(held: Mapping[str, Any]) -> str | None:
    """The notification a held change starts, from the typed hold kind in the status document."""
    return _HELD_KINDS.get(str(held.get("kind", "")))


def _stall_reason(skip: Mapping[str, Any]) -> str | None:
    return _STALL_REASONS.get(str(skip.get("kind", "")))


def _all_held(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Held cluster changes, then held resource changes (``cluster`` ``security_group:NAME``): a narrowed
    ingress waiting for approval is announced like a cluster change waiting for one."""
    return [*(status.get("held") or []), *(status.get("resource_held") or [])]


def _split_key(key: str) -> tuple[str, str]:
    """(region, cluster) of a change key ``provider/account/region/cluster``."""
    parts = key.split("/")
    return (parts[2], parts[3]) if len(parts) == 4 else ("", key)


def _problems_by_file(status: Mapping[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in status.get("problems") or []:
        out.setdefault(str(p).split(":", 1)[0], []).append(str(p))
    return {f: sorted(ps) for f, ps in out.items()}


def _held_as(held: Mapping[str, Any], by_content: bool) -> str:
    """What names a held change across statuses: its content id (the same on a commit that changed another
    file), or its change id in a snapshot saved before statuses had content ids."""
    return str(held.get("content_id") or held["change_id"]) if by_content else str(held["change_id"])


def snapshot(status: Mapping[str, Any]) -> dict[str, Any]:
    """The little of a status that ``transitions`` compares: kept under a key of its own, so a status saved
    by someone else (``reconciler status`` run with other Git credentials) never fakes a transition."""
    return {
        "held_by": "content_id",
        "held": sorted([_held_as(h, True), kind] for h in _all_held(status) if (kind := _held_kind(h)) is not None),
        "stalled": sorted(s["key"] for s in status.get("skipped") or [] if _stall_reason(s)),
        "problems": _problems_by_file(status),
        "source_error": status.get("source_error"),
    }


def transitions(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[Record]:
    """Events for what became true since ``previous`` (a ``snapshot``) in ``current`` (a status). Pure."""
    prev = previous or {}
    commit = str(current.get("commit") or "")
    apps: Mapping[str, Mapping[str, Any]] = current.get("applications") or {}
    app_of = {cluster: name for name, entry in apps.items() for cluster in entry.get("clusters") or []}
    actions = {c["change_id"]: c.get("action", "") for c in current.get("changes") or []}
    out: list[Record] = []

    # a held change is told once, not again on each commit that leaves it as it was: its change id moves
    # with every commit, its content id does not (compared by change id against a snapshot saved before)
    by_content = prev.get("held_by") == "content_id"
    before = {(ident, kind) for ident, kind in prev.get("held") or []}
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}  # one event per application: a freeze holds them all
    for h in _all_held(current):
        kind = _held_kind(h)
        if kind is None or (_held_as(h, by_content), kind) in before:
            continue
        region, cluster = _split_key(h["key"])
        grouped.setdefault((app_of.get(cluster, "") or str(h.get("application") or ""), kind), []).append({
            "cluster": cluster, "region": region, "change_id": h["change_id"], "content_id": h.get("content_id", ""),
            "action": actions.get(h["change_id"]) or str(h.get("action") or "change"), "why": redact(h["why"]),
            "command": h.get("command") or f"reconciler approve {h['change_id']}"})
    for (app, kind), held in grouped.items():
        first = held[0]
        where = ", ".join(f"{h['action']} {h['cluster']} in {h['region']}" for h in held)
        detail: dict[str, Any] = {"change_id": first["change_id"], "action": first["action"],
                                  "changes": [{k: v for k, v in h.items() if k not in ("why", "command")}
                                              for h in held]}
        if kind == kinds.WAITING_FOR_APPROVAL:
            detail["command"] = "; ".join(dict.fromkeys(h["command"] for h in held))
            message = f"{where} wait(s) for approval: {detail['command']}"
        else:
            detail["reason"] = "; ".join(dict.fromkeys(h["why"] for h in held))
            message = f"{where}: {detail['reason']}"
        out.append(Record(kind, message, app, first["cluster"], first["region"] if len(held) == 1 else "", commit,
                          detail))

    stalled_before = set(prev.get("stalled") or [])
    for s in current.get("skipped") or []:
        reason = _stall_reason(s)
        if reason is None or s["key"] in stalled_before:
            continue
        region, cluster = _split_key(s["key"])
        out.append(Record(kinds.STALLED, f"{cluster} in {region} is stalled: {redact(s['reason'])}",
                          s.get("application", ""), cluster, region, commit,
                          {"reason": reason, "message": redact(s["reason"])}))

    broken_before: Mapping[str, list[str]] = prev.get("problems") or {}
    file_app = {entry.get("file"): name for name, entry in apps.items()}
    for file, problems in _problems_by_file(current).items():
        if broken_before.get(file) == problems:
            continue
        # file:line: field — the problem's own words may quote spec values, so they stay in `validate`
        places = [":".join(p.split(":", 3)[:3]) for p in problems]
        out.append(Record(kinds.STALLED, f"{file}: {len(problems)} spec problem(s), first at {places[0]}; "
                          "run `reconciler validate`", str(file_app.get(file, "")), commit=commit,
                          detail={"reason": "SpecInvalid", "file": file, "problems": places[:10]}))

    err, err_before = current.get("source_error"), prev.get("source_error")
    if err and err != err_before:
        out.append(Record(kinds.SOURCE_ERROR, redact(str(err)), commit=commit, detail={"error": redact(str(err))}))
    elif err_before and not err:
        out.append(Record(kinds.SOURCE_RECOVERED, f"the repository is readable again at {commit[:8]}", commit=commit))
    return out


KEY_SNAPSHOT = "notifications/last_status"


def record_transitions(store: store_mod.Store, status: Mapping[str, Any], now: float) -> None:
    """Record what changed since the last status this function saw (called where the engine saves its status)."""
    previous = store.get(KEY_SNAPSHOT)
    store.record_many([(r.kind, r.message, {"application": r.application, "cluster": r.cluster,
                                            "region": r.region, "commit": r.commit, "detail": r.detail})
                       for r in transitions(previous, status)], now)
    current = snapshot(status)
    if current != previous:
        store.put(KEY_SNAPSHOT, current, now)

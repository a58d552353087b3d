"""One history row -> one short notification, and its shape for each kind of target (pure).

A message names the application, clusters, regions, image (the version) and
commit, and the failing step and reason where there is one. It never carries
user data, tags, capacity or any other spec value: only what ``history``
put in an event's detail, which is chosen for that (``history.change_detail``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from reconciler.notifications import kinds

TITLES = {
    kinds.DEPLOY_STARTED: "deploy started",
    kinds.DEPLOY_SUCCEEDED: "deployed",
    kinds.DEPLOY_FAILED: "deploy failed",
    kinds.ROLLED_BACK: "rolled back",
    kinds.WAITING_FOR_APPROVAL: "waiting for approval",
    kinds.STALLED: "stalled",
    kinds.DRIFT_CORRECTED: "drift corrected",
    kinds.SOURCE_ERROR: "source error",
    kinds.SOURCE_RECOVERED: "source readable again",
    kinds.GUARDRAIL_DENIED: "denied by a guardrail",
}
DESCRIPTION_CHARS = 140  # GitHub's limit for a commit status description


@dataclass(frozen=True, slots=True)
class Notification:
    """What every target is told about one event; stored in the outbox as ``doc()``."""

    event_id: int
    kind: str  # notification kind (kinds.KINDS)
    event: str  # history kind it came from
    ts: float
    application: str
    commit: str
    title: str
    text: str
    clusters: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    step: str = ""
    reason: str = ""
    command: str = ""
    change_id: str = ""
    drift: bool = False
    cause: str = ""  # stalled: ChangeFailing, SpecInvalid or LiveStateUnreadable

    @property
    def failure(self) -> bool:
        return self.kind in kinds.FAILURES

    def doc(self) -> dict[str, Any]:
        """The generic webhook body: every field, plus the time as ISO 8601."""
        out = asdict(self)
        for key in ("clusters", "regions", "images"):
            out[key] = list(out[key])
        out["time"] = datetime.fromtimestamp(self.ts, UTC).isoformat().replace("+00:00", "Z")
        out["id"] = f"{self.event_id}"
        return out

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Notification:
        fields = {k: doc[k] for k in cls.__dataclass_fields__ if k in doc}
        for key in ("clusters", "regions", "images"):
            fields[key] = tuple(fields.get(key) or ())
        return cls(**fields)


def _unique(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


def _where(changes: Sequence[Mapping[str, Any]]) -> str:
    """``checkout-main in us-east-1, eu-west-1 (checkout-2.0)``, per cluster."""
    by_cluster: dict[str, tuple[list[str], list[str]]] = {}
    for c in changes:
        regions, images = by_cluster.setdefault(str(c.get("cluster", "")), ([], []))
        regions.append(str(c.get("region", "")))
        if c.get("image") and c["image"] not in images:
            images.append(str(c["image"]))
    parts = []
    for cluster, (regions, images) in by_cluster.items():
        parts.append(f"{cluster} in {', '.join(_unique(regions))}" + (f" ({', '.join(images)})" if images else ""))
    return "; ".join(parts)


def _actions(changes: Sequence[Mapping[str, Any]], detail: Mapping[str, Any]) -> str:
    """``replace checkout-main in us-east-1, eu-west-1`` for held changes (grouped by action and cluster)."""
    by: dict[tuple[str, str], list[str]] = {}
    for c in changes:
        by.setdefault((str(c.get("action") or detail.get("action") or "change"), str(c.get("cluster", ""))),
                      []).append(str(c.get("region", "")))
    return "; ".join(f"{action} {cluster} in {', '.join(_unique(regions))}"
                     for (action, cluster), regions in by.items())


def from_event(row: Mapping[str, Any]) -> Notification | None:
    """The notification for one history row (``Store.events_after``), or None for rows nobody is told of."""
    detail: Mapping[str, Any] = row.get("detail") or {}
    kind = kinds.notification_kind(str(row["kind"]), detail)
    if kind is None:
        return None
    app = str(row.get("application") or "")
    commit = str(row.get("commit") or "")
    short = commit[:8]
    changes: list[Mapping[str, Any]] = list(detail.get("changes") or [])
    if not changes and row.get("cluster"):
        changes = [{"cluster": row["cluster"], "region": row.get("region", ""), "image": detail.get("image", "")}]
    step, reason, command = "", "", str(detail.get("command") or "")
    where = _where(changes)
    event = str(row["kind"])
    if event == kinds.DEPLOY_STARTED:
        text = f"deploying {short}: {where}"
    elif event == kinds.DEPLOY_SUCCEEDED and kind == kinds.ROLLED_BACK:
        text = f"rolled back at {short}: {where} serve(s) again"
    elif event == kinds.DEPLOY_SUCCEEDED:
        text = f"{short} serves: {where}"
    elif event == kinds.DRIFT_CORRECTED:
        text = f"drift corrected at {short}: {where}"
    elif event == kinds.DEPLOY_FAILED:
        failed = [c for c in changes if c.get("state") in ("failed", "rolled_back")] or changes
        first = failed[0] if failed else {}
        step, reason = str(first.get("step", "")), str(first.get("error", ""))
        undone = "rolled back, the previous group keeps serving" if first.get("state") == "rolled_back" \
            else "not rolled back"
        text = (f"deploy of {short} failed: {first.get('cluster', '')} in {first.get('region', '')}: "
                f"{step} failed: {reason} ({undone})")
        where = _where(failed)
    elif event == kinds.EXECUTION_ROLLED_BACK:
        step, reason = str(detail.get("step", "")), str(detail.get("error", ""))
        text = f"{where} rolled back at {short} after {step} failed: {reason}; the previous group keeps serving"
    elif kind == kinds.WAITING_FOR_APPROVAL:
        text = f"{_actions(changes, detail)} at {short} wait(s) for approval: run `{command}`"
    elif kind == kinds.GUARDRAIL_DENIED:
        reason = str(detail.get("reason", ""))
        text = f"{_actions(changes, detail)} at {short}: {reason}"
    elif kind == kinds.STALLED:
        reason = str(detail.get("message") or detail.get("reason") or "")
        text = f"{row.get('message', '')} (at {short})"
    elif kind == kinds.SOURCE_ERROR:
        reason = str(detail.get("error") or row.get("message", ""))
        text = f"{reason}; {short or 'the last good commit'} stays in force"
    else:  # source_recovered
        text = str(row.get("message", ""))
    title = f"{app}: {TITLES[kind]}" if app else f"reconciler: {TITLES[kind]}"
    return Notification(
        event_id=int(row["id"]), kind=kind, event=event, ts=float(row["ts"]), application=app, commit=commit,
        title=title, text=text,
        clusters=_unique([str(c.get("cluster", "")) for c in changes]),
        regions=_unique([str(c.get("region", "")) for c in changes]),
        images=_unique([str(c.get("image", "")) for c in changes]),
        step=step, reason=reason, command=command, change_id=str(detail.get("change_id") or ""),
        drift=bool(changes) and all(bool(c.get("drift")) for c in changes),
        cause=str(detail.get("reason") or "") if kind == kinds.STALLED else "",
    )


# ---------------------------------------------------------------------------- commit statuses


def commit_status(n: Notification) -> tuple[str, str] | None:
    """``(state, description)`` for the commit of ``n``: pending, running, success or failure; None: no status.

    One status per application (the context names it): ``running`` while it
    rolls out, ``success`` when every cluster the commit changed serves,
    ``failure`` with the reason. Drift corrections and unreadable live state are not about a commit.
    """
    if not n.application or not n.commit or n.drift or n.cause == "LiveStateUnreadable":
        return None  # a cloud API being down says nothing about the commit
    where = ", ".join(f"{c}" for c in n.clusters)
    regions = ", ".join(n.regions)
    if n.event == kinds.DEPLOY_STARTED:
        state, text = "running", f"rolling out {where} in {regions}"
    elif n.event == kinds.DEPLOY_SUCCEEDED:
        state, text = "success", f"{where} serve(s) in {regions}"
    elif n.kind in (kinds.DEPLOY_FAILED, kinds.GUARDRAIL_DENIED, kinds.STALLED):
        state, text = "failure", n.text
    elif n.kind == kinds.WAITING_FOR_APPROVAL:
        state, text = "pending", f"waiting for approval: {n.command}"
    else:
        return None
    return state, text if len(text) <= DESCRIPTION_CHARS else text[: DESCRIPTION_CHARS - 3] + "..."


# ---------------------------------------------------------------------------- chat and mail shapes


def _facts(n: Notification) -> list[tuple[str, str]]:
    facts = [("Application", n.application), ("Clusters", ", ".join(n.clusters)), ("Regions", ", ".join(n.regions)),
             ("Version", ", ".join(n.images)), ("Commit", n.commit[:12])]
    if n.step:
        facts.append(("Failed step", n.step))
    return [(k, v) for k, v in facts if v]


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack(n: Notification) -> dict[str, Any]:
    """A Slack incoming-webhook body: ``text`` for notifications and old clients, blocks for the channel."""
    facts = " | ".join(f"{k}: {_slack_escape(v)}" for k, v in _facts(n))
    return {
        "text": f"{n.title}: {n.text}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn",
                                         "text": f"*{_slack_escape(n.title)}*\n{_slack_escape(n.text)}"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": facts or n.kind}]},
        ],
    }


def teams(n: Notification) -> dict[str, Any]:
    """A Microsoft Teams workflow webhook body: one Adaptive Card."""
    return {
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": None,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    {"type": "TextBlock", "text": n.title, "weight": "Bolder", "wrap": True,
                     "color": "Attention" if n.failure else "Default"},
                    {"type": "TextBlock", "text": n.text, "wrap": True},
                    {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in _facts(n)]},
                ],
            },
        }],
    }


def email(n: Notification) -> tuple[str, str]:
    """(subject, plain-text body)."""
    body = [n.text, ""] + [f"{k}: {v}" for k, v in _facts(n)] + ["", f"event {n.event_id} ({n.event})"]
    return f"[reconciler] {n.title}", "\n".join(body) + "\n"


def webhook(n: Notification) -> bytes:
    return json.dumps(n.doc(), sort_keys=True).encode()

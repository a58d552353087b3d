"""Which targets hear of a notification: ``notify:`` rules in ``policies.yaml`` (pure).

Rules are layered like every guardrail setting (built-in < ``defaults`` <
``criticality.<level>`` < ``applications.<app>`` < ``clusters.<cluster>``, the
most specific ``notify`` list replacing the others). The built-in rule sends
every event to every chat/mail/webhook target. Commit-status targets are not
routed by rules: they hear of every application's deploys, and set a status
only for the events that have one.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from reconciler.notifications import kinds, messages
from specs import policy_file


def targets_for(
    n: messages.Notification,
    policies: policy_file.PolicySettings,
    criticality: Mapping[str, str],
    notify_targets: Collection[str],
    status_targets: Collection[str] = (),
) -> tuple[set[str], set[str]]:
    """(target names that get ``n``, names the rules mention that no target has)."""
    if n.application:
        crit = criticality.get(n.application, "normal")
        layers: list[Mapping[str, Any]] = [policies.for_cluster(n.application, c, crit)
                                           for c in (n.clusters or ("",))]
    else:
        layers = [policies.global_settings()]
    chosen: set[str] = set()
    unknown: set[str] = set()
    for layer in layers:
        for rule in layer.get("notify") or []:
            events = rule.get("events") or [kinds.ALL]
            if kinds.ALL not in events and n.kind not in events:
                continue
            names = rule.get("targets") or []
            if kinds.ALL in names:
                chosen |= set(notify_targets)
                continue
            chosen |= {t for t in names if t in notify_targets}
            unknown |= {t for t in names if t not in notify_targets and t not in status_targets}
    if status_targets and messages.commit_status(n) is not None:
        chosen |= set(status_targets)
    return chosen, unknown

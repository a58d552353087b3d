"""The events a notification rule can select, and how history kinds map onto them.

History kinds are a contract (``reconciler history``, ``reconciler events``,
``GET /api/v1/events``): new ones are added, none is renamed. Notification
kinds are the words users write in ``policies.yaml`` (``notify: [{events: [...]}]``);
most are history kinds of the same name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEPLOY_STARTED = "deploy_started"
DEPLOY_SUCCEEDED = "deploy_succeeded"
DEPLOY_FAILED = "deploy_failed"
ROLLED_BACK = "rolled_back"
WAITING_FOR_APPROVAL = "waiting_for_approval"
STALLED = "stalled"
DRIFT_CORRECTED = "drift_corrected"
SOURCE_ERROR = "source_error"
SOURCE_RECOVERED = "source_recovered"
GUARDRAIL_DENIED = "guardrail_denied"

KINDS: tuple[str, ...] = (
    DEPLOY_STARTED, DEPLOY_SUCCEEDED, DEPLOY_FAILED, ROLLED_BACK, WAITING_FOR_APPROVAL, STALLED,
    DRIFT_CORRECTED, SOURCE_ERROR, SOURCE_RECOVERED, GUARDRAIL_DENIED,
)
"""Every notification kind, in the order the documentation lists them."""

ALL = "*"

EXECUTION_ROLLED_BACK = "execution_rolled_back"  # recorded by the executor since the first release

FAILURES = frozenset({DEPLOY_FAILED, ROLLED_BACK, STALLED, SOURCE_ERROR, GUARDRAIL_DENIED})


def notification_kind(history_kind: str, detail: Mapping[str, Any]) -> str | None:
    """The notification kind of one history row, or None when nobody is told about it.

    A deploy whose every change is a rollback (a revert to a retained version,
    or ``reconciler rollback``) is reported as ``rolled_back``, like a failed
    change the executor rolled back by itself.
    """
    if history_kind == EXECUTION_ROLLED_BACK:
        return ROLLED_BACK
    if history_kind == DEPLOY_SUCCEEDED:
        changes = detail.get("changes") or []
        if changes and all(c.get("action") == "rollback" for c in changes):
            return ROLLED_BACK
        return DEPLOY_SUCCEEDED
    if history_kind in KINDS and history_kind != ROLLED_BACK:
        return history_kind
    return None

"""The policies every plan is judged by, and the settings they read.

``PolicyContext.settings`` holds:

* ``policies``: the ``specs.policy_file.PolicySettings`` of the commit (layers resolved per change by
  ``PolicyContext.for_change``);
* ``freeze_switch``: ``{"by", "reason"}`` from ``reconciler freeze``, or None;
* ``commit_signature``: ``{"verified", "key", "reason"}`` when signatures are required;
* ``prune``: the daemon's prune setting.
"""

from __future__ import annotations

from typing import Any

from policies import (
    allow_lists,
    blast_radius,
    capacity_guard,
    freeze,
    mass_deletion,
    protected_accounts,
    region_waves,
    signed_commits,
    traffic_guard,
    windows,
)
from policies.base import Policy


def default_policies() -> list[Policy]:
    return [
        traffic_guard.POLICY, mass_deletion.POLICY, capacity_guard.POLICY, region_waves.POLICY,
        allow_lists.POLICY, windows.POLICY, freeze.POLICY, blast_radius.POLICY, protected_accounts.POLICY,
        signed_commits.POLICY,
    ]


def context_settings(policy_file_result: Any, *, prune: bool, freeze_switch: dict[str, Any] | None = None,
                     commit_signature: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"policies": policy_file_result, "prune": prune, "freeze_switch": freeze_switch,
            "commit_signature": commit_signature}

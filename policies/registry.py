"""The policies every plan is judged by, and the settings they read.

``PolicyContext.settings`` is the mapping ``context_settings`` builds:

* ``policies``: the ``specs.policy_file.PolicySettings`` of the commit being
  reconciled (built-in defaults when the repository has no ``policies.yaml``).
  Rules never read its layers directly: ``PolicyContext.for_change`` resolves
  them for one change (built-in < ``defaults`` < criticality < application <
  cluster) and ``PolicyContext.global_settings`` gives the plan-wide values
  (``mass_deletion``, ``blast_radius``, ``signed_commits``);
* ``freeze_switch``: ``{"by": ..., "reason": ...}`` set by ``reconciler freeze``
  or the HTTP API, or None;
* ``commit_signature``: ``{"verified": bool, "key": ..., "reason": ...}`` from
  the git source when signatures are required, else None;
* ``prune``: the daemon's prune setting, for messages.

The order of ``default_policies`` is the order verdicts appear in a plan: the
safety rules first, the approval report last.
"""

from __future__ import annotations

from typing import Any

from policies import (
    allow_lists,
    approvals,
    blast_radius,
    capacity_guard,
    criticality,
    freeze,
    mass_deletion,
    policy_file_guard,
    protected_accounts,
    region_waves,
    resource_guard,
    signed_commits,
    traffic_guard,
    windows,
)
from policies.base import Policy
from specs import policy_file


def default_policies() -> list[Policy]:
    return [
        policy_file_guard.POLICY, traffic_guard.POLICY, mass_deletion.POLICY, capacity_guard.POLICY,
        region_waves.POLICY, allow_lists.POLICY, windows.POLICY, freeze.POLICY, blast_radius.POLICY,
        protected_accounts.POLICY, criticality.POLICY, signed_commits.POLICY, resource_guard.POLICY,
        approvals.POLICY,
    ]


def context_settings(policy_file_result: Any, *, prune: bool, freeze_switch: dict[str, Any] | None = None,
                     commit_signature: dict[str, Any] | None = None) -> dict[str, Any]:
    """``PolicyContext.settings`` for one pass.

    ``policy_file_result`` is a ``PolicySettings``, the ``(settings, problems)``
    pair ``load_policy_file`` returns, or None for the built-in defaults.
    """
    if isinstance(policy_file_result, tuple):
        policy_file_result = policy_file_result[0]
    if policy_file_result is None:
        policy_file_result = policy_file.PolicySettings()
    return {"policies": policy_file_result, "prune": prune, "freeze_switch": freeze_switch,
            "commit_signature": commit_signature}

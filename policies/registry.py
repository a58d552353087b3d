"""The policies every plan is judged by.

What they read is a typed ``policies.base.PolicyContext``:

* ``policy_file``: the ``specs.policy_file.PolicySettings`` of the commit being
  reconciled (built-in defaults when the repository has no ``policies.yaml``).
  Rules never read its layers directly: ``PolicyContext.for_change`` resolves
  them for one change (built-in < ``defaults`` < criticality < application <
  cluster) and ``PolicyContext.global_settings`` gives the plan-wide values
  (``mass_deletion``, ``blast_radius``, ``signed_commits``);
* ``freeze_switch``: a ``Freeze`` set by ``reconciler freeze`` or the HTTP API, or None;
* ``commit_signature``: a ``Signature`` from the git source when signatures are
  required, else None;
* ``prune``: the daemon's prune setting, for messages.

The order of ``default_policies`` is the order verdicts appear in a plan: the
safety rules first, the approval report last.
"""

from __future__ import annotations

from policies import (
    allow_lists,
    approvals,
    blast_radius,
    capacity_guard,
    criticality,
    freeze,
    manual_judgment,
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


def default_policies() -> list[Policy]:
    return [
        policy_file_guard.POLICY, traffic_guard.POLICY, mass_deletion.POLICY, capacity_guard.POLICY,
        region_waves.POLICY, allow_lists.POLICY, windows.POLICY, freeze.POLICY, blast_radius.POLICY,
        protected_accounts.POLICY, criticality.POLICY, signed_commits.POLICY, resource_guard.POLICY,
        manual_judgment.POLICY, approvals.POLICY,
    ]

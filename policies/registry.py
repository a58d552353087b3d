"""The policies every plan is judged by, and the settings they read.

``context_settings`` flattens the repository's ``policies.yaml`` (as loaded by
``specs.policy_file``) and the runtime switches into ``PolicyContext.settings``.
"""

from __future__ import annotations

from typing import Any

from policies import mass_deletion, traffic_guard
from policies.base import Policy


def default_policies() -> list[Policy]:
    return [traffic_guard.POLICY, mass_deletion.POLICY]


def context_settings(policy_file_result: Any, *, prune: bool, freeze_switch: dict[str, Any] | None) -> dict[str, Any]:
    settings: dict[str, Any] = dict(policy_file_result or {}) if isinstance(policy_file_result, dict) else {}
    settings["prune"] = prune
    settings["freeze_switch"] = freeze_switch
    return settings

"""Saved plans: the JSON contract plus what ``apply --plan`` needs to check it is still current."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from reconciler import errors, model, render

FORMAT_VERSION = 1


def dump_plan(plan: model.Plan) -> str:
    doc = render.render_json(plan)
    doc["format_version"] = FORMAT_VERSION
    return json.dumps(doc, indent=2, sort_keys=True)


@dataclass(frozen=True, slots=True)
class SavedPlan:
    """What ``apply --plan`` checks against the present: the plan id, its commit and live fingerprint."""

    plan_id: str
    commit: str
    live_fingerprint: str
    document: dict[str, Any]


def load_plan(text: str, *, file: str) -> SavedPlan:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise errors.ReconcilerError(f"{file}:{exc.lineno}: not a saved plan (invalid JSON: {exc.msg})") from exc
    if not isinstance(doc, dict):
        raise errors.ReconcilerError(f"{file}: not a saved plan (expected a JSON object)")
    for key in ("plan_id", "commit", "live_fingerprint", "format_version", "changes"):
        if key not in doc:
            raise errors.ReconcilerError(
                f"{file}: not a saved plan (missing {key!r}); write one with `reconciler plan --format json --out`")
    if doc["format_version"] != FORMAT_VERSION:
        raise errors.ReconcilerError(f"{file}: saved plan format {doc['format_version']} is not supported")
    return SavedPlan(str(doc["plan_id"]), str(doc["commit"]), str(doc["live_fingerprint"]), doc)

"""Saved plans: the JSON contract plus what ``apply --plan`` needs to check it is still current."""

from __future__ import annotations

import json
from typing import Any

from reconciler import errors, model, render

FORMAT_VERSION = 1


def dump_plan(plan: model.Plan) -> str:
    doc = render.render_json(plan)
    doc["format_version"] = FORMAT_VERSION
    return json.dumps(doc, indent=2, sort_keys=True)


def load_plan(text: str, *, file: str) -> model.Plan:
    """A stub Plan carrying what the stale-plan checks compare: plan id, commit and live fingerprint."""
    try:
        doc: dict[str, Any] = json.loads(text)
    except json.JSONDecodeError as exc:
        raise errors.ReconcilerError(f"{file}:{exc.lineno}: not a saved plan (invalid JSON: {exc.msg})") from exc
    for key in ("plan_id", "commit", "live_fingerprint", "format_version"):
        if key not in doc:
            raise errors.ReconcilerError(f"{file}: not a saved plan (missing {key!r}); use plan --format json --out")
    return _SavedPlan(doc["commit"], (), live_fingerprint=doc["live_fingerprint"], saved_id=doc["plan_id"])


class _SavedPlan(model.Plan):
    __slots__ = ("saved_id",)

    def __init__(self, commit: str, changes: tuple[model.Change, ...], *, live_fingerprint: str,
                 saved_id: str) -> None:
        super().__init__(commit, changes, live_fingerprint=live_fingerprint)
        object.__setattr__(self, "saved_id", saved_id)

    @property
    def plan_id(self) -> str:
        return str(self.saved_id)

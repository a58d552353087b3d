"""Loading ``policies.yaml`` from the spec root (validated like specs, with file:line errors)."""

from __future__ import annotations

from typing import Any

from reconciler import errors
from specs import yamlnodes


def load_policy_file(text: str, *, file: str) -> tuple[dict[str, Any], list[errors.SpecProblem]]:
    if not text.strip():
        return {}, []
    try:
        value, _lines = yamlnodes.load_yaml_with_lines(text, file=file)
    except errors.SpecError as exc:
        return {}, list(exc.problems)
    if value is None:
        return {}, []
    if not isinstance(value, dict):
        return {}, [errors.SpecProblem(file, 1, "", "policies.yaml must be a mapping of settings")]
    return value, []

"""JSON text for people and files, encoded in one pass of the C encoder.

``json.dumps(doc, indent=2)`` falls back to the pure-Python encoder (one call
per value: minutes of a fleet's plan); the C encoder only writes compact text.
So the text is written compactly and then re-indented by msgspec's formatter,
which changes whitespace only: the bytes are those ``indent=2`` writes.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec


def compact(doc: Any, *, ensure_ascii: bool = True, allow_nan: bool = False) -> str:
    """Sorted keys, no whitespace: the canonical form digests are taken of."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=ensure_ascii, allow_nan=allow_nan)


def pretty(doc: Any, *, ensure_ascii: bool = True, allow_nan: bool = True) -> str:
    """Exactly ``json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=..., allow_nan=...)``, at C speed."""
    try:
        return reindent(compact(doc, ensure_ascii=ensure_ascii, allow_nan=allow_nan))
    except msgspec.DecodeError:  # NaN or Infinity (allow_nan): not JSON to the formatter; the slow path writes it
        return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=ensure_ascii, allow_nan=allow_nan)


def reindent(text: str) -> str:
    """Compact JSON text indented by two spaces a level (strings, numbers and escapes kept as written)."""
    out: str = msgspec.json.format(text, indent=2)
    return out

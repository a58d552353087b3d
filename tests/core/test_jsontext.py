"""Streamed JSON (``jsontext.pieces``): the same bytes as ``json.dumps``, made one item at a time."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.core import jsontext

_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
            | st.text(max_size=6))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=3), inner, max_size=4), max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(_values, st.booleans(), st.integers(min_value=0, max_value=4))
def test_pieces_join_to_compact_and_indented_text(value: Any, ascii_only: bool, depth: int) -> None:
    parts = list(jsontext.pieces(value, ensure_ascii=ascii_only, depth=depth))
    assert "".join(c for c, _ in parts) == jsontext.compact(value, ensure_ascii=ascii_only)
    assert "".join(p for _, p in parts) == json.dumps(value, indent=2, sort_keys=True, ensure_ascii=ascii_only)


def test_items_are_made_while_they_are_written() -> None:
    made: list[int] = []

    def change(i: int) -> dict[str, Any]:
        made.append(i)
        return {"id": i, "steps": [{"kind": "create", "n": i}], "note": "é\n"}

    doc = {"changes": jsontext.Items(change, range(1000)), "empty": jsontext.Items(change, ()), "plan_id": "p"}
    out: list[str] = []
    stream = jsontext.pieces(doc, ensure_ascii=False)
    for _, text in stream:
        out.append(text)
        if len(made) == 1:
            break
    assert made == [0]  # the first change is written before the second is made
    out.extend(p for _, p in stream)
    assert len(made) == 1000
    eager = {"changes": [change(i) for i in range(1000)], "empty": [], "plan_id": "p"}
    assert "".join(out) == json.dumps(eager, indent=2, sort_keys=True, ensure_ascii=False)
    written: list[str] = []
    jsontext.write_pretty(doc, written.append)
    assert "".join(written) == json.dumps(eager, indent=2, sort_keys=True)


def test_not_json_numbers_as_json_dumps_writes_them() -> None:
    odd = {"x": [float("nan"), {"y": float("inf")}], "z": -float("inf")}
    assert "".join(p for _, p in jsontext.pieces(odd, allow_nan=True, depth=1)) == json.dumps(
        odd, indent=2, sort_keys=True)

"""Streamed JSON (``jsontext.pieces``): the same bytes as ``json.dumps``, made one item at a time."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.core import jsontext, model

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


_any_float = st.floats() | st.sampled_from([1e16, 1e-4, 9.999e-5, 1e-5, 5e-324, -0.0, 1e300, float("inf")])
_keys = st.text(max_size=3) | st.integers() | st.booleans() | st.none() | st.floats(allow_nan=False)
_anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63, max_value=2**80) | _any_float
    | st.text(alphabet=st.characters(), max_size=6) | st.just("\ud800") | st.just("\x7f\u2028\x00")
    | st.sampled_from(list(model.Action)) | st.sampled_from(list(model.Verdict)),
    lambda inner: st.lists(inner, max_size=4) | st.lists(inner, max_size=3).map(tuple)
    | st.dictionaries(st.text(max_size=3), inner, max_size=4) | st.dictionaries(_keys, inner, max_size=3),
    max_leaves=20)


def _dumps(value: Any, ensure_ascii: bool, allow_nan: bool) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=ensure_ascii, allow_nan=allow_nan)
    except (TypeError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"


@settings(max_examples=1500, deadline=None)
@given(_anything, st.booleans(), st.booleans())
def test_compact_is_json_dumps_whatever_the_value(value: Any, ascii_only: bool, allow_nan: bool) -> None:
    """msgspec writes it where the text is the same; ``json`` the rest: floats outside 1e-4..1e16, NaN and
    infinity (refused, or written as ``json`` writes them), keys that are not strings, lone surrogates."""
    try:
        got = jsontext.compact(value, ensure_ascii=ascii_only, allow_nan=allow_nan)
    except (TypeError, ValueError) as exc:
        got = f"{type(exc).__name__}: {exc}"
    assert got == _dumps(value, ascii_only, allow_nan)


def test_every_character_is_written_as_json_writes_it() -> None:
    text = "".join(chr(i) for i in range(0x110000) if not 0xD800 <= i < 0xE000)
    for ascii_only in (True, False):
        assert jsontext.compact({"t": text}, ensure_ascii=ascii_only) == _dumps({"t": text}, ascii_only, False)


def test_msgspec_writes_what_a_plan_holds_and_json_the_rest() -> None:
    change = {"action": "replace", "capacity": {"min": 1, "desired": 2, "max": 6}, "timeout_s": 600.0,
              "pause_s": 0.0, "weight": 0.001, "image": "ü-1.0", "after": ("a", "b"), "desired": None}
    assert jsontext._by_msgspec(change) == json.dumps(change, sort_keys=True, separators=(",", ":"),
                                                      ensure_ascii=False)
    for odd in ({"x": 1e16}, {"x": 1e-5}, {"x": float("nan")}, {"x": -float("inf")}, {1: "one"}):
        assert jsontext._by_msgspec(odd) is None, odd

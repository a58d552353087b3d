"""Sharing equal texts never hands back a value of another type: ``(1,) == (True,) == (1.0,)``."""

from __future__ import annotations

from typing import Any

from specs import sharing


def test_a_tuple_with_a_bool_or_a_float_is_never_swapped_for_an_equal_one() -> None:
    table: dict[Any, Any] = {}
    ints = sharing._strs(("port", 1), table)
    for other in (("port", True), ("port", 1.0), (("port", True),)):
        got = sharing._strs(other, table)
        assert got is other and [type(v) for v in got] == [type(v) for v in other]
    assert sharing._strs(("port", 1), table) is ints  # texts and ints: shared


def test_equal_texts_come_back_as_one_object() -> None:
    table: dict[Any, Any] = {}
    a = sharing._strs(("us-east-1", "eu-west-1"), table)
    b = sharing._strs(tuple("".join(p) for p in (("us-", "east-1"), ("eu-", "west-1"))), table)
    assert a is b and a[0] is b[0]

"""Change ids: one encoding gives the id (as it always was) and the content id (the same but for the commit)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from reconciler.core import model

_LEAF = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
         | st.just("\x00commit\x00"))  # what content_ids marks the commit with: found, and encoded apart
_VALUE = st.recursive(_LEAF, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(["commit", "a", "zz", "ü", ""]), inner, max_size=3),
                      max_leaves=8)
_KEYS = st.sampled_from(["account", "action", "application", "cluster", "comm", "commit0", "current", "desired",
                         "steps", "wave", "Z", "", "é"])


def _old(content: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]


@given(st.dictionaries(_KEYS, _VALUE, max_size=6), st.text())
def test_the_id_is_the_hash_of_the_whole_canonical_json_and_the_content_id_of_all_but_the_commit(
        rest: dict[str, Any], commit: str) -> None:
    content = {**rest, "commit": commit}
    change_id, content_id = model.content_ids(dict(content))  # it writes into the dict it is given
    assert change_id == _old(content)
    assert content_id == _old(rest)


def test_a_change_on_another_commit_keeps_its_content_id_and_its_verdicts_keep_both() -> None:
    change = model.Change("checkout", "checkout-main", "local", "default", "us-east-1", model.Action.REPLACE, (),
                          spec_hash="abc", commit="a" * 40)
    moved = model.replaced(change, "commit", "b" * 40)
    assert moved.change_id != change.change_id and moved.content_id == change.content_id
    assert change.change_id == _old(change.content())
    judged = model.with_verdicts(moved, (model.PolicyVerdict("freeze", model.Verdict.DENY, "frozen"),))
    assert (judged.change_id, judged.content_id) == (moved.change_id, moved.content_id)

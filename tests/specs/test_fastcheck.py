"""The compiled acceptance check says "valid" exactly where cerberus does (``specs.fastcheck``).

Documents are drawn from the schema itself, every field of it, mostly valid and with mistakes
sprinkled at any depth (null, another type, out of range, too long, empty, control characters,
unknown or missing fields), and each is judged by both. The check may only ever be stricter than
cerberus (that costs a cerberus run, never a wrong verdict); in fact they agree on every draw.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from specs import fastcheck, schema, validator
from tests.specs import hostile, spec_helpers

ROOT = Path(__file__).resolve().parents[2]
MISTAKES: list[Any] = [None, "", "x", "\x1b[31m", "a\nb", -1, 0, 1.5, 10**12, True, [], {}, ["x"], {"x": 1},
                       "99999d", "10m", "us-east-1"]


def cerberus_accepts(doc: Any) -> bool:
    return bool(validator.for_specs().validate(doc, normalize=False))


def _types(rules: dict[str, Any]) -> list[str]:
    kind = rules.get("type")
    return [kind] if isinstance(kind, str) else list(kind or ["string"])


@st.composite
def value_for(draw: st.DrawFn, rules: dict[str, Any], depth: int = 0) -> Any:
    """A value for one field's rules: valid most of the time, a mistake now and then."""
    if draw(st.integers(0, 59)) == 37:  # not a bound: Hypothesis favours those
        return draw(st.sampled_from(MISTAKES))
    if "allowed" in rules:
        return draw(st.sampled_from(list(rules["allowed"])))
    kind = draw(st.sampled_from(_types(rules)))
    if kind == "string":
        if "regex" in rules:
            return draw(st.from_regex(rules["regex"], fullmatch=True).filter(lambda s: len(s) <= 40))
        low = 1 if rules.get("empty") is False else 0
        printable = st.characters(codec="utf-8").filter(str.isprintable)
        return draw(st.text(printable, min_size=low, max_size=min(rules.get("maxlength", 20), 20)))
    if kind in ("integer", "float", "number"):
        low, high = rules.get("min", -5), rules.get("max", 10**6)
        if kind == "float" and draw(st.booleans()):
            return draw(st.floats(low, high, allow_nan=False))
        return draw(st.integers(int(low), int(min(high, 10**6))))
    if kind == "boolean":
        return draw(st.booleans())
    if kind == "list":
        item = rules.get("schema", {"type": "string"})
        low = rules.get("minlength", 0)
        high = max(low, min(rules.get("maxlength", 2), 2))
        return draw(st.lists(value_for(item, depth + 1), min_size=low, max_size=high))
    if kind == "dict":
        if "schema" in rules:
            return draw(document(rules["schema"], depth + 1))
        keys = rules.get("keysrules", {"type": "string"})
        values = rules.get("valuesrules", {"type": "string"})
        hashable = value_for(keys, depth + 1).filter(lambda k: not isinstance(k, list | dict))
        return draw(st.dictionaries(hashable, value_for(values, depth + 1), max_size=3))
    raise AssertionError(f"no strategy for type {kind}")


@st.composite
def document(draw: st.DrawFn, fields: dict[str, Any], depth: int = 0) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for name, rules in fields.items():
        if rules.get("required") or draw(st.integers(0, 2)) > 0:
            doc[name] = draw(value_for(rules, depth))
    roll = draw(st.integers(0, 59))
    if roll == 37 and doc:
        del doc[draw(st.sampled_from(sorted(doc)))]  # perhaps a required one
    elif roll == 38:
        doc[draw(st.sampled_from(["colour", "Provider", "1", "clusters "]))] = 1  # unknown field
    return doc


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(document(schema.APPLICATION))
def test_the_check_accepts_what_cerberus_accepts_and_nothing_else(doc: dict[str, Any]) -> None:
    verdict = cerberus_accepts(doc)
    event("valid" if verdict else "invalid")
    assert schema._accepts()(doc) == verdict, doc


def _corpus() -> list[Any]:
    texts = [spec_helpers.VALID.replace('"{{ values.checkout_image }}"', "checkout-1"), hostile.KEEP,
             spec_helpers.minimal(), (ROOT / "examples/desired-state/apps/payments.yaml").read_text()]
    return [yaml.safe_load(t) for t in texts]


@pytest.mark.parametrize("doc", _corpus(), ids=["every-field", "keep", "minimal", "payments-example"])
def test_the_documented_specs_are_accepted_without_cerberus(doc: Any) -> None:
    assert cerberus_accepts(doc)
    assert schema._accepts()(doc)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile.spec_document())
def test_hostile_documents_get_cerberus_verdict(text: str) -> None:
    try:
        doc = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError):  # PyYAML's composer recurses per level of a deeply nested list
        return  # (the loader's own walk refuses such a depth first: tests/core/test_hostile_specs.py)
    if isinstance(doc, dict):
        assert schema._accepts()(doc) == cerberus_accepts(doc), doc


def test_a_rule_the_check_does_not_mirror_is_refused_when_it_is_built() -> None:
    with pytest.raises(fastcheck.UnknownRule, match="dependencies"):
        fastcheck.compile_schema({"a": {"type": "string", "dependencies": "b"}}, schema.STRICT_TYPES,
                                 schema.printable, schema.parse_seconds)


def test_a_valid_tree_is_validated_without_cerberus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[int] = []
    real = validator.StrictValidator.validate

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(self, *args, **kwargs)

    checks: list[int] = []
    fast = schema._accepts()

    def counted_check(doc: Any) -> bool:
        checks.append(1)
        return fast(doc)

    monkeypatch.setattr(validator.StrictValidator, "validate", counting)
    monkeypatch.setattr(schema, "_accepts", lambda: counted_check)
    good = yaml.safe_load(hostile.KEEP)
    assert schema.validate(good, {}, file="keep.yaml") == []
    assert (calls, checks) == ([], [1]), "a good document is checked once, by the fast check alone"
    bad = yaml.safe_load(textwrap.dedent(hostile.KEEP).replace("instance_type: small", "instance_type: 7"))
    problems = schema.validate(bad, {}, file="keep.yaml")
    assert [p.field for p in problems] == ["clusters[0].instance_type"]  # cerberus wrote the message
    assert (calls, checks) == ([1], [1, 1])


@pytest.mark.parametrize(("ours", "cerberus_types"), [(schema.TYPES, validator.Validator.types_mapping),
                                                      (schema.STRICT_TYPES, validator.StrictValidator.types_mapping)])
def test_the_fast_checks_types_are_cerberus_types(ours: dict[str, Any], cerberus_types: dict[str, Any]) -> None:
    """The fast check knows cerberus's types without importing it: the two tables say the same per name."""
    def flat(types: tuple[Any, ...]) -> set[type]:  # cerberus nests a tuple of int types in its own tuples
        return {t for item in types for t in (item if isinstance(item, tuple) else (item,))}

    assert set(ours) == set(cerberus_types)
    for name, d in cerberus_types.items():
        assert (flat(ours[name].included_types), flat(ours[name].excluded_types)) == \
               (flat(d.included_types), flat(d.excluded_types)), name


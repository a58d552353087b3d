"""Cerberus's verdict on a valid spec, without cerberus: the schema compiled once into plain checks.

Cerberus interprets its schema afresh for every value (a child validator per nested mapping and
list item, a rule lookup per rule): at fleet scale that was over half of a first ``plan``'s CPU
time, and nearly every file a fleet commits is valid. ``accepts`` answers "cerberus finds no error
in this document" from closures built once from the same schema, mirroring exactly the rules the
schema uses, with cerberus's own type definitions, its rule-dropping (``nullable``, ``type``,
``empty``) and the project's overrides (whole-string ``regex``, ``printable``,
``max_duration``). It never writes a message: a document it does not accept is validated by
cerberus, which does. So a difference can only cost time, unless ``accepts`` were laxer than
cerberus; ``tests/specs/test_fastcheck.py`` compares both over mutated documents and every spec
the tests and examples hold, and building the checks refuses any rule it does not know.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from typing import Any

Check = Callable[[Any], bool]

_KNOWN = frozenset({"type", "required", "nullable", "empty", "allowed", "regex", "printable", "max_duration",
                    "min", "max", "minlength", "maxlength", "schema", "keysrules", "valuesrules"})


class UnknownRule(ValueError):
    """The schema uses a rule this module does not mirror: add it here (with a test) before using it."""


def compile_schema(schema: Mapping[str, Any], types: Mapping[str, Any],
                   printable: Callable[[str], bool], parse_seconds: Callable[[Any], float]) -> Check:
    """The check of a whole document (a mapping) against ``schema`` (cerberus's rules per field).

    ``types`` is the validator's ``types_mapping``; ``printable`` and ``parse_seconds`` are the
    functions its custom rules use, so both sides decide with the same code.
    """
    return _Compiler(types, printable, parse_seconds).mapping(schema)


class _Compiler:
    def __init__(self, types: Mapping[str, Any], printable: Callable[[str], bool],
                 parse_seconds: Callable[[Any], float]) -> None:
        self.types = types
        self.printable = printable
        self.parse_seconds = parse_seconds

    def mapping(self, schema: Mapping[str, Any]) -> Check:
        """A mapping document: no unknown field, every required one present, each field's rules hold."""
        fields = {name: self.rules(rules) for name, rules in schema.items()}
        required = tuple(name for name, rules in schema.items() if rules.get("required"))

        def check(doc: Any) -> bool:
            if not isinstance(doc, Mapping):
                return False
            for name in required:
                if name not in doc:
                    return False
            try:
                for key, value in doc.items():
                    field = fields.get(key)
                    if field is None or not field(value):
                        return False
            except TypeError:  # an unhashable key: cerberus's business
                return False
            return True

        return check

    def rules(self, rules: Any) -> Check:
        """One field's value against its rules, in cerberus's order of what drops what."""
        if not isinstance(rules, Mapping):
            raise UnknownRule(f"rules must be a mapping, not {rules!r}")
        unknown = set(rules) - _KNOWN
        if unknown:
            raise UnknownRule(f"rules {sorted(unknown)} are not mirrored")
        nullable = bool(rules.get("nullable", False))
        kinds = rules.get("type")
        defs = tuple(self.types[k] for k in ((kinds,) if isinstance(kinds, str) else (kinds or ())))
        has_empty, empty = "empty" in rules, bool(rules.get("empty"))
        # the rules an empty value skips when ``empty`` is declared (cerberus's _validate_empty)
        sized: list[Check] = []
        other: list[Check] = []
        if "allowed" in rules:
            sized.append(_allowed(rules["allowed"]))
        if "regex" in rules:
            sized.append(_regex(re.compile(rules["regex"])))
        if "minlength" in rules:
            sized.append(_length(rules["minlength"], longest=False))
        if "maxlength" in rules:
            sized.append(_length(rules["maxlength"], longest=True))
        if rules.get("printable"):
            printable = self.printable
            other.append(lambda v: not isinstance(v, str) or printable(v))
        if "max_duration" in rules:
            other.append(self._max_duration(rules["max_duration"]))
        if "min" in rules:
            other.append(_compare(rules["min"], lambda v, m: v < m))
        if "max" in rules:
            other.append(_compare(rules["max"], lambda v, m: v > m))
        if "schema" in rules:
            declared = (kinds,) if isinstance(kinds, str) else tuple(kinds or ())
            other.append(self._schema(rules["schema"], declared))
        if "keysrules" in rules:
            keys = self.rules(rules["keysrules"])
            other.append(lambda v: not isinstance(v, Mapping) or all(keys(k) for k in v))
        if "valuesrules" in rules:
            values = self.rules(rules["valuesrules"])
            other.append(lambda v: not isinstance(v, Mapping) or all(values(x) for x in v.values()))
        sized_t, other_t = tuple(sized), tuple(other)

        def check(value: Any) -> bool:
            if value is None:
                return nullable  # cerberus then drops every rule these schemas use but the custom ones,
                # which pass on None
            if defs and not any(isinstance(value, d.included_types) and not isinstance(value, d.excluded_types)
                                for d in defs):
                return False
            if has_empty and isinstance(value, Sized) and len(value) == 0:
                if not empty:
                    return False
            else:
                for rule in sized_t:
                    if not rule(value):
                        return False
            return all(rule(value) for rule in other_t)

        return check

    def _schema(self, schema: Any, declared: tuple[str, ...]) -> Check:
        """``schema``: each item of a list against its rules (a ``list`` field), or a mapping against a
        sub-schema (a ``dict`` field). A value of the other shape is left to cerberus (False)."""
        if "list" in declared and "dict" not in declared:
            items = self.rules(schema)

            def each(value: Any) -> bool:
                if isinstance(value, Sequence) and not isinstance(value, str):
                    return all(items(x) for x in value)
                return not isinstance(value, Mapping)

            return each
        if "dict" in declared and "list" not in declared:
            sub = self.mapping(schema)

            def nested(value: Any) -> bool:
                if isinstance(value, Mapping):
                    return sub(value)
                return not (isinstance(value, Sequence) and not isinstance(value, str))

            return nested
        raise UnknownRule(f"schema of a field typed {declared!r}: only list or dict fields are mirrored")

    def _max_duration(self, limit: float) -> Check:
        parse = self.parse_seconds

        def check(value: Any) -> bool:
            try:
                seconds = parse(value)
            except (ValueError, OverflowError):
                return True  # the regex rule reports the form (as the validator's rule does)
            return not seconds > limit

        return check


def _regex(pattern: re.Pattern[str]) -> Check:
    """The project's ``regex``: the whole string must match; other types pass (``type`` decides them)."""
    def check(value: Any) -> bool:
        return not isinstance(value, str) or pattern.fullmatch(value) is not None

    return check


def _length(limit: int, *, longest: bool) -> Check:
    def check(value: Any) -> bool:
        if not isinstance(value, Iterable):
            return True
        return len(value) <= limit if longest else len(value) >= limit  # type: ignore[arg-type]

    return check


def _allowed(allowed: Any) -> Check:
    def check(value: Any) -> bool:
        try:
            if isinstance(value, str) or not isinstance(value, Iterable):
                return value in allowed
            return all(x in allowed for x in value)
        except TypeError:
            return False  # unhashable or incomparable: cerberus decides

    return check


def _compare(limit: Any, fails: Callable[[Any, Any], bool]) -> Check:
    def check(value: Any) -> bool:
        try:
            return not fails(value, limit)
        except TypeError:
            return True  # cerberus ignores values it cannot compare (a duration given as text)

    return check


__all__ = ["Check", "UnknownRule", "compile_schema"]

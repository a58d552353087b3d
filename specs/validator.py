"""Cerberus, for the documents ``specs.fastcheck`` refuses: made safe for hostile input, and the errors it reports.

Kept apart from ``specs.schema`` so that cerberus (6 MB resident, with ``importlib.metadata``) is imported only
when a document is refused: a process whose specs are all good never loads it.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import cerberus

from specs import schema


def _path_order(part: Any) -> tuple[int, Any]:
    """Cerberus's order (list indexes, then keys), total even over hostile keys (``~: 1`` beside ``name``)."""
    if isinstance(part, int) and not isinstance(part, bool):
        return 0, part
    return (1, part) if isinstance(part, str) else (2, repr(part))


class Validator(cerberus.Validator):  # type: ignore[misc]  # cerberus ships no type hints
    """Cerberus made safe for hostile documents: linear error bookkeeping, whole-string patterns, and the
    ``printable`` and ``max_duration`` rules.

    Cerberus re-sorts its whole error list (and a tree of them) on every
    error it adds, so a document with thousands of errors took minutes
    (quadratic); here errors are sorted once, by ``sorted_errors``. Its ``regex`` rule matched with
    ``re.match`` and a ``$`` that also matches before a final newline, so
    ``"shop\\n"`` passed ``^[a-z]+$``; here a pattern must match the whole value.
    """

    def _error(self, *args: Any) -> None:
        if len(args) == 1:  # a batch of ValidationErrors: as cerberus, minus the sorts
            # The error trees are left out: each insertion re-sorts a node's list, and only rules these
            # schemas do not use (dependencies, readonly, chains of coercers) read them.
            self._errors.extend(args[0])
            for error in args[0]:
                self.error_handler.emit(error)
        else:
            super()._error(*args)

    def flat_errors(self) -> list[tuple[str, str]]:
        """(``clusters[0].capacity.min``, message) per error, in cerberus's order.

        Read straight from the errors: cerberus's ``errors`` property builds a
        nested dict by copying it at every insertion, quadratic in the number
        of errors.
        """
        self._errors.sort(key=lambda e: [_path_order(p) for p in e.document_path])  # keys may be None, 1.5, ...
        messages = cerberus.errors.BasicErrorHandler.messages
        out: list[tuple[str, str]] = []
        stack = list(reversed(self._errors))
        while stack:
            error = stack.pop()
            if error.is_group_error:
                stack.extend(reversed(error.child_errors))
                continue
            template = messages.get(error.code, "{0}")
            try:
                message = template.format(*error.info, constraint=error.constraint, field=error.field,
                                          value=error.value)
            except (IndexError, KeyError, ValueError):
                message = str(error.info[0]) if error.info else f"invalid ({error.rule})"
            out.append((_path(error.document_path), message))
        return out

    def _validate_regex(self, pattern: str, field: str, value: Any) -> None:
        """{'type': 'string'}"""
        if isinstance(value, str) and not re.fullmatch(pattern, value):
            self._error(field, cerberus.errors.REGEX_MISMATCH)

    def _validate_printable(self, constraint: bool, field: str, value: Any) -> None:
        """{'type': 'boolean'}"""
        if constraint and isinstance(value, str) and not schema.printable(value):
            bad = next(c for c in value if not c.isprintable())
            self._error(field, f"must not contain control characters (found {bad!r})")

    def _validate_max_duration(self, constraint: float, field: str, value: Any) -> None:
        """{'type': 'number'}"""
        try:
            seconds = schema.parse_seconds(value)
        except (ValueError, OverflowError):
            return  # the regex rule reports the form
        if seconds > constraint:
            self._error(field, f"must be at most {constraint / 86400:g}d")


def _path(parts: tuple[Any, ...]) -> str:
    out = ""
    for key in parts:
        out = f"{out}[{key}]" if isinstance(key, int) else (f"{out}.{key}" if out else str(key))
    return out


class StrictValidator(Validator):
    """Also keeps YAML's booleans out of numbers (``min: true`` is a mistake, not 1): ``schema.STRICT_TYPES``."""

    types_mapping = {
        **cerberus.Validator.types_mapping,
        "integer": cerberus.TypeDefinition("integer", (int,), (bool,)),
        "float": cerberus.TypeDefinition("float", (float, int), (bool,)),
    }


_local = threading.local()


def for_specs() -> StrictValidator:
    """The spec validator (``schema.APPLICATION``), one per thread, built once (building it is costly)."""
    v = getattr(_local, "validator", None)
    if v is None:
        v = _local.validator = StrictValidator(schema.APPLICATION)
    return v

"""Reuse the last result while its inputs are the same: the daemon's unchanged pass decides nothing again.

Pure: the caller names every input its result depends on, the clock-driven
ones included (as the verdicts the clock gives now, not as the time), and gets
back the last result only when each input is the very same object (``same``)
or an equal value (``equal``) as last time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Inputs:
    same: Sequence[Any]
    """Compared by identity, item by item: values a cache hands out unchanged (parsed specs)."""
    equal: tuple[Any, ...]
    """Compared by value: everything else (live groups, settings, approvals, in-flight work, clock verdicts)."""

    def matches(self, other: Inputs) -> bool:
        return (len(self.same) == len(other.same) and all(a is b for a, b in zip(self.same, other.same, strict=True))
                and self.equal == other.equal)


class LastResult(Generic[T]):
    """One remembered result; ``hits`` and ``misses`` count reuses and computations (tests assert them)."""

    def __init__(self) -> None:
        self._inputs: Inputs | None = None
        self._value: T | None = None
        self.hits = 0
        self.misses = 0

    def get(self, inputs: Inputs) -> T | None:
        if self._inputs is not None and self._value is not None and inputs.matches(self._inputs):
            self.hits += 1
            return self._value
        self.misses += 1
        self._inputs = self._value = None  # not kept alive beside the result about to be computed
        return None

    def put(self, inputs: Inputs, value: T) -> None:
        self._inputs, self._value = inputs, value

    def clear(self) -> None:
        self._inputs = self._value = None

"""Reuse the last result while its inputs are the same: the daemon's unchanged pass decides nothing again.

Pure: the caller names every input its result depends on, the clock-driven
ones included (as the verdicts the clock gives now, not as the time), and gets
back the last result only when each input is the very same object (``same``)
or an equal value (``equal``) as last time.

``digest`` names the same inputs across processes (``reconciler plan``'s persisted answers): a digest
of their MessagePack encoding, which msgspec writes from the values' own typed fields.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import msgspec

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


_SORTED = msgspec.msgpack.Encoder(order="deterministic")  # sets and str-keyed maps in sorted order
_AS_BUILT = msgspec.msgpack.Encoder()  # maps with other keys: in the order they were built


def digest(inputs: Inputs) -> str | None:
    """The same inputs give the same digest in any process; None when a value has no encoding.

    Each input is encoded with its sets and string-keyed maps sorted, so that string hashing, which
    differs between processes, does not reorder them; an input holding a map with other keys is encoded
    as built (such maps are built in a fixed order; if one is not, the digest only misses). The
    encoding is the values' typed fields, the one the spec cache decodes models back from, so inputs of
    the same types that differ in any field differ in digest (``tests/core/test_memo_digest.py``; the
    stateful test checks across its moves that one digest never stands for two answers). An input with a
    ``digest_view`` method (the policy settings, which keep a memo of resolved layers) is named by what
    that returns.
    """
    h = hashlib.blake2b(digest_size=20)
    for item in (tuple(inputs.same), *inputs.equal):
        view = getattr(item, "digest_view", None)  # a value that caches what it derives names its content
        value = view() if view is not None else item
        try:
            try:
                part = b"s" + _SORTED.encode(value)
            except TypeError:  # a map whose keys are not strings
                part = b"b" + _AS_BUILT.encode(value)
        except TypeError:  # a value msgspec has no encoding for: nothing to name it by
            return None
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


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


_MISSING: Any = object()


class PerKey(Generic[T]):
    """One remembered result per key (a cluster in a region) with the inputs it was made of.

    ``get`` answers the last result of ``key`` while its inputs are equal (tuples compare item by item,
    identity first, so parsed specs the cache hands out again cost nothing); ``sweep`` forgets the keys
    no call asked for since the last sweep, so what is kept follows the fleet, not its history.
    ``hits`` and ``misses`` count reuses and computations (tests assert them).

    ``keep=False`` remembers nothing (every ``get`` misses): for a process of one pass, which has no next pass
    to answer and should not hold the inputs of every cluster of a fleet until it exits. A caller may ask
    ``keeps`` and skip building the inputs.
    """

    def __init__(self, *, keep: bool = True) -> None:
        self._entries: dict[Any, tuple[tuple[Any, ...], T]] = {}
        self._asked: set[Any] = set()
        self.keeps = keep
        self.hits = 0
        self.misses = 0

    def get(self, key: Any, inputs: tuple[Any, ...]) -> T:
        """The result made of these very inputs, or ``MISSING``."""
        if not self.keeps:
            self.misses += 1
            return cast(T, _MISSING)
        self._asked.add(key)
        entry = self._entries.get(key)
        if entry is not None and entry[0] == inputs:
            self.hits += 1
            return entry[1]
        self.misses += 1
        return cast(T, _MISSING)

    def put(self, key: Any, inputs: tuple[Any, ...], value: T) -> None:
        if self.keeps:
            self._entries[key] = (inputs, value)

    def sweep(self) -> None:
        self._entries = {k: v for k, v in self._entries.items() if k in self._asked}
        self._asked = set()

    def clear(self) -> None:
        self._entries.clear()
        self._asked.clear()


MISSING: Any = _MISSING
"""What ``PerKey.get`` answers for a key whose inputs changed (a result may be None)."""

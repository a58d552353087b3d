"""JSON text for people and files, encoded in one pass of the C encoder.

``json.dumps(doc, indent=2)`` falls back to the pure-Python encoder (one call
per value: minutes of a fleet's plan); the C encoder only writes compact text.
So the text is written compactly and then re-indented by msgspec's formatter,
which changes whitespace only: the bytes are those ``indent=2`` writes.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgspec


def compact(doc: Any, *, ensure_ascii: bool = True, allow_nan: bool = False) -> str:
    """Sorted keys, no whitespace: the canonical form digests are taken of.

    Exactly ``json.dumps(doc, sort_keys=True, separators=(",", ":"), ...)``, written by msgspec where its text
    is the same (a fleet's plan is 84,000 of these, and msgspec writes one in a fifth of the time)."""
    text = _by_msgspec(doc)
    if text is None:
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=ensure_ascii, allow_nan=allow_nan)
    return ascii_text(text) if ensure_ascii else text


_SORTED = msgspec.json.Encoder(order="sorted")
_PACKED = msgspec.msgpack.Encoder()
_FLOAT64 = struct.Struct(">d")


def _by_msgspec(doc: Any) -> str | None:
    """``compact(doc, ensure_ascii=False)`` by msgspec, or None where its text could differ from ``json``'s.

    The two write the same JSON of strings, integers, booleans, null, lists and string-keyed objects
    (``tests/core/test_jsontext.py`` compares them), and of floats from 1e-4 to 1e16 (and 0), which both
    write in the shortest form that reads back. Outside that range msgspec writes ``1e16`` and ``0.00001``
    where ``json`` writes ``1e+16`` and ``1e-05``, and NaN or infinity as null where ``json`` writes or
    refuses them: so every float is looked at, in the MessagePack encoding (each is a 0xcb byte and eight
    bytes of the double; a 0xcb byte that is not one only sends the value to ``json``). Keys that are not
    strings make msgspec refuse too (``json`` then writes them). The values are JSON-ready: a set, bytes or
    a dataclass, which ``json`` refuses, msgspec would write."""
    try:
        text = _SORTED.encode(doc)
        packed = _PACKED.encode(doc)
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError):
        return None
    at = packed.find(b"\xcb")
    while at != -1:
        if at + 9 > len(packed):
            return None
        value = _FLOAT64.unpack_from(packed, at + 1)[0]
        if not (value == 0.0 or 1e-4 <= abs(value) < 1e16):  # NaN fails both
            return None
        at = packed.find(b"\xcb", at + 1)
    return text.decode()


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


class Items:
    """A JSON list made item by item while it is written (``fn`` of each of ``source``), never held whole.

    A fleet's plan document is tens of megabytes as text and several times that as dicts; written
    through ``pieces`` it costs one item at a time. Iterable again for each walk.
    """

    __slots__ = ("fn", "source")

    def __init__(self, fn: Callable[[Any], Any], source: Iterable[Any]) -> None:
        self.fn = fn
        self.source = source

    def __iter__(self) -> Iterator[Any]:
        return map(self.fn, self.source)


def pieces(value: Any, level: int = 0, *, ensure_ascii: bool = True, allow_nan: bool = False,
           depth: int = 1) -> Iterator[tuple[str, str]]:
    """``value`` as (compact, pretty) text pieces: joined, ``compact(value)`` and ``pretty(value)`` at ``level``.

    Objects and lists above ``depth`` are walked, and ``Items`` always are; anything else is one piece, made
    by the C encoder (so each item of a plan's changes is one piece, not one per value: walking deeper costs
    a Python call per value). The text is never held whole; the digest of a saved plan hashes the compact
    pieces while the pretty ones are written.
    """
    kind = type(value)
    walk = kind is Items or (level < depth and (
        (kind is dict and value and all(type(k) is str for k in value)) or (kind is list and value)))
    if not walk:
        text = compact(value, ensure_ascii=ensure_ascii, allow_nan=allow_nan)
        if text[:1] in ("{", "[") and len(text) > 2:
            try:
                text_p = reindent(text)
            except msgspec.DecodeError:  # NaN or Infinity (allow_nan): not JSON to the formatter
                text_p = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=ensure_ascii, allow_nan=allow_nan)
            yield text, text_p.replace("\n", "\n" + "  " * level) if level else text_p
        else:
            yield text, text
        return
    inner = "\n" + "  " * (level + 1)
    opened = False
    if kind is dict:
        for key in sorted(value):
            name = json.dumps(key, ensure_ascii=ensure_ascii)
            yield ("," if opened else "{") + name + ":", ("," if opened else "{") + inner + name + ": "
            opened = True
            yield from pieces(value[key], level + 1, ensure_ascii=ensure_ascii, allow_nan=allow_nan, depth=depth)
        close = "}"
    else:
        for item in value:
            yield ("," if opened else "["), ("," if opened else "[") + inner
            opened = True
            yield from pieces(item, level + 1, ensure_ascii=ensure_ascii, allow_nan=allow_nan, depth=depth)
        close = "]"
    if opened:
        yield close, "\n" + "  " * level + close
    else:  # an empty Items
        yield "[]", "[]"


_NOT_ASCII = re.compile("[^\\x00-\\x7e]")


def _escape(m: re.Match[str]) -> str:
    n = ord(m.group())
    if n < 0x10000:
        return f"\\u{n:04x}"
    n -= 0x10000
    return f"\\u{0xd800 | (n >> 10):04x}\\u{0xdc00 | (n & 0x3ff):04x}"


def ascii_text(text: str) -> str:
    """JSON text written with ``ensure_ascii=False`` as ``ensure_ascii=True`` writes it.

    The two differ only in the characters outside space..tilde that ``ensure_ascii=False`` leaves raw
    (DEL and non-ASCII; both escape the control characters alike), and those only occur inside strings:
    so one encoding serves a document of each kind.
    """
    if text.isascii() and "\x7f" not in text:
        return text
    return _NOT_ASCII.sub(_escape, text)


class Batched:
    """Text gathered into writes of about 64 KiB (``bytes_``: encoded as UTF-8 first): a fleet's plan is
    150,000 pieces, and one write each cost more than encoding most of them. ``opened`` is the caller's
    mark that the document's first key is written."""

    __slots__ = ("batch", "bytes_", "opened", "size", "write")

    def __init__(self, write: Callable[[Any], object], *, bytes_: bool = False) -> None:
        self.write = write
        self.bytes_ = bytes_
        self.batch: list[str] = []
        self.size = 0
        self.opened = False

    def add(self, text: str) -> None:
        self.batch.append(text)
        self.size += len(text)
        if self.size > 1 << 16:
            self.flush()

    def flush(self) -> None:
        if self.batch:
            text = "".join(self.batch)
            self.write(text.encode() if self.bytes_ else text)
            self.batch, self.size = [], 0


def write_pretty(doc: Any, write: Callable[[str], object], *, ensure_ascii: bool = True,
                 allow_nan: bool = False) -> None:
    """``pretty(doc)`` written piece by piece (``Items`` made as they are written), a few at a time."""
    out = Batched(write)
    for _, text in pieces(doc, ensure_ascii=ensure_ascii, allow_nan=allow_nan):
        out.add(text)
    out.flush()

"""Durations and sizes as people write them (``30s``, ``10m``, ``1MiB``): the one parser of each.

The config, the spec loader and the policy file all read durations; a bad value raises
``ConfigError`` naming ``where`` (the caller's file, line and field), which callers outside
the config turn into their own error type.
"""

from __future__ import annotations

import math
import re
from typing import Any

from reconciler.core import errors

MAX_DURATION_S = 366 * 86400.0
"""No duration setting may exceed a year: larger values are typos, and overflow the scheduler's timedelta."""

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
               "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2, "gi": 1024**3, "gib": 1024**3}


def parse_duration(value: Any, *, where: str, maximum: float = MAX_DURATION_S) -> float:
    """``30s``, ``10m``, ``1h``, ``500ms``, ``1d`` or a number of seconds; at most ``maximum``."""
    if isinstance(value, bool):
        raise errors.ConfigError(f"{where}: expected a duration like 30s, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _DURATION_RE.match(str(value))
        if not m:
            raise errors.ConfigError(
                f"{where}: {show(value)} is not a duration (use e.g. 500ms, 30s, 10m, 1h)"
            )
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if math.isnan(seconds):
        raise errors.ConfigError(f"{where}: {value!r} is not a duration")
    if seconds < 0:
        raise errors.ConfigError(f"{where}: a duration cannot be negative")
    if seconds > maximum:
        raise errors.ConfigError(f"{where}: {show(value)} is longer than the maximum of {format_seconds(maximum)}")
    return seconds


def parse_size(value: Any, *, where: str) -> int:
    """``1MiB``, ``512KiB``, ``10MB``, ``64k`` or a number of bytes (KiB = 1024, KB = 1000)."""
    if isinstance(value, bool):
        raise errors.ConfigError(f"{where}: expected a size like 1MiB, got {value!r}")
    if isinstance(value, int):
        size = float(value)
    elif isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise errors.ConfigError(f"{where}: {value!r} is not a size")
        size = value
    else:
        m = _SIZE_RE.match(str(value))
        if not m:
            raise errors.ConfigError(f"{where}: {show(value)} is not a size (use e.g. 64KiB, 1MiB, 10MB)")
        unit = (m.group(2) or "").lower()
        size = float(m.group(1)) * _SIZE_UNITS[unit]
    if size < 0:
        raise errors.ConfigError(f"{where}: a size cannot be negative")
    return int(size)


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def format_seconds(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"

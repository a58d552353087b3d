"""Exponential backoff, the one rule everything that tries again follows: first, 2x first, 4x first, ...

Values in, values out: callers sleep however they like (an injected clock, a stop event), so a stop
or a new event can cut a wait short. Used by the executor's step retries, the failure backoff of
changes between passes, and notification delivery.
"""

from __future__ import annotations

import math
from collections.abc import Iterator


def delay(failures: int, *, first: float, maximum: float = math.inf) -> float:
    """The wait after ``failures`` consecutive failures (0 after none), at most ``maximum``."""
    if failures <= 0:
        return 0.0
    return min(first * 2.0 ** min(failures - 1, 60), maximum)


def delays(first: float, *, maximum: float = math.inf) -> Iterator[float]:
    """The waits between attempts: ``first``, then each one doubled up to ``maximum``, which then repeats."""
    current = first
    while True:
        yield current
        current = min(current * 2, maximum)

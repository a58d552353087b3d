"""A token bucket on the injected clock, shared by the providers that rate-limit their own calls."""

from __future__ import annotations

import threading

from reconciler.core import clock as clock_mod


class TokenBucket:
    """``rate`` calls a second with bursts of up to ``burst``; sleeps on the injected clock."""

    def __init__(self, rate: float, burst: float, clock: clock_mod.Clock) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.clock = clock
        self.tokens = self.burst
        self.stamp = clock.now()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Take one token; returns the seconds slept waiting for it."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = self.clock.now()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            self.tokens -= 1.0
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait > 0:
            self.clock.sleep(wait)
        return wait

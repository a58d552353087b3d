"""The one token bucket, on the injected clock: providers rate-limit their calls with it (``take`` sleeps),
the notification delivery worker paces its sends (``wait_s`` then ``consume``: it decides how to wait)."""

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

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + max(now - self.stamp, 0.0) * self.rate)
        self.stamp = now

    def take(self) -> float:
        """Take one token; returns the seconds slept waiting for it."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            self._refill(self.clock.now())
            self.tokens -= 1.0
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait > 0:
            self.clock.sleep(wait)
        return wait

    def wait_s(self, now: float) -> float:
        """Seconds until a token is there (0: now); takes none."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            self._refill(now)
            return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def consume(self, now: float) -> None:
        """Take one token without waiting (after ``wait_s`` said 0)."""
        if self.rate > 0:
            with self._lock:
                self._refill(now)
                self.tokens -= 1.0

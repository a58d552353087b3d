"""How fast to send: the delivery worker's token bucket (how often to try again is ``core.backoff``).

Values in, values out: the caller passes the time (``Clock.now()``) and waits
however it likes, so a stop or a new event can interrupt the wait.
"""

from __future__ import annotations


class TokenBucket:
    """``per_minute`` sends a minute, up to ``burst`` at once after a quiet spell; 0 means no limit."""

    def __init__(self, per_minute: float, burst: int, now: float) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(max(burst, 1))
        self.tokens = self.burst
        self.stamp = now

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + max(now - self.stamp, 0.0) * self.rate)
        self.stamp = now

    def wait_s(self, now: float) -> float:
        """Seconds until a send is allowed (0: now)."""
        if self.rate <= 0:
            return 0.0
        self._refill(now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def take(self, now: float) -> None:
        if self.rate > 0:
            self._refill(now)
            self.tokens -= 1.0

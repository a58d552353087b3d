"""The clock is injected everywhere time matters, so tests advance it instead of sleeping."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""

    def sleep(self, seconds: float) -> None:
        """Wait; real clocks may be woken early by ``wake``."""

    def wake(self) -> None:
        """Interrupt a running ``sleep`` (shutdown, webhook)."""


class SystemClock:
    """Wall clock whose sleeps end early when ``wake`` is called (SIGTERM, webhooks)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._event.wait(seconds)
            self._event.clear()

    def wake(self) -> None:
        self._event.set()


class FakeClock:
    """A clock tests move by hand; ``sleep`` advances it instantly."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(seconds, 0.0)

    def advance(self, seconds: float) -> None:
        self.t += seconds

    def wake(self) -> None:
        return None

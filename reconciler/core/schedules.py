"""Cron schedules of an environment: when a waiting version may enter it. Pure: times in, times out.

``schedules: ["0 9 * * mon-thu"]`` on an environment lets a version that passed every other constraint
enter only at one of those times: the first firing at or after the moment it started waiting (a
durable fact, so restarts change nothing). Cron is read by ``croniter`` in the schedule's time zone,
so ``0 9 * * *`` in Europe/Paris is 09:00 there in summer and in winter.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from croniter import croniter

from reconciler.core import model


def valid(cron: str) -> bool:
    """Five fields (minute hour day-of-month month day-of-week), as croniter reads them."""
    return len(cron.split()) == 5 and bool(croniter.is_valid(cron))


def next_firing(schedules: Iterable[model.Schedule], after: float) -> float | None:
    """The earliest time at or after ``after`` (epoch seconds) that any schedule fires; None without any."""
    best: float | None = None
    for s in schedules:
        start = datetime.fromtimestamp(after - 1, tz=UTC).astimezone(ZoneInfo(s.timezone))
        at = float(croniter(s.cron, start).get_next(float))
        if best is None or at < best:
            best = at
    return best

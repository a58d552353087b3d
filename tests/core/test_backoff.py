"""The one backoff rule: first, doubled each time, capped; the cap then repeats."""

from __future__ import annotations

import itertools

from reconciler.core import backoff


def test_delays_double_up_to_the_maximum_which_then_repeats() -> None:
    assert list(itertools.islice(backoff.delays(0.5, maximum=3.0), 6)) == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_the_delay_after_n_failures_is_the_nth_of_those_waits() -> None:
    waits = list(itertools.islice(backoff.delays(2.0, maximum=60.0), 8))
    assert [backoff.delay(n, first=2.0, maximum=60.0) for n in range(1, 9)] == waits
    assert backoff.delay(0, first=2.0) == 0.0, "no failure, no wait"
    assert backoff.delay(10_000, first=1.0, maximum=300.0) == 300.0, "a long outage does not overflow"

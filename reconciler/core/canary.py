"""A canary's settings as model values: its size, how long it runs, its metrics and its thresholds.

Kept apart from ``model.py`` (which holds the ``Strategy`` that carries one) so that the analysis core
(``core/analysis.py``) and the step builder (``core/strategies/canary.py``) share one definition.
"""

from __future__ import annotations

import enum
import string
from collections.abc import Mapping
from dataclasses import dataclass

VARIABLES = ("server_group", "cluster", "region", "application", "version", "image")
"""What a metric's query may name as ``${...}``: the group judged (the canary or its baseline), its
cluster, region, application, its ``vNNN`` and its image."""


class Direction(enum.StrEnum):
    """Which way of the canary's difference to its baseline is bad."""

    INCREASE = "increase"  # higher than the baseline fails (error rates, latencies)
    DECREASE = "decrease"  # lower than the baseline fails (throughput, success rates)
    EITHER = "either"


class NoData(enum.StrEnum):
    """What a metric that returns no samples counts as: a failure (default), or not counted at all."""

    FAIL = "fail"
    IGNORE = "ignore"


OPERATORS = (">=", "<=", "==", "!=", ">", "<")


@dataclass(frozen=True, slots=True)
class Metric:
    """One PromQL query, judged either by an absolute bound or against the baseline."""

    name: str
    query: str
    fail_if: tuple[str, float] | None = None
    """Absolute (Argo style): the canary fails if any sample satisfies ``op bound``."""
    direction: Direction | None = None
    """Comparison (Kayenta style): canary vs baseline samples, with a Mann-Whitney U test."""
    tolerance: float = 0.0
    """Comparison: a significant difference within this share of the baseline's mean still passes."""
    weight: float = 1.0
    no_data: NoData = NoData.FAIL

    def render(self, values: Mapping[str, str]) -> str:
        """The query for one group (``values`` has every name of ``VARIABLES``)."""
        return string.Template(self.query).substitute(values)

    def describe(self) -> str:
        if self.fail_if is not None:
            return f"{self.name}: fails if {self.fail_if[0]} {self.fail_if[1]:g}"
        tol = f"{self.tolerance * 100:g}%"
        way = {"increase": "higher", "decrease": "lower", "either": "higher or lower"}[str(self.direction)]
        return f"{self.name}: fails if {way} than the baseline by more than {tol}"


@dataclass(frozen=True, slots=True)
class Canary:
    """``strategy.canary``: canary and baseline groups of ``capacity`` beside the serving group for
    ``duration_s``, judged every ``interval_s``; ``then`` is how the canary takes over once it passed."""

    metrics: tuple[Metric, ...]
    capacity: int = 1
    duration_s: float = 1800.0
    interval_s: float = 300.0
    pass_score: float = 95.0
    marginal_score: float = 75.0
    then: str = "red_black"
    """A ``model.StrategyType`` value: red_black or highlander."""
    pause_for_approval: bool = False
    """Manual judgment: once the analysis passed, wait for ``reconciler approve`` before the canary grows."""

    @property
    def sample_step_s(self) -> float:
        """Resolution of the range queries: ten samples per interval (an interval of at least ten scrape
        intervals keeps every sample a fresh reading)."""
        return max(0.001, self.interval_s / 10)


def template_problem(query: str) -> str:
    """Why ``query`` is not a valid template (empty: it is)."""
    tpl = string.Template(query)
    if not tpl.is_valid():
        return "invalid ${...} placeholder (write $$ for a literal $)"
    unknown = sorted(set(tpl.get_identifiers()) - set(VARIABLES))
    if unknown:
        return f"unknown variable(s) {', '.join(unknown)} (known: {', '.join(VARIABLES)})"
    return ""

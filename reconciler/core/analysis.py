"""Judging a canary from metric samples: a score per interval, pass, marginal or fail. Pure.

Absolute metrics fail when any canary sample meets their bound. Comparisons take the canary's samples
against the baseline's with a Mann-Whitney U test (as Kayenta does): a metric fails only when the
difference is significant (p < ``ALPHA``) *and* the canary's mean differs from the baseline's by more
than the metric's tolerance in its bad direction, so noise in one reading never fails a canary. A query
that failed counts as a failure; one without samples counts as its ``no_data`` says (default: failure),
never as a pass. The score is the weighted share of counted metrics that passed, 0 to 100.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache

from reconciler.core import canary as canary_mod
from reconciler.core.canary import Direction, NoData

ALPHA = 0.05
"""Significance level of the comparison test."""
EXACT_MAX = 25
"""Samples per side up to which the exact U distribution is used (without ties); beyond, the normal
approximation with tie and continuity corrections."""


class Alternative(enum.StrEnum):
    TWO_SIDED = "two-sided"
    GREATER = "greater"  # the first sample tends to be larger
    LESS = "less"


def mann_whitney_u(x: Sequence[float], y: Sequence[float],
                   alternative: Alternative = Alternative.TWO_SIDED) -> tuple[float, float]:
    """``(U of x, p-value)`` of the Mann-Whitney U test of ``x`` against ``y`` (both non-empty)."""
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples need at least one value")
    pooled = sorted([(v, 0) for v in x] + [(v, 1) for v in y])
    ranks: list[float] = [0.0] * len(pooled)
    ties: list[int] = []
    i = 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        if j > i:
            ties.append(j - i + 1)
        i = j + 1
    r1 = sum(r for r, (_, side) in zip(ranks, pooled, strict=True) if side == 0)
    u1 = r1 - n1 * (n1 + 1) / 2
    if not ties and n1 <= EXACT_MAX and n2 <= EXACT_MAX:
        return u1, _exact_p(int(u1), n1, n2, alternative)
    return u1, _normal_p(u1, n1, n2, ties, alternative)


def _exact_p(u: int, n1: int, n2: int, alternative: Alternative) -> float:
    counts = _u_counts(n1, n2)
    total = sum(counts)
    upper = sum(counts[u:]) / total  # P(U >= u)
    lower = sum(counts[: u + 1]) / total  # P(U <= u)
    if alternative is Alternative.GREATER:
        return upper
    if alternative is Alternative.LESS:
        return lower
    return min(1.0, 2 * min(upper, lower))


@cache
def _u_counts(n1: int, n2: int) -> tuple[int, ...]:
    """How many orderings of n1 + n2 distinct values give each U (0 .. n1*n2)."""
    if n1 == 0 or n2 == 0:
        return (1,)
    a = _u_counts(n1 - 1, n2)  # the largest value is from x: it beats all n2 values of y
    b = _u_counts(n1, n2 - 1)  # the largest value is from y
    out = [0] * (n1 * n2 + 1)
    for k, c in enumerate(a):
        out[k + n2] += c
    for k, c in enumerate(b):
        out[k] += c
    return tuple(out)


def _normal_p(u1: float, n1: int, n2: int, ties: Sequence[int], alternative: Alternative) -> float:
    n = n1 + n2
    mean = n1 * n2 / 2
    var = n1 * n2 / 12 * ((n + 1) - sum(t ** 3 - t for t in ties) / (n * (n - 1)))
    if var <= 0:  # every value equal: no evidence of any difference
        return 1.0
    sd = math.sqrt(var)

    def upper(u: float) -> float:  # P(U >= u)
        return 0.5 * math.erfc((u - mean - 0.5) / sd / math.sqrt(2))

    def lower(u: float) -> float:  # P(U <= u)
        return 0.5 * math.erfc((mean - u - 0.5) / sd / math.sqrt(2))

    if alternative is Alternative.GREATER:
        return min(1.0, upper(u1))
    if alternative is Alternative.LESS:
        return min(1.0, lower(u1))
    return min(1.0, 2 * min(upper(u1), lower(u1)))


class Outcome(enum.StrEnum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    FAIL = "fail"
    NO_DATA = "no_data"  # counted per the metric's ``no_data``
    ERROR = "error"  # the query failed: counted as a failure
    SKIPPED = "skipped"  # a comparison without a baseline (a new cluster): not counted


class Verdict(enum.StrEnum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    MARGINAL = "marginal"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Samples:
    """What one metric's queries returned: the canary's values, the baseline's (None: no baseline
    group), or the error of a query that failed (its text names the query and the answer)."""

    canary: tuple[float, ...] = ()
    baseline: tuple[float, ...] | None = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class MetricResult:
    metric: str
    outcome: Outcome
    counted: bool
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {"metric": self.metric, "outcome": self.outcome.value, "counted": self.counted,
                "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Reading:
    """One interval's judgment."""

    score: float
    verdict: Verdict
    results: tuple[MetricResult, ...]
    final: bool

    @property
    def failing(self) -> tuple[MetricResult, ...]:
        return tuple(r for r in self.results if r.counted and r.outcome is not Outcome.PASS)

    def summary(self) -> str:
        bad = "; ".join(f"{r.metric}: {r.detail}" for r in self.failing)
        return f"score {self.score:.0f} ({self.verdict.value})" + (f"; failing: {bad}" if bad else "")

    def as_dict(self) -> dict[str, object]:
        return {"score": round(self.score, 2), "verdict": self.verdict.value, "final": self.final,
                "results": [r.as_dict() for r in self.results]}


def judge_metric(metric: canary_mod.Metric, samples: Samples) -> MetricResult:
    """One metric's outcome, with the values that decided it."""
    def result(outcome: Outcome, detail: str) -> MetricResult:
        counted = outcome is not Outcome.SKIPPED and not (
            outcome is Outcome.NO_DATA and metric.no_data is NoData.IGNORE)
        return MetricResult(metric.name, outcome, counted, detail)

    if samples.error:
        return result(Outcome.ERROR, samples.error)
    if metric.fail_if is None and samples.baseline is None:
        return result(Outcome.SKIPPED, "no baseline (nothing served before): comparison skipped")
    if not samples.canary:
        return result(Outcome.NO_DATA, f"no data for the canary (counted as {metric.no_data.value})")
    if metric.fail_if is not None:
        op, bound = metric.fail_if
        hits = [v for v in samples.canary if _holds(v, op, bound)]
        if hits:
            return result(Outcome.FAIL, f"{len(hits)} of {len(samples.canary)} samples {op} {bound:g} "
                                        f"(worst {_worst(hits, op):g})")
        return result(Outcome.PASS, f"{len(samples.canary)} samples, none {op} {bound:g}")
    if not samples.baseline:
        return result(Outcome.NO_DATA, f"no data for the baseline (counted as {metric.no_data.value})")
    return result(*_compare(metric, samples.canary, samples.baseline))


def _compare(metric: canary_mod.Metric, canary: Sequence[float],
             baseline: Sequence[float]) -> tuple[Outcome, str]:
    direction = metric.direction or Direction.EITHER
    alternative = {Direction.INCREASE: Alternative.GREATER, Direction.DECREASE: Alternative.LESS,
                   Direction.EITHER: Alternative.TWO_SIDED}[direction]
    _, p = mann_whitney_u(canary, baseline, alternative)
    c_mean, b_mean = sum(canary) / len(canary), sum(baseline) / len(baseline)
    allowed = abs(b_mean) * metric.tolerance
    delta = c_mean - b_mean
    too_high = direction in (Direction.INCREASE, Direction.EITHER) and delta > allowed
    too_low = direction in (Direction.DECREASE, Direction.EITHER) and -delta > allowed
    text = (f"canary mean {c_mean:.4g} vs baseline {b_mean:.4g} over {len(canary)}/{len(baseline)} samples, "
            f"p={p:.3g}")
    if p < ALPHA and (too_high or too_low):
        return Outcome.FAIL, f"{text}: {'higher' if too_high else 'lower'} beyond the tolerance " \
                             f"{metric.tolerance * 100:g}%"
    return Outcome.PASS, text


def _holds(value: float, op: str, bound: float) -> bool:
    return {">": value > bound, ">=": value >= bound, "<": value < bound, "<=": value <= bound,
            "==": value == bound, "!=": value != bound}[op]


def _worst(values: Sequence[float], op: str) -> float:
    return min(values) if op in ("<", "<=") else max(values)


def judge(canary: canary_mod.Canary, samples: Mapping[str, Samples], *, final: bool) -> Reading:
    """The reading of one interval: every metric judged, the weighted score and its verdict.

    A reading where nothing could be counted scores 0: a canary is never passed for lack of evidence.
    """
    results = tuple(judge_metric(m, samples.get(m.name, Samples())) for m in canary.metrics)
    weights = {m.name: m.weight for m in canary.metrics}
    counted = [r for r in results if r.counted]
    total = sum(weights[r.metric] for r in counted)
    passed = sum(weights[r.metric] for r in counted if r.outcome is Outcome.PASS)
    score = 100.0 * passed / total if total > 0 else 0.0
    verdict = (Verdict.PASS if score >= canary.pass_score else
               Verdict.MARGINAL if score >= canary.marginal_score else Verdict.FAIL)
    return Reading(score, verdict, results, final)


def concluded(reading: Reading) -> Verdict | None:
    """What ends the analysis now: a failing reading at any interval, or the final one (only a pass
    passes: a marginal score at the end fails); None: keep watching."""
    if reading.verdict is Verdict.FAIL:
        return Verdict.FAIL
    if reading.final:
        return Verdict.PASS if reading.verdict is Verdict.PASS else Verdict.FAIL
    return None

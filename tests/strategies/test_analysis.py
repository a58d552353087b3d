"""The canary statistics on fixed samples: the Mann-Whitney U test, each metric's outcome, the score."""

from __future__ import annotations

import pytest

from reconciler.core import analysis
from reconciler.core.analysis import Alternative, Outcome, Samples, Verdict
from reconciler.core.canary import Canary, Direction, Metric, NoData

MALES, FEMALES = (19, 22, 16, 29, 24), (20, 11, 17, 12)  # the textbook example: U = 17


def test_u_and_the_exact_p_value_of_small_samples_without_ties() -> None:
    assert analysis.mann_whitney_u(MALES, FEMALES) == pytest.approx((17.0, 1 / 9))
    assert analysis.mann_whitney_u([1, 3, 5], [2, 4, 6]) == pytest.approx((3.0, 0.7))
    assert analysis.mann_whitney_u([1, 3, 5], [2, 4, 6], Alternative.GREATER)[1] == pytest.approx(16 / 20)
    assert analysis.mann_whitney_u([1, 3, 5], [2, 4, 6], Alternative.LESS)[1] == pytest.approx(7 / 20)
    assert analysis.mann_whitney_u([6, 7, 8, 9, 10], [1, 2, 3, 4, 5], Alternative.GREATER) == pytest.approx(
        (25.0, 1 / 252))


def test_the_normal_approximation_matches_the_textbook_value_and_corrects_for_ties() -> None:
    assert analysis._normal_p(17.0, 5, 4, [], Alternative.TWO_SIDED) == pytest.approx(0.11134688653314041)
    u, p = analysis.mann_whitney_u([1, 1, 2, 2, 3, 3] * 5, [1, 1, 2, 2, 3, 3] * 5)
    assert (u, p) == pytest.approx((450.0, 1.0))
    assert analysis.mann_whitney_u([5.0] * 4, [5.0] * 4) == (8.0, 1.0)  # all equal: no evidence
    _, p_big = analysis.mann_whitney_u([float(i) for i in range(30, 60)], [float(i) for i in range(30)],
                                       Alternative.GREATER)
    assert p_big < 1e-9


def _canary(*metrics: Metric, pass_score: float = 95, marginal: float = 75) -> Canary:
    return Canary(metrics=metrics, pass_score=pass_score, marginal_score=marginal)


ERRORS = Metric("errors", "errors", fail_if=(">", 0.01))
LATENCY = Metric("latency", "latency", direction=Direction.INCREASE, tolerance=0.1)
BASE = tuple(100.0 + i % 7 for i in range(20))


def test_an_absolute_bound_fails_on_any_sample_beyond_it_and_names_the_worst() -> None:
    ok = analysis.judge_metric(ERRORS, Samples((0.0, 0.005, 0.01)))
    assert ok.outcome is Outcome.PASS and ok.detail == "3 samples, none > 0.01"
    bad = analysis.judge_metric(ERRORS, Samples((0.0, 0.05, 0.02)))
    assert bad.outcome is Outcome.FAIL and bad.detail == "2 of 3 samples > 0.01 (worst 0.05)"


def test_a_comparison_fails_only_when_significant_and_beyond_the_tolerance_in_its_direction() -> None:
    same = analysis.judge_metric(LATENCY, Samples(tuple(v + 0.5 for v in BASE), BASE))
    assert same.outcome is Outcome.PASS
    slower = analysis.judge_metric(LATENCY, Samples(tuple(v * 1.5 for v in BASE), BASE))
    assert slower.outcome is Outcome.FAIL and "higher beyond the tolerance 10%" in slower.detail
    within = analysis.judge_metric(LATENCY, Samples(tuple(v * 1.05 for v in BASE), BASE))
    assert within.outcome is Outcome.PASS  # significant, but inside the tolerance
    faster = analysis.judge_metric(LATENCY, Samples(tuple(v * 0.5 for v in BASE), BASE))
    assert faster.outcome is Outcome.PASS  # lower latency is never bad for direction increase
    either = Metric("latency", "latency", direction=Direction.EITHER, tolerance=0.1)
    assert analysis.judge_metric(either, Samples(tuple(v * 0.5 for v in BASE), BASE)).outcome is Outcome.FAIL
    one_spike = analysis.judge_metric(LATENCY, Samples((100.0, 101.0, 500.0), (100.0, 102.0, 101.0)))
    assert one_spike.outcome is Outcome.PASS, one_spike.detail  # one reading is not evidence


def test_no_data_counts_as_configured_and_never_as_a_pass() -> None:
    reading = analysis.judge(_canary(ERRORS), {"errors": Samples(())}, final=True)
    assert reading.score == 0 and reading.verdict is Verdict.FAIL
    assert reading.failing[0].detail == "no data for the canary (counted as fail)"
    ignored = Metric("errors", "errors", fail_if=(">", 0.01), no_data=NoData.IGNORE)
    reading = analysis.judge(_canary(ignored, LATENCY), {"errors": Samples(()),
                                                          "latency": Samples(BASE, BASE)}, final=True)
    assert reading.score == 100 and reading.verdict is Verdict.PASS
    nothing = analysis.judge(_canary(ignored), {"errors": Samples(())}, final=True)
    assert nothing.score == 0 and nothing.verdict is Verdict.FAIL  # nothing counted: no evidence, no pass
    no_baseline = analysis.judge_metric(LATENCY, Samples(BASE, ()))
    assert no_baseline.outcome is Outcome.NO_DATA and no_baseline.counted


def test_a_failed_query_counts_as_a_failure_with_its_message() -> None:
    reading = analysis.judge(_canary(ERRORS), {"errors": Samples(error="prometheus: parse error")}, final=False)
    assert reading.verdict is Verdict.FAIL and reading.summary() == (
        "score 0 (fail); failing: errors: prometheus: parse error")


def test_a_new_cluster_skips_comparisons_and_is_judged_on_its_bounds() -> None:
    reading = analysis.judge(_canary(ERRORS, LATENCY), {"errors": Samples((0.0,)), "latency": Samples(BASE)},
                             final=True)
    assert [r.outcome for r in reading.results] == [Outcome.PASS, Outcome.SKIPPED]
    assert reading.score == 100


def test_the_score_weighs_metrics_and_marginal_scores_continue_but_never_pass_at_the_end() -> None:
    heavy = Metric("latency", "latency", direction=Direction.INCREASE, tolerance=0.1, weight=3)
    samples = {"errors": Samples((0.5,)), "latency": Samples(BASE, BASE)}
    reading = analysis.judge(_canary(ERRORS, heavy, pass_score=90, marginal=70), samples, final=False)
    assert reading.score == 75 and reading.verdict is Verdict.MARGINAL
    assert analysis.concluded(reading) is None
    final = analysis.judge(_canary(ERRORS, heavy, pass_score=90, marginal=70), samples, final=True)
    assert analysis.concluded(final) is Verdict.FAIL
    good = analysis.judge(_canary(ERRORS, heavy), {"errors": Samples((0.0,)), "latency": Samples(BASE, BASE)},
                          final=True)
    assert good.score == 100 and analysis.concluded(good) is Verdict.PASS

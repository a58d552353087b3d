"""A malformed ``strategy.canary`` block is a spec problem naming the file, line and field."""

from __future__ import annotations

import pytest

from tests.specs.test_spec_rules import cluster_problems

GOOD_METRIC = "{name: errors, query: 'sum(errors{server_group=\"${server_group}\"})', fail_if: '> 0.01'}"


def canary(block: str) -> str:
    return f"strategy:\n  type: canary\n  canary: {block}\n"


def test_a_complete_canary_block_is_valid() -> None:
    assert cluster_problems(canary(
        "{capacity: 2, duration: 10m, interval: 1m, then: highlander, score: {pass: 90, marginal: 60}, "
        f"metrics: [{GOOD_METRIC}, {{name: latency, query: 'avg(latency{{region=\"${{region}}\", "
        "version=\"${version}\"})', compare: {direction: increase, tolerance: 0.1}, weight: 2, "
        "no_data: ignore}]}")) == []


@pytest.mark.parametrize(("block", "expected"), [
    ("{metrics: []}", "clusters[0].strategy.canary.metrics: min length is 1"),
    ("{duration: 1m}", "clusters[0].strategy.canary.metrics: required field"),
    ("{metrics: [{name: errors, query: 'x'}]}",
     "clusters[0].strategy.canary.metrics[0]: give exactly one of fail_if (an absolute bound) or compare "
     "(against the baseline)"),
    ("{metrics: [{name: errors, query: 'x', fail_if: 'above 1'}]}",
     "clusters[0].strategy.canary.metrics[0].fail_if: expected an operator and a number, e.g. \"> 0.01\" "
     "(operators: >=, <=, ==, !=, >, <), got 'above 1'"),
    ("{metrics: [{name: errors, query: 'x{g=\"${group}\"}', fail_if: '> 1'}]}",
     "clusters[0].strategy.canary.metrics[0].query: unknown variable(s) group (known: server_group, cluster, "
     "region, application, version, image)"),
    (f"{{metrics: [{GOOD_METRIC}, {GOOD_METRIC}]}}",
     "clusters[0].strategy.canary.metrics: each metric name once; repeated: errors"),
    (f"{{interval: 10m, duration: 5m, metrics: [{GOOD_METRIC}]}}",
     "clusters[0].strategy.canary.interval: interval 10m is longer than the duration 5m"),
    (f"{{score: {{pass: 50, marginal: 80}}, metrics: [{GOOD_METRIC}]}}",
     "clusters[0].strategy.canary.score: marginal must not be above pass"),
    (f"{{then: blue_green, metrics: [{GOOD_METRIC}]}}",
     "clusters[0].strategy.canary.then: unallowed value blue_green"),
    ("{metrics: [{name: e, query: 'x', compare: {direction: up}}]}",
     "clusters[0].strategy.canary.metrics[0].compare.direction: unallowed value up"),
])
def test_a_malformed_canary_block_names_its_field(block: str, expected: str) -> None:
    problems = cluster_problems(canary(block))
    assert any(p.endswith(expected) and p.startswith("apps/shop.yaml:") for p in problems), problems


def test_a_canary_block_belongs_to_type_canary_only() -> None:
    assert cluster_problems(f"strategy: {{type: red_black, canary: {{metrics: [{GOOD_METRIC}]}}}}\n") == [
        "apps/shop.yaml:10: clusters[0].strategy.canary: only for type canary (this strategy is red_black)"]


def test_then_rolling_red_black_takes_the_strategy_steps_and_other_thens_refuse_them() -> None:
    rolls = canary(f"{{then: rolling_red_black, metrics: [{GOOD_METRIC}]}}")
    assert cluster_problems(rolls + "  steps: [25, {percent: 50, pause_for_approval: true}, 100]\n"
                            "  pause: 1m\n") == []
    assert cluster_problems(rolls + "  steps: [25, 50]\n") == [
        "apps/shop.yaml:13: clusters[0].strategy.steps: the last step must be 100 (the new group at full capacity), "
        "got [25, 50]"]
    assert cluster_problems(canary(f"{{then: highlander, metrics: [{GOOD_METRIC}]}}") + "  steps: [50, 100]\n") == [
        "apps/shop.yaml:13: clusters[0].strategy.steps: only for type rolling_red_black or a canary with then: "
        "rolling_red_black (this strategy is canary)"]

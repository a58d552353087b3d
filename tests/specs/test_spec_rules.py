"""The schema and cross-field rules, one case each: what is refused, where, and the words that say why."""

from __future__ import annotations

import pytest

from tests.specs.spec_helpers import Tree, lines_of, minimal


def problems_of(text: str) -> list[str]:
    return lines_of(Tree({"shop.yaml": text}).load())


def cluster_problems(extra: str = "", capacity: str = "{min: 1, desired: 1, max: 2}",
                     regions: str = "[local-1]") -> list[str]:
    text = minimal("shop", extra, capacity=capacity).replace("regions: [local-1]", f"regions: {regions}")
    return problems_of(text)


@pytest.mark.parametrize(("capacity", "expected"), [
    ("{min: 0, desired: 0, max: 0}", []),
    ("{min: 2, desired: 2, max: 2}", []),
    ("{min: 2, desired: 1, max: 3}", ["apps/shop.yaml:9: clusters[0].capacity: needs min <= desired <= max, "
                                      "got min 2, desired 1, max 3"]),
    ("{min: 1, desired: 4, max: 3}", ["apps/shop.yaml:9: clusters[0].capacity: needs min <= desired <= max, "
                                      "got min 1, desired 4, max 3"]),
    ("{min: -1, desired: 0, max: 1}", ["apps/shop.yaml:9: clusters[0].capacity.min: must be 0 or more"]),
    ("{min: 1, desired: 1}", ["apps/shop.yaml:9: clusters[0].capacity.max: required field"]),
    ("{min: true, desired: 1, max: 1}", ["apps/shop.yaml:9: clusters[0].capacity.min: must be of integer type"]),
    ("{min: 1.5, desired: 2, max: 3}", ["apps/shop.yaml:9: clusters[0].capacity.min: must be of integer type"]),
])
def test_capacity_is_ordered_whole_and_not_negative(capacity: str, expected: list[str]) -> None:
    assert cluster_problems(capacity=capacity) == expected


@pytest.mark.parametrize(("regions", "expected"), [
    ("[]", ["apps/shop.yaml:6: clusters[0].regions: min length is 1"]),
    ("[a-1, b-1, a-1]", ["apps/shop.yaml:6: clusters[0].regions: regions must be unique; repeated: a-1"]),
    ("[US_East]", ["apps/shop.yaml:6: clusters[0].regions[0]: must be a region name such as us-east-1 or "
                   "europe-west1 (lowercase letters, digits, hyphens)"]),
])
def test_regions_are_non_empty_unique_and_well_formed(regions: str, expected: list[str]) -> None:
    assert cluster_problems(regions=regions) == expected


@pytest.mark.parametrize(("waves", "expected"), [
    ("[[a-1], [b-1, c-1]]", None),
    ("[[a-1, b-1, c-1]]", None),
    ("[[a-1], [b-1]]", "missing c-1"),
    ("[[a-1], [b-1, c-1, d-1]]", "not in regions: d-1"),
    ("[[a-1, b-1], [b-1, c-1]]", "in more than one wave: b-1"),
    ("[[a-1], [a-1], [d-1]]", "missing b-1, c-1; not in regions: d-1; in more than one wave: a-1"),
])
def test_waves_cover_exactly_the_regions_each_once(waves: str, expected: str | None) -> None:
    found = cluster_problems(f"rollout: {{waves: {waves}}}", regions="[a-1, b-1, c-1]")

    assert found == ([] if expected is None else [
        f"apps/shop.yaml:10: clusters[0].rollout.waves: waves must cover exactly the regions, each once ({expected})"])


def test_an_empty_wave_is_refused() -> None:
    assert cluster_problems("rollout: {waves: [[local-1], []]}") == [
        "apps/shop.yaml:10: clusters[0].rollout.waves[1]: min length is 1"]


@pytest.mark.parametrize(("name", "ok"), [
    ("checkout", True), ("app2", True), ("Checkout", False), ("check-out", False), ("2fast", False),
    ("check_out", False), ("", False),
])
def test_application_names_are_lowercase_letters_and_digits(name: str, ok: bool) -> None:
    found = problems_of(minimal("shop").replace("application: shop", f"application: '{name}'"))

    assert found == ([] if ok else [
        "apps/shop.yaml:1: application: must be lowercase letters and digits, starting with a letter"])


@pytest.mark.parametrize(("part", "value", "ok"), [
    ("stack", "main", True), ("stack", "prod2", True), ("stack", "pro-d", False), ("stack", "Prod", False),
    ("detail", "blue", True), ("detail", "canary-eu-1", True), ("detail", "-blue", False),
    ("detail", "blue-", False), ("detail", "blue_1", False), ("detail", "Blue", False),
])
def test_stack_and_detail_follow_frigga(part: str, value: str, ok: bool) -> None:
    found = cluster_problems(f"{part}: '{value}'")

    if ok:
        assert found == []
    else:
        assert len(found) == 1
        assert found[0].startswith(f"apps/shop.yaml:10: clusters[0].{part}: must be lowercase letters")


def test_a_detail_without_a_stack_is_allowed_as_in_frigga() -> None:
    state = Tree({"shop.yaml": minimal("shop", "detail: canary")}).load()

    assert state.applications["shop"].clusters[0].name == "shop--canary"


def test_cluster_names_must_leave_room_for_the_version_within_gces_63_characters() -> None:
    fits = "d" * (58 - len("shop-main-"))
    assert cluster_problems(f"stack: main\ndetail: {fits}") == []

    too_long = fits + "x"
    assert cluster_problems(f"stack: main\ndetail: {too_long}") == [
        f"apps/shop.yaml:10: clusters[0].stack: cluster name 'shop-main-{too_long}' is 59 characters; at most 58 "
        f"so that 'shop-main-{too_long}-vNNN' fits GCE's 63-character limit"]


def test_the_same_cluster_twice_in_one_application_is_an_error() -> None:
    text = minimal("shop", "stack: web")
    cluster = text[text.index("  - provider"):]

    assert problems_of(text + cluster) == [
        "apps/shop.yaml:11: clusters[1]: cluster 'shop-web' is defined twice (also clusters[0])"]


def test_two_clusters_that_differ_by_stack_are_fine() -> None:
    text = minimal("shop", "stack: web")
    cluster = text[text.index("  - provider"):].replace("stack: web", "stack: api")

    assert problems_of(text + cluster) == []


@pytest.mark.parametrize(("value", "ok"), [("low", True), ("normal", True), ("critical", True), ("high", False)])
def test_criticality_is_one_of_three(value: str, ok: bool) -> None:
    found = problems_of(minimal("shop").replace("owner:", f"criticality: {value}\nowner:"))

    assert found == ([] if ok else ["apps/shop.yaml:2: criticality: unallowed value high"])


@pytest.mark.parametrize("field", [
    "health: {timeout: %s}", "strategy: {delay_before_disable: %s}", "strategy: {delay_before_scale_down: %s}",
    "rollout: {pause: %s}",
])
@pytest.mark.parametrize(("value", "ok"), [
    ("10m", True), ("30s", True), ("1h", True), ("0s", True), ("0", True), ("45", True), ("2.5", True),
    ("ten", False), ("-5", False), ("true", False), ("5 minutes", False),
])
def test_durations_take_units_or_seconds(field: str, value: str, ok: bool) -> None:
    found = cluster_problems(field % value)

    if ok:
        assert found == []
    else:
        assert len(found) == 1
        assert "must be a duration like 30s, 10m or 1h" in found[0] or "must be 0 or more" in found[0]


def test_durations_become_seconds() -> None:
    extra = "health: {timeout: 1h}\nstrategy: {delay_before_disable: 90, delay_before_scale_down: 500ms}\n" \
            "rollout: {pause: 2m}"
    (cluster,) = Tree({"shop.yaml": minimal("shop", extra)}).load().applications["shop"].clusters

    assert (cluster.health.timeout_s, cluster.strategy.delay_before_disable_s,
            cluster.strategy.delay_before_scale_down_s, cluster.rollout.pause_s) == (3600.0, 90.0, 0.5, 120.0)


@pytest.mark.parametrize(("percent", "expected"), [
    ("1", "apps/shop.yaml:10: clusters[0].health.healthy_percent: 1% of 1 instances is less than one instance; "
          "the health wait would pass with none healthy"),
    ("100", None), ("0", "apps/shop.yaml:10: clusters[0].health.healthy_percent: min value is 1"),
    ("101", "apps/shop.yaml:10: clusters[0].health.healthy_percent: max value is 100"),
])
def test_healthy_percent_is_between_1_and_100(percent: str, expected: str | None) -> None:
    assert cluster_problems(f"health: {{healthy_percent: {percent}}}") == ([] if expected is None else [expected])


def test_keep_disabled_is_not_negative() -> None:
    assert cluster_problems("strategy: {keep_disabled: 0}") == []
    assert cluster_problems("strategy: {keep_disabled: -1}") == [
        "apps/shop.yaml:10: clusters[0].strategy.keep_disabled: must be 0 or more"]


def test_the_strategies_are_red_black_highlander_rolling_red_black_and_canary() -> None:
    for kind in ("red_black", "highlander", "rolling_red_black"):
        assert cluster_problems(f"strategy: {{type: {kind}}}") == [], kind
    assert cluster_problems("strategy: {type: canary}") == [
        "apps/shop.yaml:10: clusters[0].strategy.canary: type canary needs a canary block with at least one metric"]
    assert cluster_problems("strategy: {type: blue_green}") == [
        "apps/shop.yaml:10: clusters[0].strategy.type: unallowed value blue_green"]


@pytest.mark.parametrize(("strategy", "expected"), [
    ("{type: rolling_red_black, steps: [25, 50, 100], pause: 5m}", None),
    ("{type: rolling_red_black, steps: [100]}", None),
    ("{type: rolling_red_black, steps: [50, 25, 100]}",
     "clusters[0].strategy.steps: steps must increase, got [50, 25, 100]"),
    ("{type: rolling_red_black, steps: [25, 50]}",
     "clusters[0].strategy.steps: the last step must be 100 (the new group at full capacity), got [25, 50]"),
    ("{type: rolling_red_black, steps: [0, 100]}",
     "clusters[0].strategy.steps[0]: a percent from 1 to 100 is needed, got 0"),
    ("{type: rolling_red_black, steps: [25, {percent: 50, pause_for_approval: true}, 100]}", None),
    ("{type: rolling_red_black, steps: [25, {percent: 50}, {percent: 100, pause_for_approval: false}]}", None),
    ("{type: rolling_red_black, steps: [{pause_for_approval: true}, 100]}",
     "clusters[0].strategy.steps[0].percent: a percent from 1 to 100 is needed, got None"),
    ("{type: rolling_red_black, steps: [{percent: 50, pause_for_approval: yes please}, 100]}",
     "clusters[0].strategy.steps[0].pause_for_approval: must be true or false"),
    ("{type: rolling_red_black, steps: [{percent: 50, approve: true}, 100]}",
     "clusters[0].strategy.steps[0]: unknown field(s) approve (a step has percent and pause_for_approval)"),
    ("{type: rolling_red_black, steps: [{percent: 150}, 100]}",
     "clusters[0].strategy.steps[0].percent: a percent from 1 to 100 is needed, got 150"),
    ("{type: rolling_red_black, steps: [true, 100]}",
     "clusters[0].strategy.steps[0]: must be of ['integer', 'dict'] type"),
    ("{type: rolling_red_black, steps: [{percent: 50, pause_for_approval: true}, 25, 100]}",
     "clusters[0].strategy.steps: steps must increase, got [50, 25, 100]"),
    ("{type: rolling_red_black, steps: []}", "clusters[0].strategy.steps: min length is 1"),
    ("{type: rolling_red_black, steps: 50}", "clusters[0].strategy.steps: must be of list type"),
    ("{type: rolling_red_black, pause: soon}",
     "clusters[0].strategy.pause: must be a duration like 30s, 10m or 1h"),
    ("{steps: [50, 100]}", "clusters[0].strategy.steps: only for type rolling_red_black or a canary with then: "
                           "rolling_red_black (this strategy is "
                           "red_black)"),
    ("{type: highlander, pause: 1m}", "clusters[0].strategy.pause: only for type rolling_red_black or a canary "
                                      "with then: rolling_red_black (this "
                                      "strategy is highlander)"),
    ("{type: highlander, keep_disabled: 2}", "clusters[0].strategy.keep_disabled: highlander keeps no disabled "
                                             "group; remove keep_disabled or use red_black"),
])
def test_a_malformed_strategy_is_a_spec_problem_naming_the_field(strategy: str, expected: str | None) -> None:
    assert cluster_problems(f"strategy: {strategy}") == ([] if expected is None else
                                                         [f"apps/shop.yaml:10: {expected}"])


def test_required_fields_are_listed_each_on_its_own_line() -> None:
    found = problems_of("application: shop\nclusters:\n  - regions: [r1]\n")

    assert found == [
        "apps/shop.yaml:1: owner: required field",
        "apps/shop.yaml:3: clusters[0].account: required field",
        "apps/shop.yaml:3: clusters[0].capacity: required field",
        "apps/shop.yaml:3: clusters[0].image: required field",
        "apps/shop.yaml:3: clusters[0].instance_type: required field",
        "apps/shop.yaml:3: clusters[0].provider: required field",
    ]


def test_no_clusters_is_an_error() -> None:
    assert problems_of("application: shop\nowner: me\nclusters: []\n") == [
        "apps/shop.yaml:3: clusters: min length is 1"]


def test_a_wrongly_shaped_cluster_is_reported_without_crashing_the_cross_field_rules() -> None:
    found = problems_of("application: shop\nowner: me\nclusters:\n  - just a string\n  - {capacity: 3}\n")

    assert found == [
        "apps/shop.yaml:4: clusters[0]: must be of dict type",
        "apps/shop.yaml:5: clusters[1].account: required field",
        "apps/shop.yaml:5: clusters[1].capacity: must be of dict type",
        "apps/shop.yaml:5: clusters[1].image: required field",
        "apps/shop.yaml:5: clusters[1].instance_type: required field",
        "apps/shop.yaml:5: clusters[1].provider: required field",
        "apps/shop.yaml:5: clusters[1].regions: required field",
    ]

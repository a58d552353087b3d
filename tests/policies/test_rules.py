"""Each guardrail as a pure function: table-driven, with DST transitions and a fake clock."""

from __future__ import annotations

import dataclasses
import json

import pytest

from policies import windows
from reconciler.core.model import Action, Capacity, Step, StepKind, Verdict
from specs import policy_file
from tests.policies.builders import REDBLACK, change, group, judge, messages, spec, ts, verdicts


@pytest.mark.parametrize(("steps", "expected"), [
    (REDBLACK, Verdict.ALLOW),
    ([Step(StepKind.DISABLE, "v000"), *REDBLACK[:3]], Verdict.DENY),            # disable before the new one serves
    ([REDBLACK[0], REDBLACK[2], REDBLACK[3]], Verdict.DENY),                   # enabled without a health wait
    ([Step(StepKind.RESIZE, "v000", Capacity(0, 0, 0))], Verdict.DENY),        # scale the only group to zero
    ([Step(StepKind.RESIZE, "v000", Capacity(1, 3, 4))], Verdict.ALLOW),
    ([Step(StepKind.DESTROY, "v000")], Verdict.DENY),                          # destroy the only serving group
    ([*REDBLACK[:3], Step(StepKind.DESTROY, "v000")], Verdict.ALLOW),
    # the new group was enabled and waited, but disabled again before the old one goes
    ([*REDBLACK[:3], Step(StepKind.DISABLE, "v001"), Step(StepKind.DISABLE, "v000")], Verdict.DENY),
])
def test_traffic_guard(steps, expected) -> None:
    plan = judge([change(steps=steps)], live=[group("v000")])
    assert verdicts(plan, "traffic-guard") == [expected]


ROLLBACK = [Step(StepKind.RESIZE, "v000", Capacity(1, 2, 4)), Step(StepKind.WAIT_HEALTHY, "v000"),
            Step(StepKind.ENABLE, "v000"), Step(StepKind.DISABLE, "v001")]


@pytest.mark.parametrize(("live", "steps", "expected"), [
    # rollback: the retained group is resized, waited healthy and enabled before the bad one is disabled
    ([group("v001"), group("v000", enabled=False, desired=0, healthy=0)], ROLLBACK, Verdict.ALLOW),
    ([group("v001"), group("v000", enabled=False, desired=0, healthy=0)],
     [ROLLBACK[0], ROLLBACK[3], ROLLBACK[2]], Verdict.DENY),
    # two serving groups: disabling one keeps the other
    ([group("v000"), group("v001")], [Step(StepKind.DISABLE, "v000")], Verdict.ALLOW),
    # nothing healthy serves, so there is nothing to protect (a broken cluster may be repaired)
    ([group("v000", healthy=0)], [Step(StepKind.DISABLE, "v000")], Verdict.ALLOW),
    # a healthy group in another region does not serve this one
    ([group("v000"), group("v001", region="r2")], [Step(StepKind.DISABLE, "v000")], Verdict.DENY),
    # disabled groups may be destroyed freely
    ([group("v001"), group("v000", enabled=False)], [Step(StepKind.DESTROY, "v000")], Verdict.ALLOW),
])
def test_traffic_guard_simulates_against_the_regions_live_groups(live, steps, expected) -> None:
    plan = judge([change(Action.ROLLBACK if steps is ROLLBACK else Action.REPLACE, steps=steps)], live=live)
    assert verdicts(plan, "traffic-guard") == [expected]


def test_traffic_guard_warns_on_a_deliberate_destroy() -> None:
    plan = judge([change(Action.DESTROY, steps=[Step(StepKind.DISABLE, "v000")])], live=[group("v000")])
    assert verdicts(plan, "traffic-guard") == [Verdict.WARN]


@pytest.mark.parametrize(("destroys", "live", "broken", "policy_yaml", "expected", "message"), [
    (1, 4, frozenset(), "", [], ""),
    (2, 4, frozenset(), "", [], ""),                                                       # 50% is not > 50%
    (3, 4, frozenset(), "", [Verdict.DENY] * 3, "would destroy 3 of 4 clusters (75% > 50%); an empty or broken tree?"),
    (8, 8, frozenset(), "", [Verdict.DENY] * 8, "would destroy 8 of 8 clusters (100% > 50%)"),
    (2, 4, frozenset(), "defaults: {mass_deletion: {max_share: 0.25}}", [Verdict.DENY] * 2, "(50% > 25%)"),
    (3, 4, frozenset(), "defaults: {mass_deletion: {max_share: 1}}", [], ""),
    (1, 4, frozenset({"apps/x.yaml"}), "", [Verdict.DENY], "while 1 spec file(s) have errors (apps/x.yaml)"),
])
def test_mass_deletion(destroys, live, broken, policy_yaml, expected, message) -> None:
    groups = [dataclasses.replace(group(f"c{i}-v000"), cluster=f"c{i}") for i in range(live)]
    groups += [dataclasses.replace(group(f"x{i}-v000", managed=False), cluster=f"x{i}") for i in range(10)]
    changes = [dataclasses.replace(change(Action.DESTROY), cluster=f"c{i}") for i in range(destroys)]
    plan = judge(changes, live=groups, broken=broken, yaml_text=policy_yaml)
    assert verdicts(plan, "mass-deletion") == expected, "unmanaged groups are not counted"
    assert all(message in m for m in messages(plan, "mass-deletion"))


BERLIN_WEEKDAYS = """
defaults:
  windows:
    timezone: Europe/Berlin
    allow: [{days: [mon, tue, wed, thu, fri], from: "09:00", to: "17:00"}]
    deny: [{days: [fri], from: "15:00", to: "17:00"}]
"""


@pytest.mark.parametrize(("when", "zone", "allowed", "fragment"), [
    ("2026-11-24T10:00", "Europe/Berlin", True, "until 2026-11-24T17:00+01:00"),      # Tuesday
    ("2026-11-24T18:00", "Europe/Berlin", False, "next opening 2026-11-25T09:00+01:00"),
    ("2026-11-27T10:00", "Europe/Berlin", True, "until 2026-11-27T15:00+01:00"),   # Friday: the deny cuts it short
    # Friday afternoon: the denied window ends when the allowed one does, so Monday is next
    ("2026-11-27T15:30", "Europe/Berlin", False, "denied deployment window until 2026-11-27T17:00+01:00 "
                                                 "(Europe/Berlin); next opening 2026-11-30T09:00+01:00"),
    ("2026-11-28T10:00", "Europe/Berlin", False, "next opening 2026-11-30T09:00+01:00"),  # Saturday -> Monday
    # DST: Berlin springs forward on 2026-03-29 (Sunday); Monday opens at 09:00 CEST = 07:00 UTC
    ("2026-03-28T12:00", "Europe/Berlin", False, "next opening 2026-03-30T09:00+02:00"),
    ("2026-03-30T07:30", "UTC", True, "until 2026-03-30T17:00+02:00"),
    ("2026-03-30T06:30", "UTC", False, "next opening 2026-03-30T09:00+02:00"),
    # DST ends 2026-10-25: 09:00 CET Monday is 08:00 UTC
    ("2026-10-26T07:30", "UTC", False, "next opening 2026-10-26T09:00+01:00"),
    ("2026-10-26T08:00", "UTC", True, "until 2026-10-26T17:00+01:00"),
])
def test_deployment_windows_are_dst_correct(when, zone, allowed, fragment) -> None:
    pol, _ = policy_file.load_policy_file(BERLIN_WEEKDAYS, file="p")
    ok, message = windows.check(pol.global_settings()["windows"], ts(when, zone))
    assert ok is allowed and fragment in message, message


def test_overnight_windows_and_new_york_dst() -> None:
    text = """
defaults:
  windows: {allow: [{days: [sat], from: "22:00", to: "04:00", timezone: America/New_York}]}
"""
    w = policy_file.load_policy_file(text, file="p")[0].global_settings()["windows"]
    # New York springs forward at 02:00 on Sunday 2026-03-08: Saturday 22:00 EST is 03:00 UTC,
    # and Sunday 04:00 EDT is 08:00 UTC.
    assert not windows.check(w, ts("2026-03-08T02:30", "UTC"))[0]    # Sat 21:30 EST
    assert windows.check(w, ts("2026-03-08T03:30", "UTC"))[0]        # Sat 22:30 EST
    assert windows.check(w, ts("2026-03-08T07:30", "UTC"))[0]        # Sun 03:30 EDT
    assert not windows.check(w, ts("2026-03-08T08:30", "UTC"))[0]    # Sun 04:30 EDT


def test_a_window_that_opens_while_a_change_waits_lets_it_proceed() -> None:
    c = change(steps=REDBLACK)
    now = ts("2026-11-24T08:59", "Europe/Berlin")
    waiting = judge([c], yaml_text=BERLIN_WEEKDAYS, live=[group("v000")], now=now)
    assert verdicts(waiting, "deployment-window") == [Verdict.DENY]
    assert waiting.changes[0].verdict is Verdict.DENY
    opened = judge([c], yaml_text=BERLIN_WEEKDAYS, live=[group("v000")], now=now + 120)
    assert verdicts(opened, "deployment-window") == [Verdict.ALLOW]
    assert opened.changes[0].verdict is Verdict.ALLOW


def test_rollbacks_ignore_windows_and_freezes() -> None:
    rb = change(Action.ROLLBACK, steps=REDBLACK)
    plan = judge([rb], yaml_text=BERLIN_WEEKDAYS + "  freeze: {reason: incident}\n", live=[group("v000")],
                 now=ts("2026-11-28T10:00", "Europe/Berlin"))
    assert plan.changes[0].verdict is Verdict.ALLOW


@pytest.mark.parametrize(("switch", "repo", "expected"), [
    (None, "", []),
    ({"by": "ann", "reason": "incident"}, "", [Verdict.DENY]),
    (None, "defaults: {freeze: {reason: black friday}}", [Verdict.DENY]),
])
def test_freeze(switch, repo, expected) -> None:
    plan = judge([change(steps=REDBLACK)], yaml_text=repo, live=[group("v000")], freeze_switch=switch)
    assert verdicts(plan, "freeze") == expected


@pytest.mark.parametrize(("criticality", "waves", "pause", "policy_yaml", "expected"), [
    ("normal", (("r1",), ("r2", "r3")), 0, "", Verdict.ALLOW),
    ("normal", (("r1", "r2", "r3"),), 0, "", Verdict.DENY),            # all at once
    ("low", (("r1", "r2", "r3"),), 0, "", Verdict.ALLOW),              # low may run all regions in one wave
    ("critical", (("r1",), ("r2", "r3")), 0, "", Verdict.DENY),        # one region per wave
    ("critical", (("r1",), ("r2",), ("r3",)), 0, "", Verdict.ALLOW),
    ("normal", (("r1",), ("r2", "r3")), 0, "defaults: {waves: {min_pause: 10m}}", Verdict.DENY),
    ("normal", (("r1",), ("r2", "r3")), 600, "defaults: {waves: {min_pause: 10m}}", Verdict.ALLOW),
])
def test_region_waves(criticality, waves, pause, policy_yaml, expected) -> None:
    s = spec(regions=("r1", "r2", "r3"), waves=waves, pause=pause)
    plan = judge([change(s=s, steps=REDBLACK)], yaml_text=policy_yaml, live=[group("v000", s=s)],
                 criticality=criticality)
    assert verdicts(plan, "region-waves")[0] is expected


def _create(desired: int) -> list[Step]:
    return [Step(StepKind.CREATE, "v001", Capacity(1, desired, 8)), *REDBLACK[1:]]


@pytest.mark.parametrize(("spec_cap", "autoscaling", "lbs", "starts", "serving", "expected", "fragment"), [
    (Capacity(1, 3, 8), False, (), 3, 3, [], ""),
    (Capacity(1, 1, 8), False, (), 1, 3, [Verdict.WARN], "capacity.desired lowers capacity on purpose"),
    (Capacity(1, 3, 8), False, (), 1, 3, [Verdict.DENY], "below the 3 checkout-main-v000 serves and the 3"),
    # autoscaling: the new group starts at the serving size, clamped to the spec's bounds
    (Capacity(1, 2, 8), True, (), 5, 5, [], ""),
    (Capacity(1, 2, 4), True, (), 4, 5, [Verdict.WARN], "capacity.max lowers capacity on purpose"),
    (Capacity(1, 2, 8), True, (), 2, 5, [Verdict.DENY], "the 5 the spec asks for"),
    # behind a load balancer, min 0 could drain the cluster
    (Capacity(0, 2, 8), False, ("web",), 2, 2, [Verdict.DENY], "capacity.min is 0"),
    (Capacity(0, 2, 8), False, (), 2, 2, [], ""),
])
def test_capacity_guard(spec_cap, autoscaling, lbs, starts, serving, expected, fragment) -> None:
    s = dataclasses.replace(spec(lbs=lbs, cap=spec_cap), autoscaling=autoscaling)
    live = group("checkout-main-v000", desired=serving, s=s)
    plan = judge([change(s=s, steps=_create(starts), current=live)], live=[live])
    assert verdicts(plan, "capacity-guard") == expected
    assert fragment in " ".join(v.message for v in plan.changes[0].verdicts if v.policy == "capacity-guard")


def test_capacity_guard_leaves_rollbacks_and_first_deploys_alone() -> None:
    first = judge([change(Action.CREATE, steps=_create(1))])
    rollback = judge([change(Action.ROLLBACK, steps=[Step(StepKind.RESIZE, "v000", Capacity(1, 1, 8))],
                             current=group("v001", desired=5))], live=[group("v001", desired=5)])
    assert verdicts(first, "capacity-guard") == verdicts(rollback, "capacity-guard") == []


def test_allow_lists_per_account() -> None:
    text = 'defaults: {allowed_images: {prod: ["img-*"]}, allowed_instance_types: {"*": ["m5.*"]}}'
    ok = judge([change(steps=REDBLACK)], yaml_text=text, live=[group("v000")])
    assert verdicts(ok, "allow-list") == []
    bad = judge([change(s=spec(image="evil", itype="x1.32xlarge"), steps=REDBLACK)], yaml_text=text,
                live=[group("v000")])
    assert verdicts(bad, "allow-list") == [Verdict.DENY, Verdict.DENY]


def test_blast_radius_asks_for_approval() -> None:
    changes = [dataclasses.replace(change(steps=REDBLACK), cluster=f"c{i}") for i in range(3)]
    plan = judge(changes, yaml_text="defaults: {blast_radius: {max_clusters: 2}}", live=[group("v000")])
    assert verdicts(plan, "blast-radius") == [Verdict.APPROVE] * 3


def test_protected_accounts_and_critical_production_need_approval() -> None:
    plan = judge([change(steps=REDBLACK)], yaml_text="defaults: {protected_accounts: [prod]}", live=[group("v000")])
    assert verdicts(plan, "protected-account") == [Verdict.APPROVE]
    plan = judge([change(steps=REDBLACK)], live=[group("v000")], criticality="critical")
    assert verdicts(plan, "criticality") == [Verdict.APPROVE]
    plan = judge([change(steps=REDBLACK, account="staging")], live=[group("v000")], criticality="critical")
    assert verdicts(plan, "criticality") == []
    rb = judge([change(Action.ROLLBACK, steps=REDBLACK)], live=[group("v000")], criticality="critical")
    assert rb.changes[0].verdict is not Verdict.APPROVE


def test_signed_commits() -> None:
    text = "defaults: {signed_commits: {required: true}}"
    plan = judge([change(steps=REDBLACK)], yaml_text=text, live=[group("v000")],
                 commit_signature={"verified": False, "key": "", "reason": "not signed"})
    assert verdicts(plan, "signed-commits") == [Verdict.DENY]
    plan = judge([change(steps=REDBLACK)], yaml_text=text, live=[group("v000")],
                 commit_signature={"verified": True, "key": "ops@example.com", "reason": "good"})
    assert verdicts(plan, "signed-commits") == [Verdict.ALLOW]


def test_layers_resolve_most_specific_first() -> None:
    text = """
defaults: {blast_radius: {max_clusters: 10}, require_approval: never}
criticality: {critical: {require_approval: always}}
applications: {checkout: {protected_accounts: [staging]}}
clusters: {checkout-main: {require_approval: never}}
"""
    pol, problems = policy_file.load_policy_file(text, file="p")
    assert problems == []
    s = pol.for_cluster("checkout", "checkout-main", "critical")
    assert s["require_approval"] == "never" and s["protected_accounts"] == ["staging"]
    assert pol.for_cluster("checkout", "checkout-other", "critical")["require_approval"] == "always"
    assert s["waves"]["max_regions_per_wave"] == 1, "built-in critical default kept where not overridden"


def test_policy_file_errors_have_lines() -> None:
    text = "defaults:\n  windows:\n    allow: [{days: [funday], from: '25:00', to: '10:00'}]\n  colour: red\n" \
           "  waves: {max_regions_per_wave: -1}\ncriticality: {critical: {windows: {timezone: Mars/Olympus}}}\n"
    _pol, problems = policy_file.load_policy_file(text, file="apps/policies.yaml")
    text_problems = [str(p) for p in problems]
    assert any(p.startswith("apps/policies.yaml:3: defaults.windows.allow[0]") for p in text_problems), text_problems
    assert any("apps/policies.yaml:4: defaults.colour: unknown field" in p for p in text_problems)
    assert any(":5: defaults.waves.max_regions_per_wave" in p for p in text_problems)
    assert any("unknown time zone 'Mars/Olympus'" in p for p in text_problems)


@pytest.mark.parametrize(("config", "when", "zone", "allowed", "fragment"), [
    # deny only: closed during the deny, open otherwise; chained denied windows are skipped over as one
    ({"deny": [{"days": ["fri"], "from": "18:00", "to": "24:00"}, {"days": ["sat"], "from": "00:00", "to": "24:00"}],
      "timezone": "America/New_York"}, "2026-11-27T20:00", "America/New_York", False,
     "until 2026-11-28T00:00-05:00 (America/New_York); next opening 2026-11-29T00:00-05:00 (America/New_York)"),
    ({"deny": [{"days": ["fri"], "from": "18:00", "to": "24:00"}], "timezone": "America/New_York"},
     "2026-11-27T12:00", "America/New_York", True, "until 2026-11-27T18:00-05:00"),
    # a denied lunch hour inside an allowed day: the opening is when the deny ends, not tomorrow
    ({"allow": [{"from": "09:00", "to": "17:00"}], "deny": [{"from": "12:00", "to": "13:00"}]},
     "2026-11-24T12:15", "UTC", False, "next opening 2026-11-24T13:00+00:00 (UTC)"),
    # windows in different zones: the opening is named in the zone of the window that opens
    ({"allow": [{"from": "09:00", "to": "10:00", "timezone": "Asia/Tokyo"},
                {"from": "09:00", "to": "10:00", "timezone": "Europe/Berlin"}]},
     "2026-11-24T02:00", "UTC", False, "next opening 2026-11-24T09:00+01:00 (Europe/Berlin)"),
    # nothing ever opens
    ({"allow": [{"days": ["mon"], "from": "09:00", "to": "10:00"}],
      "deny": [{"days": ["mon"], "from": "00:00", "to": "24:00"}]}, "2026-11-24T02:00", "UTC", False,
     "no window opens within 14 days"),
    # America/New_York falls back on 2026-11-01: 01:30 happens twice; a 01:00-02:00 window spans both
    ({"allow": [{"days": ["sun"], "from": "01:00", "to": "02:00", "timezone": "America/New_York"}]},
     "2026-11-01T06:30", "UTC", True, "until 2026-11-01T02:00-05:00"),  # the second 01:30 (EST)
])
def test_deployment_window_edges(config, when, zone, allowed, fragment) -> None:
    ok, message = windows.check(config, ts(when, zone))
    assert ok is allowed and fragment in message, message


def test_deployment_windows_deny_with_the_opening_and_never_hold_rollbacks() -> None:
    text = "defaults: {windows: {allow: [{days: [sat], from: '10:00', to: '12:00'}]}}"
    at = ts("2026-11-24T10:00")
    plan = judge([change(steps=REDBLACK), change(Action.ROLLBACK, steps=REDBLACK, region="r2")], yaml_text=text,
                 live=[group("v000")], now=at)
    assert verdicts(plan, "deployment-window") == [Verdict.DENY, Verdict.ALLOW]
    assert messages(plan, "deployment-window")[0] == (
        "outside the allowed deployment windows; next opening 2026-11-28T10:00+00:00 (UTC)")


@pytest.mark.parametrize(("lists", "account", "image", "itype", "expected"), [
    ({"allowed_images": {"prod": ["ami-*"]}}, "prod", "ami-123", "m5.large", []),
    ({"allowed_images": {"prod": ["ami-*"]}}, "prod", "evil", "m5.large", ["image 'evil' is not allowed in account "
                                                                           "prod (allowed_images: ami-*)"]),
    ({"allowed_images": {"prod": ["ami-*"]}}, "staging", "evil", "m5.large", []),           # not covered
    ({"allowed_images": {"prod-*": ["ami-*"], "*": ["*"]}}, "prod-eu", "evil", "m5.large", ["image 'evil'"]),
    ({"allowed_images": {"prod-eu": ["*"], "prod-*": ["ami-*"]}}, "prod-eu", "evil", "m5.large", []),  # exact wins
    ({"allowed_instance_types": {"*": ["m5.*", "c5.*"]}}, "dev", "x", "x1.32xlarge",
     ["instance_type 'x1.32xlarge' is not allowed in account dev (allowed_instance_types: m5.*, c5.*)"]),
    ({"allowed_instance_types": {"*": []}}, "dev", "x", "m5.large", ["(allowed_instance_types: nothing)"]),
])
def test_allow_lists(lists, account, image, itype, expected) -> None:
    c = change(s=spec(image=image, itype=itype), steps=REDBLACK, account=account)
    plan = judge([c], yaml_text=f"defaults: {json.dumps(lists)}", live=[group("v000")])
    got = messages(plan, "allow-list")
    assert len(got) == len(expected) and all(e in m for e, m in zip(expected, got, strict=True)), got


def test_allow_lists_judge_only_what_creates_a_group() -> None:
    text = 'defaults: {allowed_images: {"*": ["ami-*"]}}'
    for action in (Action.RESIZE, Action.ROLLBACK):
        plan = judge([change(action, s=spec(image="evil"), steps=REDBLACK[:1])], yaml_text=text)
        assert verdicts(plan, "allow-list") == []


def test_blast_radius_counts_clusters_not_regions_and_ignores_rollbacks() -> None:
    text = "defaults: {blast_radius: {max_clusters: 2}}"
    two = [dataclasses.replace(change(steps=REDBLACK, region=r), cluster=f"c{i}") for i in range(2) for r in "ab"]
    assert verdicts(judge(two, yaml_text=text), "blast-radius") == []
    rollback = dataclasses.replace(change(Action.ROLLBACK, steps=REDBLACK), cluster="c9")
    three = [*two, dataclasses.replace(change(steps=REDBLACK), cluster="c2"), rollback]
    plan = judge(three, yaml_text=text)
    assert verdicts(plan, "blast-radius") == [Verdict.APPROVE] * 5, "the rollback is not held"
    assert messages(plan, "blast-radius")[0] == ("this plan changes 3 clusters (more than 2); "
                                                 "approve the plan to proceed")


@pytest.mark.parametrize(("text", "criticality", "account", "action", "expected"), [
    ("defaults: {protected_accounts: ['pay*']}", "low", "payments", Action.REPLACE,
     {"protected-account": [Verdict.APPROVE]}),
    ("defaults: {protected_accounts: ['pay*']}", "low", "payments", Action.ROLLBACK,
     {"protected-account": [Verdict.WARN]}),
    ("defaults: {protected_accounts: ['pay*']}", "low", "staging", Action.REPLACE, {"protected-account": []}),
    ("", "critical", "prod", Action.REPLACE, {"criticality": [Verdict.APPROVE]}),
    ("", "critical", "production-eu", Action.CREATE, {"criticality": [Verdict.APPROVE]}),
    ("", "critical", "staging", Action.REPLACE, {"criticality": []}),
    ("", "critical", "prod", Action.ROLLBACK, {"criticality": []}),
    ("", "normal", "prod", Action.REPLACE, {"criticality": []}),
    ("defaults: {production_accounts: [live]}", "critical", "live", Action.REPLACE, {"criticality": [Verdict.APPROVE]}),
    ("defaults: {production_accounts: [live]}", "critical", "prod", Action.REPLACE, {"criticality": []}),
    ("applications: {checkout: {require_approval: always}}", "low", "dev", Action.RESIZE,
     {"criticality": [Verdict.APPROVE]}),
])
def test_approval_rules(text, criticality, account, action, expected) -> None:
    plan = judge([change(action, steps=REDBLACK, account=account)], yaml_text=text, criticality=criticality)
    for policy, want in expected.items():
        assert verdicts(plan, policy) == want


def test_region_wave_messages_name_the_wave_and_why() -> None:
    s = spec(regions=("r1", "r2", "r3", "r4"), waves=(("r1",), ("r2", "r3", "r4")))
    plan = judge([change(s=s, steps=REDBLACK)], yaml_text="defaults: {waves: {max_regions_per_wave: 2}}")
    assert messages(plan, "region-waves") == [
        "wave 2 has 3 regions (r2, r3, r4); at most 2 may be in flight at once (rollout.waves)"]
    s = spec(regions=("r1", "r2"), waves=(("r1", "r2"),))
    plan = judge([change(s=s, steps=REDBLACK)])
    assert messages(plan, "region-waves") == ["wave 1 has 2 regions (r1, r2); at most 1 may go first (rollout.waves)"]

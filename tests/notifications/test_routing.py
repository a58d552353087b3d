"""Which events go where: notify rules in policies.yaml, layered like every guardrail setting."""

from __future__ import annotations

import textwrap

from specs import policy_file
from tests.notifications.conftest import Rig
from tests.notifications.endpoints import github_status

POLICIES = textwrap.dedent("""
    defaults:
      notify:
        - {targets: [chat], events: [deploy_failed, rolled_back, stalled, source_error]}
    criticality:
      critical:
        notify:
          - {targets: [chat, pager], events: ["*"]}
    applications:
      checkout:
        notify:
          - {targets: [chat], events: [deploy_started, deploy_succeeded, deploy_failed]}
          - {targets: [mail], events: [deploy_failed]}
    clusters:
      search-batch:
        notify: []
""")


def _targets(endpoint, tmp_path) -> dict:
    ep = endpoint()
    (tmp_path / "token").write_text("t\n")
    return {"targets": {name: {"type": "webhook", "url": ep.url(f"/{name}")} for name in ("chat", "mail", "pager")},
            "commit_status": {"forge": {"type": "github", "url": endpoint(github_status).url("/api/v3"),
                                        "repo": "o/r", "token_file": str(tmp_path / "token")}}}


def _routed(r: Rig) -> dict[str, list[tuple[str, str]]]:
    r.feed()
    return {name: [(row["application"], row["kind"]) for row in r.box.rows_of(name)]
            for name in ("chat", "mail", "pager", "forge")}


def test_rules_pick_targets_and_events_per_application_criticality_and_cluster(rig, endpoint, tmp_path):
    r: Rig = rig(_targets(endpoint, tmp_path), policies=POLICIES, criticality={"payments": "critical"})
    r.deploy("checkout", fail="us-east-1")
    r.deploy("cart", image="cart-2")
    r.deploy("cart", image="cart-3", fail="us-east-1")
    r.deploy("payments", image="payments-9")
    r.deploy("search", image="search-1", stack="batch", fail="us-east-1")
    routed = _routed(r)
    assert routed["chat"] == [
        ("checkout", "deploy_started"), ("checkout", "deploy_failed"),   # the application's own rule
        ("cart", "deploy_failed"),                                          # defaults: failures only
        ("payments", "deploy_started"), ("payments", "deploy_succeeded"),  # critical: everything
    ]
    assert routed["mail"] == [("checkout", "deploy_failed")]
    assert routed["pager"] == [("payments", "deploy_started"), ("payments", "deploy_succeeded")]
    assert len(routed["forge"]) == 10, "commit statuses follow every deploy, whatever the rules say"


def test_without_rules_every_event_goes_to_every_target(rig, endpoint, tmp_path):
    r: Rig = rig(_targets(endpoint, tmp_path))
    r.deploy("cart", image="cart-2")
    routed = _routed(r)
    assert routed["chat"] == routed["mail"] == routed["pager"] == [("cart", "deploy_started"),
                                                                    ("cart", "deploy_succeeded")]


def test_a_rule_naming_an_unknown_target_is_logged_once(rig, endpoint, tmp_path, caplog):
    policies = "defaults:\n  notify:\n    - {targets: [chat, oncall]}\n"
    r: Rig = rig(_targets(endpoint, tmp_path), policies=policies)
    r.deploy("a", image="a-1")
    r.deploy("b", image="b-1")
    r.feed()
    assert [m for m in caplog.messages if "'oncall'" in m] == [
        "notifications: policies.yaml names target 'oncall', which is not in the config's notifications.targets"]


def test_a_misspelt_event_in_policies_yaml_is_a_problem_with_its_line():
    text = "defaults:\n  notify:\n    - targets: [chat]\n      events: [deploy_faild]\n"
    _, problems = policy_file.load_policy_file(text, file="apps/policies.yaml")
    assert [str(p) for p in problems] == [
        "apps/policies.yaml:4: defaults.notify[0].events[0]: unallowed value deploy_faild"]
    _, problems = policy_file.load_policy_file("defaults:\n  notify:\n    - {events: ['*']}\n", file="p.yaml")
    assert [str(p) for p in problems] == ["p.yaml:3: defaults.notify[0].targets: required field"]

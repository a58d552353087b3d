"""Which events go where: notify rules in policies.yaml, layered like every guardrail setting."""

from __future__ import annotations

import textwrap
from typing import Any

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


def _targets(endpoint, tmp_path) -> dict[str, Any]:
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


def test_the_daemon_reads_the_rules_and_criticality_in_force_from_its_mirror(env):
    from reconciler.config import settings as config_mod
    from reconciler.notifications import worker
    from reconciler.state import store as store_mod
    from tests.conftest import app_spec

    env.repo.write("apps/checkout.yaml", app_spec(regions=("us-east-1",), criticality="low"))
    env.repo.write("apps/policies.yaml", "applications:\n  checkout:\n    notify: [{targets: [chat]}]\n")
    env.repo.commit("v1")
    assert env.cli("run", "--once").code == 0
    cfg = config_mod.load_config(env.config)
    store = store_mod.Store(cfg.state_url)
    try:
        reader = worker.PolicyReader(cfg, store)
        settings, criticality = reader()
        assert settings.for_cluster("checkout", "checkout-main", "low")["notify"] == [{"targets": ["chat"]}]
        assert settings.for_cluster("cart", "cart-main", "normal")["notify"] == policy_file.BUILTIN["notify"]
        assert criticality == {"checkout": "low"}
        env.repo.write("apps/policies.yaml", "applications:\n  checkout:\n    notify: [{targets: [chaat], "
                                             "events: [deploy_faild]}]\n").commit("typo")
        env.cli("run", "--once")
        settings, _ = reader()
        assert settings.problems and settings.for_cluster("checkout", "x", "low")["notify"] == \
            policy_file.BUILTIN["notify"], "a broken file tells everyone everything"
    finally:
        store.close()

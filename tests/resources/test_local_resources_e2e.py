"""Load balancers and security groups declared in specs, end to end through the CLI on the local provider."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from providers.local import LocalProvider
from reconciler.config import settings as config_mod
from reconciler.core.resources import Kind
from reconciler.notifications import kinds, messages
from reconciler.state import store as store_mod
from tests.conftest import DesiredRepo, Env, app_spec, provider_context, write_config

ONE = ("us-east-1",)
USES = "load_balancers: [checkout-web]\nsecurity_groups: [checkout]\n"
WEB = """\
load_balancers:
  - name: checkout-web
    health_check: {{path: {path}, interval: 10s}}
security_groups:
  - name: checkout
    description: checkout web servers
    ingress:
{rules}"""
HTTPS = "      - {protocol: tcp, ports: 443, cidr: 0.0.0.0/0}\n"
ADMIN = "      - {protocol: tcp, ports: 8443, cidr: 10.0.0.0/8}\n"


def spec(*, image: str = "checkout-1.0", path: str = "/health", rules: str = HTTPS, uses: str = USES,
         declare: bool = True) -> str:
    return app_spec(regions=ONE, image=image, extra=uses) + (WEB.format(path=path, rules=rules) if declare else "")


@pytest.fixture
def env(tmp_path: Path) -> Env:
    repo = DesiredRepo(tmp_path / "desired")
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "config.yaml", repo.path, state, prune=True)
    repo.write("apps/keep.yaml", app_spec("keep", regions=ONE))
    repo.write("apps/policies.yaml", "defaults: {mass_deletion: {max_share: 1.0}}\n")
    return Env(repo, cfg, state)


def _local(env: Env) -> LocalProvider:
    cfg = config_mod.load_config(env.config)
    return LocalProvider("default", provider_context(cfg.state_url, cfg.state_dir))


def _resources(env: Env) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["kind"], r["name"]): r for r in env.status()["resources"]}


def _plan_json(env: Env) -> dict[str, Any]:
    res = env.cli("plan", "--format", "json")
    assert res.code in (0, 2), res.err
    return dict(json.loads(res.out))


def test_resources_are_created_before_the_first_cluster_and_listed_in_status(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", spec()).commit("v1")
    res = env.cli("apply", "--yes")
    assert res.code == 0, res.out + res.err
    progress = res.out[res.out.index("Plan: "):]
    assert progress.index("load balancer checkout-web us-east-1: create") < progress.index("create checkout-main-v000")
    assert progress.index("security group checkout us-east-1: create") < progress.index("create checkout-main-v000")
    found = _resources(env)
    lb, sg = found[("load_balancer", "checkout-web")], found[("security_group", "checkout")]
    assert lb["managed"] and lb["application"] == "checkout"
    assert lb["settings"]["health_check.path"] == "/health" and lb["settings"]["health_check.interval"] == "10s"
    assert lb["server_groups"] == [{"server_group": "checkout-main-v000", "application": "checkout",
                                    "enabled": True, "healthy": 2, "desired": 2}]
    assert lb["health"] == "healthy" and lb["healthy"] == 2
    assert sg["rules"] == ["tcp 443 from 0.0.0.0/0"]
    text = env.cli("status").out
    assert "load balancer checkout-web: healthy 2/2 healthy, attached: checkout-main-v000" in text
    assert env.cli("plan").code == 0, "converged: nothing left to do"


def test_a_health_check_change_updates_the_balancer_in_place(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", spec()).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    env.repo.write("apps/checkout.yaml", spec(path="/ready")).commit("v2")
    res = env.cli("plan")
    assert res.code == 2
    assert "update load balancer checkout-web local/default us-east-1" in res.out
    assert "~ health_check.path: /health -> /ready" in res.out
    assert "resources: 0 to create, 1 to update, 0 to destroy" in res.out
    doc = _plan_json(env)
    assert doc["changes"] == [], "the cluster is untouched: no new server group"
    [change] = doc["resource_changes"]
    assert change["action"] == "update" and change["fields"] == [
        {"field": "health_check.path", "old": "/health", "new": "/ready"}]
    assert change["used_by"] == ["checkout-main-v000"]
    assert env.cli("apply", "--yes").code == 0
    assert _resources(env)[("load_balancer", "checkout-web")]["settings"]["health_check.path"] == "/ready"
    assert [g["server_group"] for g in env.groups() if g["cluster"] == "checkout-main"] == ["checkout-main-v000"]
    assert env.cli("plan").code == 0


def test_a_rule_added_by_hand_is_reported_as_drift_and_taken_out(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", spec()).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    local = _local(env)
    try:
        local.tamper_resource("us-east-1", Kind.SECURITY_GROUP, "checkout",
                              rules=["tcp 443 from 0.0.0.0/0", "tcp 22 from 0.0.0.0/0"])
    finally:
        local.close()
    res = env.cli("plan")
    assert res.code == 2
    assert "drift: security group checkout was changed outside the reconciler (ingress)" in res.out
    assert "- ingress tcp 22 from 0.0.0.0/0" in res.out
    assert "APPROVE" not in res.out, "taking out a hand-made rule needs no approval"
    assert env.cli("pause", "checkout").code == 0
    paused = _plan_json(env)
    assert paused["resource_changes"] == [] and paused["resource_skipped"][0]["kind"] == "paused"
    assert env.cli("resume", "checkout").code == 0
    assert env.cli("apply", "--yes").code == 0
    assert _resources(env)[("security_group", "checkout")]["rules"] == ["tcp 443 from 0.0.0.0/0"]


def test_narrowing_an_ingress_rule_in_use_waits_for_an_approval(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", spec(rules=HTTPS + ADMIN)).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    env.repo.write("apps/checkout.yaml", spec(rules=HTTPS)).commit("v2")
    doc = _plan_json(env)
    [change] = doc["resource_changes"]
    assert change["rules_removed"] == ["tcp 8443 from 10.0.0.0/8"] and change["verdict"] == "approve"
    assert change["narrows"] == ["tcp 8443 from 10.0.0.0/8"]
    assert doc["verdict"] == "approve"
    res = env.cli("apply", "--yes")
    assert res.code == 1 and "waiting for approval" in res.out
    assert len(_resources(env)[("security_group", "checkout")]["rules"]) == 2, "nothing narrowed yet"
    assert env.cli("approve", change["change_id"]).code == 0
    assert env.cli("apply", "--yes").code == 0
    assert _resources(env)[("security_group", "checkout")]["rules"] == ["tcp 443 from 0.0.0.0/0"]


def test_a_resource_in_use_is_never_destroyed_and_goes_once_the_last_group_left(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", spec()).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    # the new version uses neither: the retained v000 still does
    env.repo.write("apps/checkout.yaml", spec(image="checkout-2.0", uses="", declare=False)).commit("v2")
    assert env.cli("apply", "--yes").code == 0
    doc = _plan_json(env)
    assert doc["resource_changes"] == []
    kept = {s["name"]: s for s in doc["resource_skipped"]}
    assert kept["checkout-web"]["kind"] == "in_use"
    assert "used by checkout-main-v000" in kept["checkout-web"]["reason"]
    text = env.cli("plan").out
    assert "skipped: checkout-web" in text and "used by checkout-main-v000" in text
    # the next deploy retires v000 (keep_disabled: 1): nothing uses them then, and they go after it
    env.repo.write("apps/checkout.yaml", spec(image="checkout-3.0", uses="", declare=False)).commit("v3")
    doc = _plan_json(env)
    assert sorted((c["action"], c["name"], tuple(c["after"])) for c in doc["resource_changes"]) == [
        ("destroy", "checkout", ("local/default/us-east-1/checkout-main",)),
        ("destroy", "checkout-web", ("local/default/us-east-1/checkout-main",))]
    assert env.cli("apply", "--yes").code == 0
    assert _resources(env) == {}, "in the same pass as the destroy of v000"
    assert env.cli("plan").code == 0


def test_removing_the_application_destroys_its_clusters_first_and_its_resources_after(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", spec()).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    env.repo.remove("apps/checkout.yaml").commit("remove checkout")
    doc = _plan_json(env)
    after = {c["name"]: c["after"] for c in doc["resource_changes"]}
    assert after == {"checkout-web": ["local/default/us-east-1/checkout-main"],
                     "checkout": ["local/default/us-east-1/checkout-main"]}
    res = env.cli("apply", "--yes")
    assert res.code == 0, res.out + res.err
    progress = res.out[res.out.index("Plan: "):]
    assert progress.index("destroy checkout-main-v000") < progress.index("load balancer checkout-web us-east-1: "
                                                                          "destroy"), "the groups go first"
    assert not [g for g in env.groups() if g["application"] == "checkout"]
    assert _resources(env) == {}, "freed in the same pass"
    assert env.cli("plan").code == 0


def test_a_freed_resource_waits_when_the_destroy_of_its_last_group_fails(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", spec()).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    write_config(env.config, env.repo.path, env.state_dir, prune=True, providers={"local": {"accounts": {
        "default": {"boot_seconds": 0, "faults": {"rate": 1.0, "calls": ["destroy"]}}}}})
    env.repo.remove("apps/checkout.yaml").commit("remove checkout")
    env.cli("apply", "--yes")
    assert [g["server_group"] for g in env.groups() if g["application"] == "checkout"] == ["checkout-main-v000"]
    assert set(_resources(env)) == {("load_balancer", "checkout-web"), ("security_group", "checkout")}
    history = env.cli("history").out
    assert "destroy load balancer checkout-web in us-east-1 not started" in history


def test_resources_kept_while_prune_is_off(tmp_path: Path) -> None:
    repo = DesiredRepo(tmp_path / "desired")
    e = Env(repo, write_config(tmp_path / "config.yaml", repo.path, tmp_path / "state"), tmp_path / "state")
    repo.write("apps/checkout.yaml", spec()).commit("v1")
    assert e.cli("apply", "--yes").code == 0
    repo.write("apps/checkout.yaml", spec(uses="", declare=False)).commit("v2")
    assert e.cli("apply", "--yes").code == 0
    skipped = {s["name"]: s["kind"] for s in _plan_json(e)["resource_skipped"]}
    assert skipped == {"checkout-web": "prune_off", "checkout": "prune_off"}


def test_a_name_neither_declared_nor_live_is_a_spec_problem_and_the_others_go_on(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", spec(uses="load_balancers: [checkout-wbe]\n", declare=False))
    env.repo.write("apps/search.yaml", app_spec("search", regions=ONE)).commit("typo")
    res = env.cli("plan")
    assert res.code == 1
    assert ("apps/checkout.yaml:13: clusters[0].load_balancers: no load balancer named 'checkout-wbe' is "
            "declared (load_balancers:) or exists in local/default/us-east-1") in res.out
    assert "create search-main" in res.out and "create checkout-main" not in res.out
    env.cli("apply", "--yes")
    assert {g["application"] for g in env.groups()} == {"keep", "search"}


def test_a_resource_someone_else_made_is_used_but_never_changed(env: Env) -> None:
    local = _local(env)
    try:
        local.put_foreign_resource("us-east-1", Kind.LOAD_BALANCER, "checkout-web")
        local.put_foreign_resource("us-east-1", Kind.SECURITY_GROUP, "shared")
    finally:
        local.close()
    uses = "load_balancers: [checkout-web]\nsecurity_groups: [shared, checkout]\n"
    env.repo.write("apps/checkout.yaml", spec(uses=uses))
    env.repo.commit("uses a foreign balancer")
    doc = _plan_json(env)
    assert [c["name"] for c in doc["resource_changes"]] == ["checkout"], "the declared, missing one is created"
    assert [s["kind"] for s in doc["resource_skipped"]] == ["unowned"]
    assert env.cli("apply", "--yes").code == 0
    foreign = _resources(env)[("load_balancer", "checkout-web")]
    assert not foreign["managed"] and foreign["settings"] == {} and foreign["health"] == "healthy"


def test_the_daemon_pass_creates_resources_before_the_clusters(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", spec()).commit("v1")
    res = env.cli("run", "--once")
    assert res.code == 0, res.err
    assert ("load_balancer", "checkout-web") in _resources(env)
    assert any(g["cluster"] == "checkout-main" and g["enabled"] for g in env.groups())


def test_plans_in_markdown_show_resource_diffs_before_the_clusters(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", spec(rules=HTTPS + ADMIN)).commit("v1")
    res = env.cli("plan", "--format", "markdown")
    assert res.code == 2
    out = res.out
    assert "<b>Load balancers and security groups</b> · 2 change(s), applied before the clusters" in out
    assert "+ ingress tcp 8443 from 10.0.0.0/8" in out and "+ health_check.path: /health" in out
    assert out.index("Load balancers and security groups") < out.index("<b>checkout-main</b>")
    assert "resources: 2 to create, 0 to update, 0 to destroy" in out


def test_a_cluster_waits_while_its_balancer_cannot_be_created(tmp_path: Path) -> None:
    repo = DesiredRepo(tmp_path / "desired")
    faults = {"rate": 1.0, "calls": ["create_resource"], "kinds": ["unavailable"], "seed": 1}
    cfg = write_config(tmp_path / "config.yaml", repo.path, tmp_path / "state", providers={
        "local": {"accounts": {"default": {"faults": faults}}}}, execution={"step_retries": 2, "step_backoff": "0s",
                                                                         "retry_backoff": "0s"})
    e = Env(repo, cfg, tmp_path / "state")
    repo.write("apps/checkout.yaml", spec()).commit("v1")
    res = e.cli("apply", "--yes")
    assert res.code == 1
    assert "load balancer checkout-web in us-east-1: failed:" in res.err and "service unavailable" in res.err
    assert e.groups() == [], "no group is created before what it names exists"
    history = e.cli("history").out
    assert "not started: waiting for load balancer checkout-web to be created" in history


def test_validate_names_the_file_and_line_of_every_resource_problem(env: Env) -> None:
    bad = spec().replace("cidr: 0.0.0.0/0}", "cidr: 0.0.0.0/0, group: checkout}").replace(
        "path: /health", "path: health")
    env.repo.write("apps/checkout.yaml", bad)
    res = env.cli("validate", str(env.repo.path / "apps"))
    assert res.code == 1
    assert res.out.splitlines() == [
        "apps/checkout.yaml:17: load_balancers[0].health_check.path: must be a path starting with / (no spaces)",
        "apps/checkout.yaml:22: security_groups[0].ingress[0]: give exactly one source: cidr (addresses) or group "
        "(another security group)",
    ]


def test_a_saved_plan_with_resource_changes_applies_and_goes_stale_when_a_resource_moves(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", spec()).commit("v1")
    saved = env.state_dir.parent / "plan.json"
    assert env.cli("plan", "--out", str(saved)).code == 2
    doc = json.loads(saved.read_text(encoding="utf-8"))
    assert len(doc["resource_changes"]) == 2
    res = env.cli("apply", "--plan", str(saved), "--yes")
    assert res.code == 0, res.out + res.err
    env.repo.write("apps/checkout.yaml", spec(path="/ready")).commit("v2")
    assert env.cli("plan", "--out", str(saved)).code == 2
    local = _local(env)
    try:
        local.tamper_resource("us-east-1", Kind.LOAD_BALANCER, "checkout-web", settings={"port": "81"})
    finally:
        local.close()
    res = env.cli("apply", "--plan", str(saved), "--yes")
    assert res.code == 1 and "live state changed since the plan was made" in res.err


def test_the_examples_repository_applies_with_its_balancer_and_security_group(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2] / "examples" / "desired-state"
    repo = DesiredRepo(tmp_path / "desired")
    for f in sorted((root / "apps").iterdir()):
        repo.write(f"apps/{f.name}", f.read_text(encoding="utf-8"))
    repo.commit("the quickstart")
    e = Env(repo, write_config(tmp_path / "config.yaml", repo.path, tmp_path / "state"), tmp_path / "state")
    res = e.cli("apply", "--yes")
    held = {h["key"].split("/")[3].split("-")[0] for h in e.status()["held"]}
    assert res.code == 1 and held == {"payments"}, res.out + res.err  # its later environments wait for test
    found = {(r["kind"], r["name"], r["region"]): r for r in e.status()["resources"]}
    assert set(found) == {(k, n, r) for k, n in (("load_balancer", "checkout-web"), ("security_group", "checkout"))
                          for r in ("us-east-1", "eu-west-1")}
    assert all(r["health"] == "healthy" for r in found.values())
    assert found[("load_balancer", "checkout-web", "eu-west-1")]["settings"]["health_check.path"] == "/health"


def test_a_narrowed_ingress_waiting_for_approval_is_announced_once(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", spec(rules=HTTPS + ADMIN)).commit("v1")
    assert env.cli("run", "--once").code == 0
    env.repo.write("apps/checkout.yaml", spec(rules=HTTPS)).commit("drop the admin port")
    for _ in range(2):
        assert env.cli("run", "--once").code == 0
    store = store_mod.Store(f"sqlite:///{env.state_dir / 'state.db'}")
    try:
        waiting = [r for r in store.history(limit=500) if r["kind"] == kinds.WAITING_FOR_APPROVAL]
    finally:
        store.close()
    assert len(waiting) == 1, "once, however many passes see it"
    (event,) = waiting
    change_id = event["detail"]["change_id"]
    assert (event["application"], event["cluster"], event["region"]) == ("checkout", "security_group:checkout",
                                                                          "us-east-1")
    assert event["detail"]["action"] == "update" and event["detail"]["command"] == f"reconciler approve {change_id}"
    n = messages.from_event(event)
    assert n is not None and n.application == "checkout" and f"run `reconciler approve {change_id}`" in n.text
    assert env.cli("approve", change_id).code == 0
    assert env.cli("run", "--once").code == 0
    assert _resources(env)[("security_group", "checkout")]["rules"] == ["tcp 443 from 0.0.0.0/0"]

"""Every /api/v1/ route against a real engine, with each scope: who may read what, who may change what, and
that the history names the token, never a value from the request."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import openapi_spec_validator
import pytest

from reconciler.console import openapi
from tests.conftest import app_spec
from tests.console.conftest import Reply, Site, make_site

READS = ["/api/v1/status", "/api/v1/applications", "/api/v1/applications/checkout", "/api/v1/plan",
         "/api/v1/approvals", "/api/v1/history", "/api/v1/executions", "/api/v1/whoami"]


def _pending(site: Site) -> list[dict[str, Any]]:
    res = site.get("/api/v1/approvals", "admin")
    assert res.status_code == 200
    return list(res.json["approvals"])


def test_every_route_the_daemon_serves_is_in_the_openapi_document(site: Site) -> None:
    doc = site.get("/api/v1/openapi.json").json
    assert doc == json.loads(json.dumps(openapi.document())) and doc["openapi"].startswith("3.1")
    served = set()
    for rule in site.api.rules():
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        if path.startswith("/api/") or path in ("/healthz", "/readyz", "/metrics", "/webhook"):
            assert rule.methods is not None, rule.rule
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                served.add((path, method.lower()))
    openapi_spec_validator.validate(doc)
    documented = {(p, m) for p, ops in doc["paths"].items() for m in ops}
    assert served and served == documented
    for path, ops in doc["paths"].items():
        for op in ops.values():
            assert op["summary"] and op["responses"], path
            names = {p["name"] for p in op.get("parameters", ()) if p["in"] == "path"}
            assert names == set(re.findall(r"{(\w+)}", path)), path


@pytest.mark.parametrize("path", READS)
def test_reads_need_a_token_and_a_wrong_one_is_named(site: Site, path: str) -> None:
    res = site.get(path)
    assert res.status_code == 401 and "http.public_read" in res.json["error"]
    res = Reply.of(site.client().get(path, headers={"Authorization": "Bearer not-a-token"}))
    assert res.status_code == 401 and "matches no configured token" in res.json["error"]
    for who in ("viewer", "ci", "operator", "admin"):
        assert site.get(path, who).status_code == 200, who


def test_public_read_opens_reads_but_not_changes(tmp_path: Path) -> None:
    s = make_site(tmp_path, public_read=True)
    try:
        s.reconcile()
        for path in READS:
            assert s.get(path).status_code == 200, path
        assert s.get("/api/v1/whoami").json["anonymous"] is True
        assert s.client().get("/api/v1/status", headers={"Authorization": "Bearer nope"}).status_code == 401
        for path in ("/api/v1/reconcile", "/api/v1/pause/checkout", "/api/v1/freeze"):
            res = s.post(path, json={"reason": "x"})
            assert res.status_code == 401 and "sign in" in res.json["error"], path
        assert s.get("/healthz").status_code == 200 and s.get("/metrics").status_code == 200
    finally:
        s.engine.close()


def test_read_scope_cuts_every_read_to_the_applications_it_matches(site: Site) -> None:
    """'approver' holds approve (so read) on payments only."""
    status = site.get("/api/v1/status", "approver").json
    assert set(status["applications"]) == {"payments"}
    assert {g["application"] for g in status["server_groups"]} <= {"payments"}
    assert all(c["key"].endswith("/payments-main") for c in status["changes"])
    assert [a["name"] for a in site.get("/api/v1/applications", "approver").json["applications"]] == ["payments"]
    res = site.get("/api/v1/applications/checkout", "approver")
    assert res.status_code == 403 and "'approver' has no read scope for application 'checkout'" in res.json["error"]
    assert site.get("/api/v1/history?application=checkout", "approver").status_code == 403
    events = site.get("/api/v1/history", "approver").json["events"]
    assert events and all(e["application"] in ("", "payments") for e in events)
    assert site.get("/api/v1/executions", "approver").json["executions"] == []  # payments never ran
    assert status["resources"] == [] and status["resource_changes"] == [], "checkout's balancer is not theirs"
    everything = site.get("/api/v1/status", "viewer").json
    assert set(everything["applications"]) == {"checkout", "payments"}
    assert {r["name"] for r in everything["resources"]} == {"checkout-web", "checkout-sg"}


def test_application_route_shows_clusters_groups_balancers_and_security_groups(site: Site) -> None:
    app = site.get("/api/v1/applications/checkout", "viewer").json
    (cluster,) = app["clusters"]
    assert cluster["name"] == "checkout-main" and cluster["stack"] == "main"
    assert [loc["region"] for loc in cluster["locations"]] == ["eu-west-1", "us-east-1"]
    group = cluster["locations"][0]["groups"][0]
    assert group["server_group"] == "checkout-main-v000" and group["enabled"] is True
    assert group["capacity"] == {"min": 1, "desired": 2, "max": 6} and group["healthy"] == 2
    assert group["commit"] == site.repo.head() and group["created_at"] > 0
    assert group["tags"]["team"] == "<script>alert(1)</script>" and group["tags"]["owner_token"] == "(hidden)"
    assert app["load_balancers"] == ["checkout-web"] and app["security_groups"] == ["checkout-sg"]
    declared = {(r["kind"], r["name"], r["region"]): r for r in app["resources"]}
    assert len(declared) == 4 and declared[("load_balancer", "checkout-web", "us-east-1")]["health"] == "healthy"
    assert declared[("security_group", "checkout-sg", "eu-west-1")]["server_groups"][0]["server_group"] == (
        "checkout-main-v000")
    assert site.get("/api/v1/applications/nothing", "viewer").status_code == 404


def test_executions_and_their_steps(site: Site) -> None:
    every = site.get("/api/v1/executions?application=checkout&limit=10", "viewer").json["executions"]
    resources = [r for r in every if r["cluster"].startswith(("load_balancer:", "security_group:"))]
    assert len(resources) == 4, "its balancer and security group, created in each region first"
    rows = [r for r in every if r not in resources]
    assert len(rows) == 2 and {r["state"] for r in rows} == {"succeeded"} and "change" not in rows[0]
    one = site.get(f"/api/v1/executions/{rows[0]['id']}", "viewer").json
    assert one["id"] == rows[0]["id"] and "change" not in one
    kinds = [s["kind"] for s in one["steps"]]
    assert "create" in kinds and all(s["state"] == "done" and s["started_at"] for s in one["steps"])
    assert site.get(f"/api/v1/executions/{rows[0]['id']}", "approver").status_code == 403
    assert site.get("/api/v1/executions/nope", "viewer").status_code == 404
    assert site.get("/api/v1/executions?limit=0", "viewer").status_code == 400
    history = site.get("/api/v1/history?limit=5", "viewer").json
    assert len(history["events"]) == 5 and history["executions"]


def test_plan_in_every_format(site: Site) -> None:
    doc = site.get("/api/v1/plan", "viewer").json
    plan = doc["plan"]
    assert {"plan_id", "commit", "changes", "verdict"} <= set(plan)
    (change,) = plan["changes"]
    assert change["application"] == "payments" and change["verdict"] == "approve"
    assert [h["application"] for h in doc["held"]] == ["payments"] and "approval" in doc["held"][0]["why"]
    text = site.get("/api/v1/plan?format=text", "viewer").json["text"]
    assert "payments-main" in text and "held: payments-main" in text
    parts = site.get("/api/v1/plan?format=markdown&max_comment_chars=2000", "viewer").json["markdown"]
    assert parts and all(len(p) <= 2000 for p in parts)
    assert site.get("/api/v1/plan?format=yaml", "viewer").status_code == 400


def test_each_change_needs_its_scope_and_is_recorded_under_the_tokens_name(site: Site) -> None:
    (pending,) = _pending(site)
    ident = pending["change_id"]
    assert pending["application"] == "payments"
    # viewer: read only
    for path, body in [("/api/v1/reconcile", None), (f"/api/v1/approve/{ident}", None),
                       ("/api/v1/pause/checkout", None), ("/api/v1/resume/checkout", None),
                       ("/api/v1/rollback/checkout-main", None), ("/api/v1/freeze", {"reason": "x"}),
                       ("/api/v1/unfreeze", None)]:
        res = site.post(path, "viewer", json=body)
        assert res.status_code == 403 and "token 'viewer' has no" in res.json["error"], path
    # operator: operate on check*, not approve, not admin, not other applications
    res = site.post(f"/api/v1/approve/{ident}", "operator")
    assert res.status_code == 403 and "no approve scope" in res.json["error"]
    res = site.post("/api/v1/pause/payments", "operator")
    assert res.status_code == 403 and "no operate scope for application 'payments'" in res.json["error"]
    assert site.post("/api/v1/freeze", "operator", json={"reason": "x"}).status_code == 403
    res = site.post("/api/v1/pause/checkout-main", "operator", json={"reason": "incident", "by": "mallory"})
    assert res.status_code == 200 and res.json == {"paused": "checkout-main", "by": "operator"}
    assert site.post("/api/v1/resume/checkout-main", "operator").json == {"resumed": "checkout-main",
                                                                         "by": "operator"}
    assert site.post("/api/v1/reconcile", "operator").status_code == 202 and "api" in site.triggered
    # approver: approves payments, nothing else
    assert site.post("/api/v1/pause/payments", "approver").status_code == 403
    res = site.post(f"/api/v1/approve/{ident}", "approver", json={"by": "mallory", "comment": "lgtm"})
    assert res.status_code == 200 and res.json["by"] == "approver"
    # admin: the fleet-wide freeze
    assert site.post("/api/v1/freeze", "admin", json={}).status_code == 400
    res = site.post("/api/v1/freeze", "admin", json={"reason": "release", "by": "mallory"})
    assert res.status_code == 200 and site.get("/api/v1/status", "viewer").json["freeze"]["by"] == "admin"
    assert site.post("/api/v1/unfreeze", "admin").json == {"frozen": False, "by": "admin"}
    messages = [e["message"] for e in site.get("/api/v1/history?limit=100", "admin").json["events"]]
    assert f"{ident} approved by approver: lgtm" in messages
    assert "checkout-main paused by operator: incident" in messages
    assert "changes frozen by admin: release" in messages and "freeze lifted by admin" in messages
    assert not any("mallory" in m for m in messages)
    # the approval lets the held change run at the next pass
    site.reconcile()
    assert _pending(site) == []
    groups = site.get("/api/v1/applications/payments", "viewer").json["clusters"][0]["locations"][0]["groups"]
    assert [g["server_group"] for g in groups] == ["payments-main-v000"] and groups[0]["enabled"]


def test_approving_a_whole_plan_needs_approve_on_every_application_in_it(site: Site) -> None:
    site.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=("us-east-1",))).commit("v2")
    site.engine.refresh_status()
    plan = site.get("/api/v1/plan", "admin").json["plan"]
    assert {c["application"] for c in plan["changes"]} == {"checkout", "payments"}
    partial = site.get("/api/v1/plan", "approver").json
    assert partial["partial"] is True and partial["plan"]["plan_id"] == plan["plan_id"]
    assert [c["application"] for c in partial["plan"]["changes"]] == ["payments"]
    res = site.post(f"/api/v1/approve/{plan['plan_id']}", "approver")
    assert res.status_code == 403 and "no approve scope for application 'checkout'" in res.json["error"]
    assert site.post(f"/api/v1/reject/{plan['plan_id']}", "admin").json["decision"] == "rejected"
    res = site.post("/api/v1/approve/0123456789ab", "admin")
    assert res.status_code == 409 and "neither the current plan" in res.json["error"]


def test_unknown_names_and_bad_bodies_are_refused_clearly(site: Site) -> None:
    res = site.post("/api/v1/pause/chekout", "admin")
    assert res.status_code == 409 and "did you mean checkout" in res.json["error"]
    assert site.post("/api/v1/resume/checkout", "admin").status_code == 409
    assert site.client().post("/api/v1/pause/checkout", data=b"[1]", headers=site.auth("admin")).status_code == 400
    res = site.post("/api/v1/pause/checkout", "admin", json={"reason": 5})
    assert res.status_code == 400 and "'reason' must be text" in res.json["error"]
    assert site.get("/api/v1/pause/checkout", "admin").status_code == 405
    assert site.get("/api/v1/nothing", "admin").status_code == 404


def test_rollback_runs_in_the_background_and_pauses_the_cluster(site: Site) -> None:
    site.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=("us-east-1",))).commit("v2")
    site.reconcile()
    res = site.post("/api/v1/rollback/checkout-main", "operator", json={"region": "us-east-1"})
    assert res.status_code == 202 and res.json == {"rollback": "checkout-main", "regions": ["us-east-1"],
                                                   "paused": "checkout-main", "by": "operator"}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        groups = site.get("/api/v1/status", "viewer").json["server_groups"]
        serving = sorted(g["server_group"] for g in groups if g["region"] == "us-east-1" and g["enabled"]
                         and g["cluster"] == "checkout-main")
        if serving == ["checkout-main-v000"]:
            break
        time.sleep(0.05)
    assert serving == ["checkout-main-v000"]
    assert "checkout-main" in site.get("/api/v1/status", "viewer").json["paused"]
    res = site.post("/api/v1/rollback/nothing-main", "admin")
    assert res.status_code == 409 and "no cluster named" in res.json["error"]


def test_the_token_file_still_works_as_an_admin_named_token_file(tmp_path: Path) -> None:
    s = make_site(tmp_path, legacy=True)
    try:
        s.reconcile()
        auth = {"Authorization": "Bearer legacy-secret-000"}
        assert Reply.of(s.client().get("/api/v1/whoami", headers=auth)).json["name"] == "token-file"
        assert s.client().post("/api/v1/freeze", headers=auth, json={"reason": "r"}).status_code == 200
        assert Reply.of(s.client().get("/api/v1/status", headers=auth)).json["freeze"]["by"] == "token-file"
    finally:
        s.engine.close()


def test_a_hashed_token_and_whoami(site: Site) -> None:
    me = site.get("/api/v1/whoami", "ci").json
    assert me == {"name": "ci", "anonymous": False, "grants": [{"pattern": "*", "scopes": ["read"]}]}
    ops = site.get("/api/v1/whoami", "operator").json["grants"]
    assert {"pattern": "check*", "scopes": ["operate"]} in ops


def test_a_rotated_token_file_takes_effect_at_the_next_request(site: Site, tmp_path: Path) -> None:
    assert site.get("/api/v1/status", "viewer").status_code == 200
    (tmp_path / "viewer.token").write_text("viewer-rotated-000\n")
    assert site.get("/api/v1/status", "viewer").status_code == 401
    res = site.client().get("/api/v1/status", headers={"Authorization": "Bearer viewer-rotated-000"})
    assert res.status_code == 200


def test_routes_served_by_httpapi_itself_check_tokens_the_same_way(site: Site) -> None:
    """``Api._authorized`` is how a route of httpapi's own (such as an event stream) asks for a scope."""
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request

    from reconciler.core import access

    def ask(headers: dict[str, str], scope: access.Scope = access.Scope.READ) -> int | None:
        request = Request(EnvironBuilder(path="/x", headers=list(headers.items())).get_environ())
        denied = site.api._authorized(request, scope)
        return None if denied is None else denied.status_code

    assert ask({}) == 401
    assert ask({"Authorization": "Bearer nope"}) == 401
    assert ask(site.auth("viewer")) is None
    assert ask(site.auth("viewer"), access.Scope.OPERATE) == 403
    assert ask(site.auth("operator"), access.Scope.OPERATE) is None

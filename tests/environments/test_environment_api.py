"""Environment approvals through the API: POST /api/v1/environments/APP/ENV/approve|reject, scoped per application."""

from __future__ import annotations

from pathlib import Path

from tests.console.conftest import make_site
from tests.environments.test_promotion_flow import pipeline_spec


def test_an_approver_of_the_application_approves_a_version_for_an_environment(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    site.repo.write("apps/values.yaml", 'checkout:\n  version: "1.0"\n')
    site.repo.write("apps/payments.yaml", pipeline_spec(soak="0s").replace("checkout", "payments")
                    .replace("version_from: payments.version", 'version: "1.0"'))
    site.repo.commit("payments with environments")
    site.engine.refresh_status()

    ok = site.post("/api/v1/environments/payments/prod/approve", "approver", json={"version": "1.0",
                                                                                   "comment": "release 12"})
    assert ok.status_code == 200, ok.json
    assert ok.json["id"] == "payments/prod/1.0" and ok.json["by"] == "approver"
    facts = site.engine.store.env_facts("payments")
    assert [(f["environment"], f["version"], f["kind"]) for f in facts] == [("prod", "1.0", "approved")]

    denied = site.post("/api/v1/environments/checkout/prod/reject", "approver", json={"version": "1.0"})
    assert denied.status_code == 403
    assert site.post("/api/v1/environments/payments/prod/maybe", "admin", json={"version": "1"}).status_code == 404
    missing = site.post("/api/v1/environments/payments/prod/approve", "admin", json={})
    assert missing.status_code == 400 and "'version' is required" in missing.json["error"]
    unknown = site.post("/api/v1/environments/payments/prdo/approve", "admin", json={"version": "1.0"})
    assert unknown.status_code == 409 and "no environment named 'prdo'" in unknown.json["error"]

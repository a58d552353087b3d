"""Environment approvals through the API: POST /api/v1/environments/APP/ENV/approve|reject, scoped per application."""

from __future__ import annotations

from pathlib import Path

import pygit2

from tests.console.conftest import TOKENS, Reply, make_site
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


RELEASER = {"releaser": ("releaser-secret-000", {"check*": ["promote"]})}


def test_ci_promotes_with_a_promote_scoped_token_and_a_pass_starts(tmp_path: Path) -> None:
    site = make_site(tmp_path, apps={"values": 'checkout:\n  version: "1.0"\n',
                                     "checkout": pipeline_spec(soak="0s", approval="")},
                     extra_tokens=RELEASER, bare_remote=True)
    bare = pygit2.Repository(str(tmp_path / "desired.git"))
    try:
        res = Reply.of(site.client().post("/api/v1/promote", json={"application": "checkout", "version": "1.1"},
                                          headers={"Authorization": f"Bearer {RELEASER['releaser'][0]}"}))
        assert res.status_code == 200, res.json
        assert res.json["pushed"] is True and res.json["by"] == "releaser" and res.json["previous"] == "1.0"
        assert (res.json["file"], res.json["key"]) == ("apps/values.yaml", "checkout.version")
        head = bare.references["refs/heads/main"].peel(pygit2.Commit)
        assert str(head.id) == res.json["commit"]
        assert head.author.name == "releaser" and head.message == "Promote checkout to 1.1 (by releaser)"
        assert site.triggered == ["promote"], "a pass starts at once"
        assert site.reconcile().commit == res.json["commit"], "the daemon deploys the pushed commit"

        again = Reply.of(site.client().post("/api/v1/promote", json={"application": "checkout", "version": "1.1"},
                                            headers={"Authorization": f"Bearer {RELEASER['releaser'][0]}"}))
        assert again.status_code == 200 and again.json["pushed"] is False
        assert site.triggered == ["promote"], "nothing pushed: no pass"
    finally:
        site.engine.close()


def test_promote_needs_the_promote_scope_for_the_application_and_names_bad_input(tmp_path: Path) -> None:
    site = make_site(tmp_path, apps={"values": 'checkout:\n  version: "1.0"\n',
                                     "checkout": pipeline_spec(soak="0s", approval="")},
                     extra_tokens={**RELEASER, "other": ("other-secret-0000", {"payments": ["promote"]})},
                     bare_remote=True)
    before = pygit2.Repository(str(tmp_path / "desired.git")).references["refs/heads/main"].target

    def post(who: str, body: dict[str, str]) -> Reply:
        secret = {**RELEASER, "other": ("other-secret-0000", {})}.get(who, (TOKENS.get(who, ("",))[0],))[0]
        return Reply.of(site.client().post("/api/v1/promote", json=body,
                                           headers={"Authorization": f"Bearer {secret}"}))

    try:
        assert post("approver", {"application": "checkout", "version": "1.1"}).status_code == 403
        refused = post("other", {"application": "checkout", "version": "1.1"})
        assert refused.status_code == 403 and "no promote scope for application 'checkout'" in refused.json["error"]
        assert post("operator", {"application": "checkout", "version": "1.1"}).status_code == 403, \
            "operate is not promote"
        missing = post("releaser", {"application": "checkout"})
        assert missing.status_code == 400 and "'version' are required" in missing.json["error"]
        bad = post("releaser", {"application": "checkout", "version": "1.1 beta"})
        assert bad.status_code == 409 and "is not a version" in bad.json["error"]
        env = post("releaser", {"application": "checkout", "version": "1.1", "environment": "prdo"})
        assert env.status_code == 409 and "no environment named 'prdo'" in env.json["error"]
        assert post("admin", {"application": "chekout", "version": "1.1"}).status_code == 409
        assert pygit2.Repository(str(tmp_path / "desired.git")).references["refs/heads/main"].target == before
    finally:
        site.engine.close()

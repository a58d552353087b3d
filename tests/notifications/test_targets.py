"""Each target type against a local server speaking its real request shape: paths, headers, bodies."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
from email import message_from_bytes
from email.message import Message

import pytest

from tests.notifications.conftest import Rig
from tests.notifications.endpoints import Answer, Endpoint, github_status, gitlab_status
from tests.render import factory

SHA = factory.HEAD


def test_slack_gets_a_short_text_and_blocks_naming_application_cluster_regions_version_and_commit(rig, endpoint):
    ep = endpoint()
    r: Rig = rig({"targets": {"chat": {"type": "slack", "url": ep.url("/services/T0/B0/secret")}}})
    r.deploy(regions=("us-east-1", "eu-west-1"))
    r.feed()
    r.drain("chat")
    started, done = ep.delivered()
    assert started.path == "/services/T0/B0/secret"
    assert started.headers["content-type"] == "application/json"
    assert started.headers["user-agent"].startswith("reconciler/")
    body = done.json()
    assert body["text"] == ("checkout: deployed: 5e6f7a8b serves: checkout-main in us-east-1, eu-west-1 "
                            "(checkout-2.0)")
    context = body["blocks"][1]["elements"][0]["text"]
    for part in ("Application: checkout", "Clusters: checkout-main", "Regions: us-east-1, eu-west-1",
                 "Version: checkout-2.0", "Commit: 5e6f7a8b9c0d"):
        assert part in context
    assert body["blocks"][0]["text"]["text"].startswith("*checkout: deployed*\n")


def test_a_failed_deploy_names_the_failing_step_and_reason(rig, endpoint):
    ep = endpoint()
    r: Rig = rig({"targets": {"chat": {"type": "slack", "url": ep.url("/s")}}})
    r.deploy(regions=("us-east-1",), fail="us-east-1")
    r.feed()
    r.drain("chat")
    texts = [s.json()["text"] for s in ep.delivered()]
    assert texts[1] == ("checkout: deploy failed: deploy of 5e6f7a8b failed: checkout-main in us-east-1: "
                        "wait_healthy failed: checkout-main-v001 in us-east-1: 0 of 3 instances healthy after 10m "
                        "(rolled back, the previous group keeps serving)")
    assert "Failed step: wait_healthy" in ep.delivered()[1].json()["blocks"][1]["elements"][0]["text"]


def test_github_commit_statuses_go_pending_then_success_with_one_context_per_application(rig, endpoint, tmp_path):
    ep = endpoint(github_status)
    (tmp_path / "gh-token").write_text("ghp_test_token\n")
    github = {"type": "github", "url": ep.url("/api/v3"), "repo": "acme/desired-state",
              "token_file": str(tmp_path / "gh-token")}
    r: Rig = rig({"commit_status": {"github": github}})
    r.deploy("checkout", regions=("us-east-1", "eu-west-1"))
    r.deploy("cart", image="cart-7", fail="us-east-1")
    r.feed()
    r.drain("github")
    seen = ep.delivered()
    assert [s.path for s in seen] == [f"/api/v3/repos/acme/desired-state/statuses/{SHA}"] * 4, \
        "one POST per status, no GET of the repository or commit"
    assert all(s.headers["authorization"] in ("token ghp_test_token", "Bearer ghp_test_token") for s in seen)
    bodies = [s.json() for s in seen]
    assert [(b["context"], b["state"]) for b in bodies] == [
        ("reconciler/checkout", "pending"), ("reconciler/checkout", "success"),
        ("reconciler/cart", "pending"), ("reconciler/cart", "failure")]
    assert bodies[1]["description"] == "checkout-main serve(s) in us-east-1, eu-west-1"
    assert bodies[3]["description"].startswith("deploy of 5e6f7a8b failed: cart-main in us-east-1: wait_healthy")
    assert all(len(b["description"]) <= 140 for b in bodies)


def test_gitlab_commit_statuses_use_the_private_token_and_gitlab_states(rig, endpoint, tmp_path):
    ep = endpoint(gitlab_status)
    (tmp_path / "gl-token").write_text("glpat-test\n")
    r: Rig = rig({"commit_status": {"gitlab": {"type": "gitlab", "url": ep.url(""), "project": "42",
                                               "token_file": str(tmp_path / "gl-token"), "context": "deploy"}}})
    r.deploy()
    r.deploy("cart", image="cart-7", fail="us-east-1")
    r.feed()
    r.drain("gitlab")
    seen = ep.delivered()
    assert [s.path for s in seen] == [f"/api/v4/projects/42/statuses/{SHA}"] * 4
    assert all(s.headers["private-token"] == "glpat-test" for s in seen)
    assert [(s.json()["name"], s.json()["state"]) for s in seen] == [
        ("deploy/checkout", "running"), ("deploy/checkout", "success"), ("deploy/cart", "running"),
        ("deploy/cart", "failed")]


def test_gitlab_refusing_a_repeated_state_counts_as_delivered(rig, endpoint, tmp_path):
    def refuse(_ep: Endpoint, _req) -> Answer:
        return Answer(400, json.dumps({"message": "Cannot transition status via :run from :running"}).encode(),
                      {"Content-Type": "application/json"})

    ep = endpoint(refuse)
    (tmp_path / "gl-token").write_text("glpat-test\n")
    r: Rig = rig({"commit_status": {"gitlab": {"type": "gitlab", "url": ep.url(""), "project": "acme/state",
                                               "token_file": str(tmp_path / "gl-token")}}})
    r.deploy()
    r.feed()
    r.drain("gitlab")
    assert [row["state"] for row in r.box.rows_of("gitlab")] == ["delivered", "delivered"]
    assert ep.seen[0].path == f"/api/v4/projects/acme%2Fstate/statuses/{SHA}"


def test_a_missing_token_file_is_a_retried_failure_shown_in_the_status(rig, endpoint, tmp_path):
    ep = endpoint(github_status)
    r: Rig = rig({"commit_status": {"github": {"type": "github", "url": ep.url("/api/v3"), "repo": "o/r",
                                               "token_file": str(tmp_path / "missing")}}})
    r.deploy()
    r.feed()
    r.workers["github"].step()
    summary = r.box.summary([("github", "github")], r.clock.now())["github"]
    assert summary["failing"] and "cannot read" in summary["last_error"] and summary["pending"] == 2
    assert ep.seen == []


def test_a_generic_webhook_gets_the_event_as_json_with_a_signature(rig, endpoint, tmp_path):
    ep = endpoint(lambda _ep, _req: Answer(204, b""))
    (tmp_path / "hook-secret").write_text("s3cret\n")
    r: Rig = rig({"targets": {"hook": {"type": "webhook", "url": ep.url("/hooks/reconciler"),
                                       "secret_file": str(tmp_path / "hook-secret"),
                                       "headers": {"X-Env": "prod"}}}})
    r.deploy()
    r.feed()
    r.drain("hook")
    started, done = ep.delivered()
    doc = done.json()
    assert doc["kind"] == "deploy_succeeded" and doc["event"] == "deploy_succeeded"
    assert doc["application"] == "checkout" and doc["clusters"] == ["checkout-main"]
    assert doc["regions"] == ["us-east-1"] and doc["images"] == ["checkout-2.0"] and doc["commit"] == SHA
    assert doc["time"].endswith("Z") and doc["id"] == str(doc["event_id"])
    assert done.headers["x-reconciler-event"] == "deploy_succeeded"
    assert done.headers["x-reconciler-delivery"] == str(doc["event_id"])
    assert done.headers["x-env"] == "prod"
    expected = hmac.new(b"s3cret", done.body, hashlib.sha256).hexdigest()
    assert done.headers["x-reconciler-signature-256"] == f"sha256={expected}"
    assert started.json()["kind"] == "deploy_started"


def test_teams_gets_an_adaptive_card(rig, endpoint):
    ep = endpoint(lambda _ep, _req: Answer(202, b""))
    r: Rig = rig({"targets": {"teams": {"type": "teams", "url": ep.url("/workflows/abc/triggers/manual/run")}}})
    r.deploy(fail="us-east-1")
    r.feed()
    r.drain("teams")
    body = ep.delivered()[1].json()
    card = body["attachments"][0]
    assert body["type"] == "message" and card["contentType"] == "application/vnd.microsoft.card.adaptive"
    blocks = card["content"]["body"]
    assert card["content"]["type"] == "AdaptiveCard"
    assert blocks[0]["text"] == "checkout: deploy failed" and blocks[0]["color"] == "Attention"
    facts = {f["title"]: f["value"] for f in blocks[2]["facts"]}
    assert facts["Failed step"] == "wait_healthy" and facts["Version"] == "checkout-2.0"


class _Mailbox:
    """aiosmtpd's handler: keeps every message and the login it came with."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.logins: list[tuple[bytes, bytes]] = []

    async def handle_DATA(self, _server, _session, envelope) -> str:  # aiosmtpd calls it by this name
        self.messages.append(message_from_bytes(envelope.original_content))
        return "250 Message accepted for delivery"

    def authenticate(self, _server, _session, _envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult, LoginPassword

        if isinstance(auth_data, LoginPassword):
            self.logins.append((auth_data.login, auth_data.password))
            if auth_data.password == b"mail-pass":
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False, message="535 5.7.8 Authentication credentials invalid")


@pytest.fixture
def smtp():
    from aiosmtpd.controller import Controller

    box = _Mailbox()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(box, hostname="127.0.0.1", port=port, authenticator=box.authenticate,
                            auth_require_tls=False)
    controller.start()
    box.port = port  # type: ignore[attr-defined]
    yield box
    controller.stop()


def test_email_goes_out_by_smtp_with_a_short_subject(rig, smtp, tmp_path):
    (tmp_path / "smtp-pass").write_text("mail-pass\n")
    r: Rig = rig({"targets": {"mail": {"type": "email", "from": "reconciler@example.com", "to": ["ops@example.com"],
                                       "smtp": {"host": "127.0.0.1", "port": smtp.port, "security": "none",
                                                "username": "bot", "password_file": str(tmp_path / "smtp-pass")}}}})
    r.deploy(fail="us-east-1")
    r.feed()
    r.drain("mail")
    assert [m["Subject"] for m in smtp.messages] == ["[reconciler] checkout: deploy started",
                                                     "[reconciler] checkout: deploy failed"]
    body = smtp.messages[1].get_payload(decode=True).decode()
    assert smtp.messages[1]["To"] == "ops@example.com"
    assert "wait_healthy failed" in body and "Version: checkout-2.0" in body and "Commit: 5e6f7a8b9c0d" in body
    assert smtp.logins == [(b"bot", b"mail-pass")] * 2


def test_an_smtp_login_refused_is_retried_not_dropped(rig, smtp, tmp_path):
    (tmp_path / "smtp-pass").write_text("wrong\n")
    r: Rig = rig({"targets": {"mail": {"type": "email", "from": "reconciler@example.com", "to": ["ops@example.com"],
                                       "smtp": {"host": "127.0.0.1", "port": smtp.port, "security": "none",
                                                "username": "bot", "password_file": str(tmp_path / "smtp-pass")}}}})
    r.deploy()
    r.feed()
    r.workers["mail"].step()
    (row, _) = r.box.rows_of("mail")
    assert row["state"] == "pending" and row["attempts"] == 1 and "535" in row["last_error"]
    assert smtp.messages == []


def test_apprise_reaches_its_services_and_a_failure_keeps_the_event_queued(rig, endpoint):
    calls = {"n": 0}

    def flaky(_ep: Endpoint, _req) -> Answer:
        calls["n"] += 1
        return Answer(500, b"no") if calls["n"] == 1 else Answer(200, b"{}")

    ep = endpoint(flaky)
    r: Rig = rig({"targets": {"many": {"type": "apprise", "urls": [f"json://127.0.0.1:{ep.port}/notify"]}},
                  "delivery": {"retry": {"first": "1s"}}})
    r.deploy()
    r.feed()
    r.drain("many")
    assert len(ep.seen) == 3 and len(ep.delivered()) == 2
    doc = ep.delivered()[1].json()
    assert doc["title"] == "checkout: deployed" and "checkout-main in us-east-1 (checkout-2.0)" in doc["message"]
    assert doc["type"] == "success"
    summary = r.box.summary([("many", "apprise")], r.clock.now())["many"]
    assert summary["failed_attempts"] == 1 and summary["last_error"].startswith("apprise:")

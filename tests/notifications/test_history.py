"""The events notifications read: deploys recorded by the executor, transitions recorded once, nothing secret."""

from __future__ import annotations

import json
import shutil
from typing import Any

import sqlalchemy as sa

from reconciler.notifications import history, kinds, messages
from reconciler.state import store as store_mod
from tests.conftest import Env, app_spec, write_config

ONE = ("us-east-1",)


def _events(env: Env, *wanted: str) -> list[dict[str, Any]]:
    s = store_mod.Store(f"sqlite:///{env.state_dir / 'state.db'}")
    try:
        rows = list(reversed(s.history(limit=500)))
    finally:
        s.close()
    return [r for r in rows if not wanted or r["kind"] in wanted]


def test_a_deploy_records_its_start_and_end_per_application_with_clusters_regions_and_images(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec(regions=("us-east-1", "eu-west-1"))).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    started, done = _events(env, kinds.DEPLOY_STARTED, kinds.DEPLOY_SUCCEEDED)
    assert started["kind"] == "deploy_started" and done["kind"] == "deploy_succeeded"
    assert started["application"] == done["application"] == "checkout" and started["commit"] == env.repo.head()
    assert [(c["cluster"], c["region"], c["action"], c["image"]) for c in started["detail"]["changes"]] == [
        ("checkout-main", "us-east-1", "create", "checkout-1.0"), ("checkout-main", "eu-west-1", "create",
                                                                     "checkout-1.0")]
    assert done["detail"]["deploy"] == started["detail"]["deploy"]
    assert {c["state"] for c in done["detail"]["changes"]} == {"succeeded"}
    assert started["id"] < done["id"]


def test_a_failed_deploy_records_the_step_and_reason_and_the_rollback(env: Env) -> None:
    write_config(env.config, env.repo.path, env.state_dir,
                 execution={"max_attempts": 1, "poll_health": "20ms", "step_backoff": "0s"})
    env.repo.write("apps/checkout.yaml", app_spec(regions=ONE)).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2-bad", regions=ONE, timeout="200ms")).commit("bad")
    assert env.cli("apply", "--yes").code == 1
    rolled, failed = _events(env, "execution_rolled_back", kinds.DEPLOY_FAILED)
    assert rolled["detail"]["step"] == "wait_healthy" and rolled["detail"]["image"] == "checkout-2-bad"
    assert "instances healthy" in rolled["detail"]["error"]
    change = failed["detail"]["changes"][0]
    assert (change["state"], change["step"]) == ("rolled_back", "wait_healthy")
    n = messages.from_event(failed)
    assert n is not None and n.kind == "deploy_failed" and n.step == "wait_healthy"
    assert n.text.startswith(f"deploy of {env.repo.head()[:8]} failed: checkout-main in us-east-1: wait_healthy")
    assert messages.from_event(rolled).kind == "rolled_back"  # type: ignore[union-attr]


def test_a_revert_to_the_retained_version_is_told_as_a_rollback(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec(regions=ONE)).commit("v1")
    env.cli("apply", "--yes")
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=ONE)).commit("v2")
    env.cli("apply", "--yes")
    env.repo.write("apps/checkout.yaml", app_spec(regions=ONE)).commit("revert")
    assert env.cli("apply", "--yes").code == 0
    last = messages.from_event(_events(env, kinds.DEPLOY_SUCCEEDED)[-1])
    assert last is not None and last.kind == "rolled_back" and last.images == ("checkout-1.0",)


def test_no_message_carries_user_data_tags_or_capacity(env: Env) -> None:
    secret = 'user_data: "export DB_PASSWORD=hunter2-user-data"\ntags: {api_token: tag-value-s3cr3t}\n'
    env.repo.write("apps/checkout.yaml", app_spec(regions=ONE, extra=secret)).commit("v1")
    env.cli("apply", "--yes")
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2-bad", regions=ONE, timeout="200ms",
                                                  extra=secret)).commit("bad")
    env.cli("apply", "--yes")
    found = [n for n in map(messages.from_event, _events(env)) if n is not None]
    assert {n.kind for n in found} >= {"deploy_started", "deploy_succeeded", "deploy_failed", "rolled_back"}
    for n in found:
        shapes = json.dumps([n.doc(), messages.slack(n), messages.teams(n), messages.email(n),
                             messages.commit_status(n)])
        assert "hunter2" not in shapes and "s3cr3t" not in shapes and "api_token" not in shapes
        assert "capacity" not in shapes and "desired" not in shapes


def test_waiting_for_approval_is_recorded_once_however_many_passes_see_it(env: Env) -> None:
    write_config(env.config, env.repo.path, env.state_dir,
                 providers={"local": {"accounts": {"default": {}, "prod": {}}}})
    env.repo.write("apps/checkout.yaml", app_spec(regions=ONE, account="prod", criticality="critical")).commit("v1")
    for _ in range(3):
        assert env.cli("run", "--once").code == 0
    (waiting,) = _events(env, kinds.WAITING_FOR_APPROVAL)
    change_id = waiting["detail"]["change_id"]
    assert waiting["detail"]["command"] == f"reconciler approve {change_id}"
    assert (waiting["application"], waiting["cluster"], waiting["region"]) == ("checkout", "checkout-main",
                                                                               "us-east-1")
    n = messages.from_event(waiting)
    assert n is not None and f"run `reconciler approve {change_id}`" in n.text
    assert messages.commit_status(n) == ("pending", f"waiting for approval: reconciler approve {change_id}")
    assert env.cli("approve", change_id).code == 0
    env.cli("run", "--once")
    assert len(_events(env, kinds.DEPLOY_SUCCEEDED)) == 1


def test_a_denial_a_broken_spec_and_a_source_error_are_each_recorded_when_they_begin(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec(regions=ONE)).commit("v1")
    env.cli("run", "--once")
    env.cli("freeze", "--reason", "black friday")
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=ONE))
    env.repo.write("apps/cart.yaml", app_spec("cart", regions=ONE).replace("instance_type", "instance_typo"))
    env.repo.commit("v2 and a broken cart")
    env.cli("run", "--once")
    env.cli("run", "--once")
    (denied,) = _events(env, kinds.GUARDRAIL_DENIED)
    assert denied["application"] == "checkout" and "black friday" in denied["detail"]["reason"]
    (stalled,) = _events(env, kinds.STALLED)
    assert stalled["detail"]["reason"] == "SpecInvalid" and stalled["detail"]["file"] == "apps/cart.yaml"
    assert stalled["detail"]["problems"][0].startswith("apps/cart.yaml:") and "instance_typo" in \
        stalled["detail"]["problems"][0]
    moved = env.repo.path.with_name("elsewhere")
    shutil.move(env.repo.path, moved)
    env.cli("run", "--once")
    env.cli("run", "--once")
    shutil.move(moved, env.repo.path)
    env.cli("run", "--once")
    errors_, recovered = _events(env, kinds.SOURCE_ERROR), _events(env, kinds.SOURCE_RECOVERED)
    assert len(errors_) == 1 and "does not exist" in errors_[0]["message"] and len(recovered) == 1


def test_a_commit_to_another_file_tells_no_held_change_again(env: Env) -> None:
    """Every change id moves with every commit; a held change that stays what it is is not news."""
    write_config(env.config, env.repo.path, env.state_dir,
                 providers={"local": {"accounts": {"default": {}, "prod": {}}}})
    checkout = app_spec(regions=ONE, account="prod", criticality="critical")
    env.repo.write("apps/checkout.yaml", checkout)
    env.repo.write("apps/cart.yaml", app_spec("cart", regions=ONE)).commit("v1")
    assert env.cli("run", "--once").code == 0
    (waiting,) = _events(env, kinds.WAITING_FOR_APPROVAL)
    old_id = waiting["detail"]["change_id"]
    env.repo.write("apps/cart.yaml", app_spec("cart", regions=ONE) + "# a comment\n").commit("a comment in cart")
    env.cli("run", "--once")
    env.cli("run", "--once")
    assert len(_events(env, kinds.WAITING_FOR_APPROVAL)) == 1  # checkout's change has a new id, is the same
    status = json.loads(env.cli("status", "--format", "json").out)
    (held,) = status["held"]
    assert held["change_id"] != old_id
    assert _snapshot(env) == {**_snapshot(env), "held_by": "content_id",
                              "held": [[held["content_id"], kinds.WAITING_FOR_APPROVAL]]}
    refused = env.cli("approve", old_id)  # the announced id is stale: the refusal names the current one
    assert refused.code != 0 and (f"a later commit gave the same change (create checkout-main in us-east-1) the id "
                                  f"{held['change_id']}: run `reconciler approve {held['change_id']}`") in refused.err

    env.cli("freeze", "--reason", "black friday")
    env.repo.write("apps/cart.yaml", app_spec("cart", image="cart-2.0", regions=ONE)).commit("cart 2.0")
    env.cli("run", "--once")
    # the freeze turns checkout's wait for approval into a denial: a new kind of hold, told
    assert sorted(e["application"] for e in _events(env, kinds.GUARDRAIL_DENIED)) == ["cart", "checkout"]
    env.repo.write("apps/cart.yaml", app_spec("cart", image="cart-2.0", regions=ONE) + "# again\n").commit("again")
    env.cli("run", "--once")
    env.cli("run", "--once")
    assert len(_events(env, kinds.GUARDRAIL_DENIED)) == 2
    env.repo.write("apps/checkout.yaml", checkout.replace("checkout-1.0", "checkout-2.0")).commit("checkout 2.0")
    env.cli("run", "--once")  # a new image is a new change: told
    assert [e["application"] for e in _events(env, kinds.GUARDRAIL_DENIED)][2:] == ["checkout"]


def _snapshot(env: Env) -> dict[str, Any]:
    s = store_mod.Store(f"sqlite:///{env.state_dir / 'state.db'}")
    try:
        return dict(s.get(history.KEY_SNAPSHOT))
    finally:
        s.close()


def test_a_snapshot_saved_before_content_ids_is_compared_by_change_id() -> None:
    """After an upgrade the first pass sees a snapshot of change ids: nothing held is told again for it."""
    held = [{"key": "local/default/us-east-1/checkout-main", "change_id": "id-1", "content_id": "cid-1",
             "why": "denied: freeze: frozen", "kind": "denied"}]
    status = {"commit": "c" * 40, "applications": {"checkout": {"clusters": ["checkout-main"]}},
              "changes": [{"change_id": "id-1", "action": "replace"}], "held": held}
    old_snapshot: dict[str, Any] = {"held": [["id-1", kinds.GUARDRAIL_DENIED]], "stalled": [], "problems": {},
                                    "source_error": None}
    assert history.transitions(old_snapshot, status) == []
    assert history.snapshot(status)["held"] == [["cid-1", kinds.GUARDRAIL_DENIED]]
    moved = {**status, "held": [{**held[0], "change_id": "id-2"}]}  # another commit, the same change
    assert history.transitions(history.snapshot(status), moved) == []
    assert [r.kind for r in history.transitions(old_snapshot, moved)] == [kinds.GUARDRAIL_DENIED]


def test_transitions_compare_two_statuses() -> None:
    held = [{"key": f"local/default/{r}/checkout-main", "change_id": f"id-{r}", "why": "denied: freeze: frozen",
             "kind": "denied"} for r in ("us-east-1", "eu-west-1")]
    status = {"commit": "c" * 40, "applications": {"checkout": {"clusters": ["checkout-main"], "file": "apps/c.yaml"}},
              "changes": [{"change_id": f"id-{r}", "action": "replace"} for r in ("us-east-1", "eu-west-1")],
              "held": held,
              "skipped": [{"key": "local/default/eu-west-1/checkout-main", "application": "checkout",
                           "cluster": "checkout-main", "reason": "stalled: spec 1234 kept failing; commit a fix",
                           "kind": "stalled"}],
              "source_error": "cannot fetch https://user:tok3n@git.example.com/x.git: timeout"}
    first = history.transitions(None, status)
    assert [r.kind for r in first] == ["guardrail_denied", "stalled", "source_error"]
    assert "tok3n" not in first[2].message and "https://git.example.com/x.git" in first[2].message
    n = messages.from_event({"id": 1, "ts": 0.0, "kind": first[0].kind, "application": "checkout",
                             "commit": "c" * 40, "detail": dict(first[0].detail)})
    assert n is not None and n.regions == ("us-east-1", "eu-west-1")
    assert n.text == "replace checkout-main in us-east-1, eu-west-1 at cccccccc: denied: freeze: frozen"
    seen = history.snapshot(status)
    assert history.transitions(seen, status) == []
    assert [r.kind for r in history.transitions(seen, {**status, "source_error": None})] == ["source_recovered"]
    assert history.transitions(None, {**status, "source_error": None, "held": [], "skipped": []}) == []


def test_a_look_from_the_cli_records_no_transition(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec(regions=ONE)).commit("v1")
    env.cli("run", "--once")
    moved = env.repo.path.with_name("elsewhere")
    shutil.move(env.repo.path, moved)
    assert "does not exist" in env.cli("status").out
    shutil.move(moved, env.repo.path)
    env.cli("run", "--once")
    assert _events(env, kinds.SOURCE_ERROR, kinds.SOURCE_RECOVERED) == []


def test_a_store_made_before_the_detail_column_gets_it_and_keeps_its_events(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as c:
        c.execute(sa.text(
            'CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, ts FLOAT NOT NULL, kind VARCHAR(40) NOT NULL, '
            'application VARCHAR(100) NOT NULL, cluster VARCHAR(200) NOT NULL, region VARCHAR(100) NOT NULL, '
            'execution_id VARCHAR(40) NOT NULL, "commit" VARCHAR(64) NOT NULL, message TEXT NOT NULL)'))
        c.execute(sa.text(
            'INSERT INTO events (ts, kind, application, cluster, region, execution_id, "commit", message) '
            "VALUES (1, 'commit', '', '', '', '', 'abc', 'reconciling abc')"))
    engine.dispose()
    s = store_mod.Store(url)
    try:
        new_id = s.record("deploy_started", "m", 2.0, application="a", detail={"changes": []})
        old, new = s.events_after(0)
        assert (old["kind"], old["detail"]) == ("commit", {})
        assert new["id"] == new_id == 2 and new["detail"] == {"changes": []}
    finally:
        s.close()

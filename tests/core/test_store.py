"""The store behaves the same on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import pytest

from reconciler.core import errors, model
from reconciler.state.store import Store


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return str(request.getfixturevalue("postgres_url"))


def test_a_lease_is_exclusive_until_it_expires_then_taken_over(url: str) -> None:
    a, b = Store(url, owner="a"), Store(url, owner="b")
    try:
        assert a.acquire_lease("k", now=100, ttl=10)
        assert not b.acquire_lease("k", now=105, ttl=10), "held by a"
        assert a.renew_lease("k", now=108, ttl=10)
        assert not b.acquire_lease("k", now=115, ttl=10), "renewed until 118"
        assert b.acquire_lease("k", now=119, ttl=10), "stale lease taken over"
        assert not a.renew_lease("k", now=120, ttl=10), "a lost it"
        b.release_lease("k")
        assert a.acquire_lease("k", now=121, ttl=10)
    finally:
        a.close()
        b.close()


def test_steps_are_recorded_before_and_after_they_run(url: str) -> None:
    s = Store(url)
    try:
        ex = s.start_execution(
            {"plan_id": "p", "change_id": "c", "commit": "abc", "key": "local/default/r1/app",
             "application": "app", "cluster": "app", "provider": "local", "account": "default",
             "region": "r1", "action": "create", "spec_hash": "h", "change": "first deploy"},
            [{"kind": "create", "server_group": "app-v000", "description": "create"},
             {"kind": "enable", "server_group": "app-v000", "description": "enable"}],
            now=1.0,
        )
        s.step_started(ex, 0, 2.0)
        assert [st["state"] for st in s.steps_of(ex)] == ["running", "pending"]
        s.step_ended(ex, 0, 3.0, state=model.StepState.DONE)
        extra = s.add_steps(ex, [{"kind": "destroy", "server_group": "app-v000", "description": "undo"}])
        assert extra == 2
        s.finish_execution(ex, 4.0, state=model.ExecState.ROLLED_BACK, error="boom")
        assert [st["state"] for st in s.steps_of(ex)] == ["done", "pending", "pending"]
        assert s.executions()[0]["state"] == "rolled_back" and not s.active_executions()
    finally:
        s.close()


def test_failures_approvals_pauses_and_values_round_trip(url: str) -> None:
    s = Store(url)
    try:
        assert s.add_failure("k", "h1", "bad", 1.0) == 1
        assert s.add_failure("k", "h1", "worse", 2.0) == 2
        assert s.failure_count("k", "h1") == 2
        s.clear_failures("k")
        assert s.failure_count("k", "h1") == 0
        s.add_approval(plan_id="p", change_id="", decision="approved", by="ann", comment="ok", now=1.0, ttl=60)
        assert s.approvals()[0]["by"] == "ann"
        s.pause("checkout", by="bob", reason="incident", now=1.0)
        assert "checkout" in s.pauses() and s.resume("checkout") and not s.resume("checkout")
        s.put("x", {"a": [1, 2]}, 1.0)
        s.put("x", {"a": [3]}, 2.0)
        assert s.get("x") == {"a": [3]} and s.get("missing", 7) == 7
        s.record("commit", "hello", 1.0, application="app")
        assert s.history(application="app")[0]["message"] == "hello"
        s.record_many([("guardrail_denied", f"held {i}", {"application": "app", "cluster": f"c{i}",
                                                          "detail": {"n": i}}) for i in range(3)], 2.0)
        s.record_many([], 3.0)
        newest = s.history(application="app", limit=4)
        assert [e["message"] for e in newest] == ["held 2", "held 1", "held 0", "hello"]  # ids grow in order
        assert newest[0]["cluster"] == "c2" and newest[0]["ts"] == 2.0 and newest[0]["detail"] == {"n": 2}
    finally:
        s.close()


def test_an_unreachable_store_is_a_clear_error() -> None:
    with pytest.raises(errors.StoreError, match="state store postgresql"):
        Store("postgresql://nobody@127.0.0.1:9/none")

"""Claims on a real PostgreSQL: generations only grow, a stale holder's writes are refused, the
schema is made once by replicas starting together."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from reconciler.core import errors
from reconciler.state import claims as claims_mod
from reconciler.state import store as store_mod

KEY = "local/default/us-east-1/checkout-main"


def test_a_lapsed_claim_moves_with_a_higher_generation_and_the_old_holder_is_fenced(postgres_url: str) -> None:
    a, b = store_mod.Store(postgres_url, owner="a"), store_mod.Store(postgres_url, owner="b")
    ca, cb = claims_mod.Claims(a.engine, "a"), claims_mod.Claims(b.engine, "b")
    try:
        assert ca.claim([KEY], ttl=0.3) == {KEY: 1}
        assert cb.claim([KEY], ttl=0.3) == {}, "held and unexpired: not taken"
        fence = claims_mod.Fence(KEY, "a", 1)
        with a.fenced(fence):
            a.put("x", 1, 0.0)  # the holder writes
        with a.engine.begin() as c:  # the claim lapses (as after a pause past ha.takeover)
            c.execute(claims_mod.claims.update().values(expires_at=0.0))
        taken: set[str] = set()
        assert cb.claim([KEY], ttl=30, taken=taken) == {KEY: 2} and taken == {KEY}
        with a.fenced(fence), pytest.raises(errors.Fenced, match="held by b at generation 2"):
            a.put("x", 2, 0.0)
        assert a.get("x") == 1, "the stale holder's write was refused whole"
        cb.release({KEY: 2})
        assert ca.claim([KEY], ttl=30) == {KEY: 3}, "a released claim's next generation is higher still"
    finally:
        a.close()
        b.close()


def test_three_stores_opening_an_empty_database_at_once_make_one_schema(postgres_url: str) -> None:
    made: list[store_mod.Store] = []
    failures: list[BaseException] = []

    def open_one() -> None:
        try:
            made.append(store_mod.Store(postgres_url))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert failures == []
        with made[0].engine.connect() as c:
            versions = c.execute(sa.text("SELECT version FROM schema_version ORDER BY version")).scalars().all()
        assert versions == [1, 2]
        assert {s.schema_version for s in made} == {2}
    finally:
        for s in made:
            s.close()

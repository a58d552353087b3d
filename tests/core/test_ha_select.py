"""The claim step of a replica (``runtime.ha.Coordinator.select``) on a real PostgreSQL: what it runs
keeps the planner's wave order even when another replica holds part of a cluster."""

from __future__ import annotations

import dataclasses

from reconciler.config import settings as config_mod
from reconciler.core import assignment
from reconciler.runtime import ha
from reconciler.state import store as store_mod
from tests.core.test_planner_safety import W, by_region, desired, group, plan, spec


def test_a_later_wave_is_not_run_while_another_replica_holds_its_earlier_wave(postgres_url: str) -> None:
    old, new = spec(regions=("r1", "r2", "r3"), waves=W), spec(image="img-2", regions=("r1", "r2", "r3"), waves=W)
    want = desired(new)
    changes = by_region(plan(want, *(group(old, r) for r in ("r1", "r2", "r3"))))
    every = [changes["r1"], changes["r2"], changes["r3"]]
    settings = config_mod.HaSettings(enabled=True, heartbeat_s=1.0, takeover_s=30.0)
    a_store, b_store = store_mod.Store(postgres_url, owner="a"), store_mod.Store(postgres_url, owner="b")
    a, b = ha.Coordinator(a_store, settings, share=True), ha.Coordinator(b_store, settings, share=False)
    try:
        a.beat()
        assert b.claim_now(changes["r1"].key) is not None, "another replica holds the first wave"
        assert a.select(every, want, set(), capacity=8)[0] == [], "no later wave without its earlier one"
        assert set(a.held()) == {changes["r2"].key, changes["r3"].key}, "claimed, run once r1 is free"
        b.release(b.fence(changes["r1"].key))  # type: ignore[arg-type]
        assert a.select(every, want, set(), capacity=8)[0] == [], "taken over this pass: runs from the next"
        assert a.select(every, want, set(), capacity=8)[0] == every, "then the whole cluster, wave by wave"
    finally:
        a.close()
        b.close()
        a_store.close()
        b_store.close()


def test_the_share_is_split_over_the_replicas_in_the_group_now_not_at_the_last_heartbeat(postgres_url: str) -> None:
    specs = [spec(f"app{i}") for i in range(8)]
    want = desired(*(dataclasses.replace(s, launch=dataclasses.replace(s.launch, image="img-2")) for s in specs))
    changes = list(plan(want, *(group(s, "r1") for s in specs)).plan.changes)
    settings = config_mod.HaSettings(enabled=True, heartbeat_s=60.0, takeover_s=300.0)  # no beat in the test
    a_store, b_store = store_mod.Store(postgres_url, owner="a"), store_mod.Store(postgres_url, owner="b")
    a, b = ha.Coordinator(a_store, settings, share=True), ha.Coordinator(b_store, settings, share=True)
    try:
        a.beat()  # alone in the group at its heartbeat
        b.beat()  # joins after it
        table = assignment.assign({assignment.unit_of(c.key) for c in changes}, ["a", "b"])
        mine = [c for c in changes if table[assignment.unit_of(c.key)] == "a"]
        assert 0 < len(mine) < len(changes)
        assert a.select(changes, want, set(), capacity=8)[0] == mine, "only its share: b runs the rest"
        assert [c.key for c in b.select(changes, want, set(), capacity=8)[0]] == \
            [c.key for c in changes if c not in mine]
        b.claims.leave()  # b stops cleanly between two heartbeats of a
        a.select(changes, want, set(), capacity=8)  # takes b's clusters over; they run from the next pass
        assert a.select(changes, want, set(), capacity=8)[0] == changes, "the whole fleet, no wait for a heartbeat"
    finally:
        a.close()
        b.close()
        a_store.close()
        b_store.close()

"""One execution per cluster and region: leases are held, renewed during waits, and taken over when stale."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

from reconciler.config import settings as config_mod
from reconciler.core import clock as clock_mod
from reconciler.runtime import engine as engine_mod
from reconciler.state.store import Store
from tests.conftest import Env, app_spec, write_config


def test_a_held_lease_keeps_a_second_process_off_the_cluster(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec(regions=("us-east-1",))).commit("v1")
    cfg = config_mod.load_config(env.config)
    other = Store(cfg.state_url, owner="other-host:1:abc")
    assert other.acquire_lease("local/default/us-east-1/checkout-main", now=1e12, ttl=60)
    res = env.cli("apply", "--yes")
    assert res.code == 1 and "another execution holds the lease" in res.out
    assert env.groups() == []
    other.release_lease("local/default/us-east-1/checkout-main")
    other.close()
    assert env.cli("apply", "--yes").code == 0


def test_a_stale_execution_is_abandoned_and_the_cluster_continues(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec(regions=("us-east-1",))).commit("v1")
    cfg = config_mod.load_config(env.config)
    hung = Store(cfg.state_url, owner="other-host:1:abc")
    key = "local/default/us-east-1/checkout-main"
    hung.start_execution({"plan_id": "p", "change_id": "c", "commit": "x", "key": key, "application": "checkout",
                          "cluster": "checkout-main", "provider": "local", "account": "default",
                          "region": "us-east-1", "action": "create", "spec_hash": "h", "change": ""}, [], now=0)
    assert hung.acquire_lease(key, now=0, ttl=1)  # long expired
    hung.close()
    assert env.cli("apply", "--yes").code == 0
    states = {e["owner"]: e["state"] for e in env.status()["executions"]}
    assert states["other-host:1:abc"] == "abandoned"


def test_the_lease_is_renewed_during_a_long_health_wait(env: Env) -> None:
    write_config(env.config, env.repo.path, env.state_dir, execution={"lease_ttl": "10s", "poll_health": "1s"},
                 providers={"local": {"accounts": {"default": {"boot_seconds": 60}}}})
    env.repo.write("apps/checkout.yaml", app_spec(regions=("us-east-1",), timeout="5m")).commit("v1")
    clock = clock_mod.FakeClock()
    start = clock.now()
    eng = engine_mod.Engine(config_mod.load_config(env.config), clock=clock)
    seen: list[float] = []
    original = eng.store.renew_lease

    def renew(key: str, now: float, ttl: float) -> bool:
        seen.append(now)
        return original(key, now, ttl)

    eng.store.renew_lease = renew  # type: ignore[method-assign]
    try:
        result = eng.reconcile()
    finally:
        eng.close()
    assert [r.state for r in result.results] == ["succeeded"]
    assert max(b - a for a, b in itertools.pairwise([start, *seen])) <= 10, "renewed well within the TTL"
    assert seen[-1] - start >= 60, "through the whole minute of booting"
    assert len(seen) <= 25, "not on every health poll: at most every quarter of the TTL"


def test_a_lease_taken_from_a_dead_process_lasts_one_ttl_and_is_taken_again_at_once(env: Env) -> None:
    """Two dead holders in a row (this host's processes, gone): each takeover is immediate and fair."""
    cfg = config_mod.load_config(env.config)
    key, host = "local/default/us-east-1/checkout-main", os.uname().nodename
    gone = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                              check=True)
        gone.append(f"{host}:{proc.stdout.strip()}:dead")
    first = Store(cfg.state_url, owner=gone[0])
    assert first.acquire_lease(key, now=1000.0, ttl=60)
    first.close()
    second = Store(cfg.state_url, owner=gone[1])
    assert second.take_over_lease(key, gone[0], now=1001.0, ttl=60)
    assert not second.take_over_lease(key, gone[0], now=1001.0, ttl=60), "a compare and swap: one winner"
    assert second.lease_holder(key, now=1060.9) == gone[1] and second.lease_holder(key, now=1061.0) is None
    second.close()

    env.repo.write("apps/checkout.yaml", app_spec(regions=("us-east-1",))).commit("v1")
    eng = engine_mod.Engine(cfg, clock=clock_mod.FakeClock(1002.0))
    try:
        result = eng.reconcile()
    finally:
        eng.close()
    assert [r.state for r in result.results] == ["succeeded"], "taken from the second dead holder at once"

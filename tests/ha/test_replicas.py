"""Three real daemons on one PostgreSQL database share the work, take over fast, and never act twice."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from tests.conftest import DesiredRepo, PostgresServer, run_cli
from tests.ha.conftest import Group, many_apps, metric


def test_three_replicas_started_at_once_on_an_empty_database_share_60_clusters(group: Group) -> None:
    many_apps(group.repo, 60)
    group.repo.commit("60 applications")
    for _ in range(3):
        group.add(boot_seconds=0.5)
    group.start_all()  # one schema, made by whichever replica got the lock first
    took = group.wait(lambda: sum(1 for names in group.serving().values() if names) == 60, "60 clusters serving")

    assert [tuple(r) for r in group.query("SELECT version, name FROM schema_version ORDER BY version")] == [
        (1, "baseline"), (2, "replicas and claims")]
    groups = group.groups()
    assert len(groups) == 60, "one server group per cluster: nothing created twice"
    per_replica = group.executions_by_pid()
    assert sorted(per_replica) == sorted(d.proc.pid for d in group.replicas if d.proc), per_replica
    assert sum(per_replica.values()) == 60 and max(per_replica.values()) <= 30, per_replica
    dupes = group.query("SELECT key FROM executions WHERE state = 'succeeded' GROUP BY key HAVING count(*) > 1")
    assert dupes == []

    first = group.replicas[0]
    group.wait(lambda: metric(first, "reconciler_ha_live_replicas") == 3, "three live replicas in /metrics")
    assert {s for s in (metric(first, "reconciler_ha_replica_heartbeat_age_seconds", replica=r.id)
                        for r in group.query("SELECT id FROM replicas"))} and all(
        metric(first, "reconciler_ha_replica_heartbeat_age_seconds", replica=r.id) < 2
        for r in group.query("SELECT id FROM replicas"))
    res = run_cli("status", "--config", str(first.config), "--format", "json")
    assert res.code == 0, res.err
    ha = json.loads(res.out)["ha"]
    daemons = [r for r in ha["replicas"] if r["role"] == "daemon"]
    assert len(daemons) == 3 and all(r["live"] and r["ready"] for r in daemons), daemons
    text = run_cli("status", "--config", str(first.config)).out
    assert "replicas (3 live, heartbeat 0.2s, takeover 2.0s):" in text
    for d in group.replicas:
        assert d.stop() == 0
        assert not [x for x in d.log_lines() if x.get("level") in ("ERROR", "CRITICAL")], d.log
    assert group.query("SELECT id FROM replicas") == [], "a clean stop leaves the group"
    print(f"60 clusters converged in {took:.1f}s on 3 replicas: {sorted(per_replica.values())}")


def test_kill_9_of_a_replica_mid_rollout_moves_its_clusters_within_the_takeover_time(group: Group) -> None:
    many_apps(group.repo, 12)
    group.repo.commit("v1")
    for _ in range(3):
        group.add(boot_seconds=2)
    group.start_all()
    group.wait(lambda: sum(1 for n in group.serving().values() if n) == 12, "v1 serving")
    many_apps(group.repo, 12, image="img-2.0")
    group.repo.commit("v2")
    victim = group.replicas[1]
    assert victim.proc is not None
    pid = victim.proc.pid
    group.wait(lambda: bool(group.query("SELECT id FROM executions WHERE state = 'running' AND owner LIKE :o",
                                        o=f"%:{pid}:%")), "the victim running a v2 rollout")
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.communicate()
    killed = time.monotonic()
    lowest = 12

    def converged() -> bool:
        nonlocal lowest
        serving = group.serving()
        lowest = min(lowest, sum(1 for names in serving.values() if names))
        return all(names and all(n.endswith("-v001") for n in names) for names in serving.values())

    took = group.wait(converged, "v2 serving everywhere after the kill", timeout=60)
    assert lowest == 12, "every cluster kept serving capacity throughout"
    assert took < 2 + 2 + 2 + 1.5, f"converged {took:.1f}s after the kill (takeover 2s, boot 2s, poll 1s)"
    groups = group.groups()
    assert len(groups) == 24, "v000 and v001 per cluster: the survivors continued the victim's groups"
    dupes = group.query("SELECT key FROM executions WHERE state = 'succeeded' AND commit = "
                        "(SELECT commit FROM executions ORDER BY created_at DESC LIMIT 1) "
                        "GROUP BY key HAVING count(*) > 1")
    assert dupes == []
    print(f"converged {time.monotonic() - killed:.1f}s after kill -9")
    for d in (group.replicas[0], group.replicas[2]):
        assert d.stop() == 0


def test_a_replica_paused_past_its_claims_wakes_up_fenced_and_calls_no_provider(group: Group) -> None:
    many_apps(group.repo, 1)
    group.repo.commit("one cluster")
    a, b = group.add(boot_seconds=5), group.add(boot_seconds=5)
    group.start_all()

    def holder() -> int:
        rows = group.query("SELECT owner FROM executions WHERE state = 'running'")
        return int(rows[0].owner.split(":")[1]) if rows else 0

    group.wait(lambda: holder() != 0, "a replica running the rollout")
    stale, other = (a, b) if a.proc is not None and holder() == a.proc.pid else (b, a)
    assert stale.proc is not None
    # the execution is recorded running before its first step calls the provider: wait for that call, so
    # that the baseline is not read in between (the next call, the enable, waits for the 5 s boot)
    stale.wait_for(lambda: metric(stale, "reconciler_provider_calls_total", call="create") >= 1,
                   "the rollout's new group created")
    mutations_before = sum(metric(stale, "reconciler_provider_calls_total", call=c)
                           for c in ("create", "enable", "disable", "resize", "destroy"))
    stale.proc.send_signal(signal.SIGSTOP)
    try:
        group.wait(lambda: bool(group.serving().get("app000-main")), "the other replica finishing it", timeout=30)
        time.sleep(0.5)
    finally:
        stale.proc.send_signal(signal.SIGCONT)
    stale.wait_for(lambda: metric(stale, "reconciler_ha_fenced_total") >= 1, "the woken execution fenced")
    time.sleep(1.0)  # several heartbeats and passes of the woken replica
    mutations_after = sum(metric(stale, "reconciler_provider_calls_total", call=c)
                          for c in ("create", "enable", "disable", "resize", "destroy"))
    assert mutations_after == mutations_before, "no provider call for the cluster it lost"
    assert metric(other, "reconciler_provider_calls_total", call="enable") == 1
    states = sorted(r.state for r in group.query("SELECT state FROM executions"))
    assert states == ["abandoned", "succeeded"], states
    assert [g["name"] for g in group.groups()] == ["app000-main-v000"]
    for d in (a, b):
        assert d.stop() == 0


def test_while_postgresql_is_down_replicas_are_not_ready_act_on_nothing_and_recover(tmp_path: Path) -> None:
    server = PostgresServer()  # its own server: this test stops it
    group = Group(tmp_path, server.create_database(), DesiredRepo(tmp_path / "desired"))
    try:
        many_apps(group.repo, 4)
        group.repo.commit("v1")
        replicas = [group.add(boot_seconds=0.5), group.add(boot_seconds=0.5)]
        group.start_all()
        group.wait(lambda: sum(1 for n in group.serving().values() if n) == 4, "v1 serving")
        for d in replicas:
            d.wait_for(lambda d=d: d.get("/readyz")[0] == 200, "ready")  # type: ignore[misc]
        calls = [metric(d, "reconciler_provider_calls_total") for d in replicas]
        server.stop()
        try:
            many_apps(group.repo, 4, image="img-2.0")
            group.repo.commit("v2 while the database is down")
            for d in replicas:
                d.wait_for(lambda d=d: d.get("/readyz")[0] == 503, "not ready", timeout=15)  # type: ignore[misc]
            time.sleep(3)  # several polls with v2 waiting: nothing may act
            assert [metric(d, "reconciler_provider_calls_total") for d in replicas] == calls
        finally:
            server.start()
        for d in replicas:
            d.wait_for(lambda d=d: d.get("/readyz")[0] == 200, "ready again", timeout=30)  # type: ignore[misc]
        group.wait(lambda: all(n and all(x.endswith("-v001") for x in n) for n in group.serving().values()),
                   "v2 serving after the outage")
        assert len(group.groups()) == 8, "one new group per cluster"
        for d in replicas:
            assert d.stop() == 0
    finally:
        for d in group.replicas:
            if d.proc is not None and d.proc.poll() is None:
                d.proc.kill()
                d.proc.communicate()
        server.close()


STEADY = {"heartbeat": "500ms", "takeover": "10s"}
"""No takeover is tested here: a replica slowed by a loaded machine must not look dead and lose its share."""


def test_a_replica_that_joins_gets_its_share_of_the_next_commit(group: Group) -> None:
    many_apps(group.repo, 12)
    group.repo.commit("v1")
    group.add(boot_seconds=0.2, ha=STEADY)
    group.add(boot_seconds=0.2, ha=STEADY)
    group.start_all()
    group.wait(lambda: sum(1 for n in group.serving().values() if n) == 12, "v1 serving on two replicas")
    joined = group.add(boot_seconds=0.2, ha=STEADY)
    joined.start(log_to=group.root / "replica2.log")
    group.wait(lambda: metric(group.replicas[0], "reconciler_ha_live_replicas") == 3, "the third replica seen")
    many_apps(group.repo, 12, image="img-2.0")
    group.repo.commit("v2")
    group.wait(lambda: all(n and all(x.endswith("-v001") for x in n) for n in group.serving().values()),
               "v2 serving")
    # Serving on v001 comes before the last step (the old group's removal) marks the execution succeeded.
    done = "SELECT owner, count(*) AS n FROM executions WHERE state = 'succeeded' AND action = 'replace' GROUP BY owner"
    group.wait(lambda: sum(int(r.n) for r in group.query(done)) == 12, "twelve v2 replacements recorded")
    rows = group.query(done)
    shares = sorted(int(r.n) for r in rows)
    assert shares == [4, 4, 4], (shares, [tuple(r) for r in group.query(
        "SELECT owner, action, state, cluster, count(*) FROM executions GROUP BY owner, action, state, cluster")])
    assert joined.proc is not None and any(f":{joined.proc.pid}:" in r.owner for r in rows)
    for d in group.replicas:
        assert d.stop() == 0

"""Load balancers and security groups under several replicas: each change runs once, on the replica
whose share it is, under a claim whose every write is fenced."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from providers import local as local_mod
from reconciler.config import settings as config_mod
from reconciler.core import clock as clock_mod
from reconciler.core import model
from reconciler.core.resources import Kind, ResourceAction, ResourceChange
from reconciler.runtime import executor as executor_mod
from reconciler.runtime import ha
from reconciler.runtime import resources as resources_rt
from reconciler.state import claims as claims_mod
from reconciler.state import store as store_mod
from tests.conftest import app_spec, provider_context
from tests.ha.conftest import Group

REGION = "us-east-1"


def declare(group: Group, n: int, path: str) -> None:
    """``n`` applications, each with its own balancer and security group, used by its cluster."""
    group.repo.write("apps/policies.yaml", "defaults: {blast_radius: {max_clusters: 1000}}\n")
    for i in range(n):
        name = f"app{i:03d}"
        group.repo.write(f"apps/{name}.yaml", app_spec(
            name, regions=(REGION,), desired=1, timeout="60s",
            extra=f"load_balancers: [{name}-web]\nsecurity_groups: [{name}]\n") + (
            f"load_balancers:\n  - name: {name}-web\n    health_check: {{path: {path}, interval: 10s}}\n"
            f"security_groups:\n  - name: {name}\n    ingress:\n"
            "      - {protocol: tcp, ports: 443, cidr: 0.0.0.0/0}\n"))


def resource_runs(group: Group) -> list[tuple[str, str, str]]:
    """(key, action, owner) of every succeeded resource execution."""
    return [(r.key, r.action, r.owner) for r in group.query(
        "SELECT key, action, owner FROM executions WHERE state = 'succeeded' AND key LIKE '%/%_%:%'")]


def test_three_replicas_create_and_update_each_resource_once_in_their_shares(group: Group) -> None:
    declare(group, 9, "/health")
    group.repo.commit("9 applications with their balancers and security groups")
    for _ in range(3):
        group.add(boot_seconds=0.2)
    group.start_all()
    group.wait(lambda: sum(1 for n in group.serving().values() if n) == 9, "9 clusters serving")
    created = resource_runs(group)
    assert sorted(k for k, _, _ in created) == sorted(
        f"local/default/{REGION}/{kind}:app{i:03d}{suffix}"
        for i in range(9) for kind, suffix in (("load_balancer", "-web"), ("security_group", ""))), created
    assert {a for _, a, _ in created} == {"create"}, "each created once, by one replica"
    groups = group.groups()
    assert len(groups) == 9 and all(g["launch"]["load_balancers"] for g in groups), "attached when created"

    for d in group.replicas:  # every replica in the group before the next commit: the shares are split
        d.wait_for(lambda d=d: d.get("/readyz")[0] == 200, "ready")  # type: ignore[misc]
    group.wait(lambda: len(group.query("SELECT id FROM replicas WHERE role = 'daemon'")) == 3, "three members")
    declare(group, 9, "/healthz")
    group.repo.commit("a new health check path on every balancer")
    group.wait(lambda: sum(1 for _, a, _ in resource_runs(group) if a == "update") == 9, "9 balancers updated")
    updates = [(k, o) for k, a, o in resource_runs(group) if a == "update"]
    assert len({k for k, _ in updates}) == 9, "each balancer updated once"
    assert len({o for _, o in updates}) >= 2, f"the updates ran in more than one replica's share: {updates}"
    for d in group.replicas:
        assert d.stop() == 0
        assert not [x for x in d.log_lines() if x.get("level") in ("ERROR", "CRITICAL")], d.log


def test_a_resource_change_whose_claim_moved_writes_nothing_and_calls_no_provider(postgres_url: str,
                                                                                    tmp_path: Path) -> None:
    settings = config_mod.HaSettings(enabled=True, heartbeat_s=60.0, takeover_s=300.0)
    a_store, b_store = store_mod.Store(postgres_url, owner="a"), store_mod.Store(postgres_url, owner="b")
    a, b = ha.Coordinator(a_store, settings, share=False), ha.Coordinator(b_store, settings, share=False)
    clock = clock_mod.FakeClock()
    prov = local_mod.LocalProvider("default", provider_context(postgres_url, tmp_path, clock))
    ex = executor_mod.Executor(store=a_store, providers=lambda _p, _a: prov, clock=clock, claims=a)
    change = ResourceChange(kind=Kind.SECURITY_GROUP, name="checkout", application="checkout", provider="local",
                            account="default", region=REGION, action=ResourceAction.DESTROY, reason="removed")
    try:
        a.beat()
        _, mine = a.select([], model.DesiredState("c1", {}), set(), capacity=8, resources=[change])
        assert mine == [change], "claimed in the claim step"
        with a_store.engine.begin() as c:  # a's claim lapses (a paused past ha.takeover) and b takes it
            c.execute(claims_mod.claims.update().values(expires_at=0.0))
        assert b.claim_now(change.key) is not None
        (result,) = resources_rt.ResourceRunner(ex).run_all("plan", mine)
        assert result.state == "fenced" and "held by b" in result.error, result
        assert sum(prov.calls.values()) == 0 and a_store.active_executions() == [], "no provider call, no row"
        with a_store.engine.begin() as c:
            assert c.execute(sa.text("SELECT count(*) FROM executions")).scalar() == 0
    finally:
        a.close()
        b.close()
        a_store.close()
        b_store.close()


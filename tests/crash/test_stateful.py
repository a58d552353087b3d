"""Random operator sequences keep the safety invariants (Hypothesis, stateful).

The machine commits what operators commit in their first weeks (new images, broken images, fix-forward
commits, cluster renames, moves between accounts and providers, unknown providers and accounts, the deployment
strategy (red/black, highlander, rolling red/black, a canary whose analysis passes or fails, judged by a real
Prometheus) drawn at random, spec files renamed to
``.yml``/``.YAML``/``.yaml.bak``, dropped regions, deleted and restored files, reverts), and runs what happens
to a daemon (passes, crashes mid-pass, restarts, time passing, pauses), on the local provider and a second
cloud registered as a plugin, with a fake clock. After every step:

* no application loses its last healthy enabled capacity in a region, unless its file was removed;
* no region of a later wave ever receives a spec hash that has not succeeded in every earlier wave
  (checked when each group is created);
* groups the reconciler does not own are untouched, and group names are unique;
* no load balancer or security group is destroyed while a server group uses it, no server group is
  created before the resources it names exist, and a resource the reconciler does not own is untouched
  (the machine also declares, changes, renames and removes resources and edits them by hand).
* the application ``flow`` runs environments ``test`` then ``prod`` (soak, approval and versions drawn, a
  version that never gets healthy among them): ``prod`` only ever receives a version that serves healthy
  in ``test``, soaked there as long as the commit asked (from the durable facts), approved when the
  commit asked for approval, and never one that failed (checked when each group is created).
* the application ``baked`` names its image by pattern (``baked-{version}-*``, newest) in r1 and r2, and the
  machine bakes versions into one region at a time (the local provider's image list): a group only ever
  runs an image baked in its own region, r2 gets a version only after r1 served it, a region the version
  has not reached yet is held (``skipped: image``), and once it is baked everywhere the plan is empty.

``RECONCILER_STATEFUL_STEPS`` sets how many random steps run (default 2,000, what CI runs); the counts of
steps and scenario kinds are printed in pytest's summary. Random runs reach most kinds, not all of them on
every run: directed sequences of the same moves (``DIRECTED``) reach every kind in ``MUST_REACH`` on every
run, with the same invariants checked after each move.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from providers import base as provider_base
from providers import local as local_mod
from providers import local_resources
from reconciler.config import settings as config_mod
from reconciler.core import clock as clock_mod
from reconciler.core import errors, memo, model, planner
from reconciler.core.resources import Kind, ResourceAction, ResourceChange
from reconciler.notifications import history as notify_history
from reconciler.runtime import canary as canary_runtime
from reconciler.runtime import engine as engine_mod
from reconciler.runtime import executor as executor_mod
from reconciler.runtime import pipeline as pipeline_mod
from reconciler.runtime import status as status_mod
from reconciler.state import keys
from tests import othercloud, prometheus_server
from tests.conftest import DesiredRepo, app_spec, provider_context, write_config
from tests.crash import stateful_stats

ENV_STEPS = "RECONCILER_STATEFUL_STEPS"
ENV_SHRINK = "RECONCILER_STATEFUL_SHRINK"
"""Set to 1 to shrink a failing sequence to a minimal one (slow: minutes); by default the whole
failing sequence of at most ``STEPS_PER_EXAMPLE`` steps is printed."""
TARGET = int(os.environ.get(ENV_STEPS, "2000"))
STEPS_PER_EXAMPLE = 50
REGIONS = ("r1", "r2", "r3")
GOOD = ("app-1", "app-2", "app-3")
BAD = "app-9-bad"
WHERE = (("local", "default"), ("local", "second"), (othercloud.NAME, "other"))
UNKNOWN = (("nosuchcloud", "default"), ("local", "nosuch"))
FILES = ("app.yaml", "app.yml", "app.YAML")
ACCOUNTS = (("local", "default"), ("local", "second"), (othercloud.NAME, "other"))
FOREIGN = "legacy-v000"
FOREIGN_LB = "legacy-lb"
BALANCERS = ("app-web", "app-edge")
PATHS = ("/health", "/ready")
PORTS = ((443,), (443, 8443), (8443,))

FLOW_VERSIONS = ("1", "2", "3")
FLOW_BAD = "9-bad"
BAKED_REGIONS = ("r1", "r2")


def baked_spec(version: str) -> str:
    return app_spec("baked", image="x", regions=BAKED_REGIONS, desired=1).replace(
        'image: "x"', 'image: {name: "baked-{version}-*", newest: true}').replace(
        "clusters:", f'version: "{version}"\nclusters:', 1)


@dataclasses.dataclass(frozen=True)
class Flow:
    """What the machine committed for the application ``flow`` (environments test -> prod)."""

    version: str = "1"
    soak_s: int = 0
    approval: bool = False

    def spec(self) -> str:
        def env(name: str, *lines: str) -> str:
            head = [f"  - name: {name}", *(f"    {line}" for line in lines if line), "    clusters:"]
            return "\n".join([*head, f"      - stack: {name}", "        provider: local", "        account: default",
                              "        regions: [r1]", '        image: "flow-{version}"',
                              "        instance_type: m5.large", "        capacity: {min: 1, desired: 1, max: 2}",
                              "        health: {timeout: 5s}"]) + "\n"

        return (f'application: flow\nowner: team@example.com\nversion: "{self.version}"\nenvironments:\n'
                + env("test") + env("prod", f"soak: {self.soak_s}s", "approval: true" if self.approval else ""))

STRATEGIES = {
    "red_black": "",
    "highlander": "strategy: {type: highlander}\n",
    "rolling_red_black": "strategy: {type: rolling_red_black, steps: [50, 100]}\n",
    # the Prometheus serves canary_errors = 0 over the fake clock's days: the bound decides the verdict
    "canary_pass": "strategy:\n  type: canary\n  canary: {duration: 2s, interval: 1s, metrics: "
                   "[{name: errors, query: 'max(canary_errors)', fail_if: '> 0.5'}]}\n",
    "canary_fail": "strategy:\n  type: canary\n  canary: {duration: 2s, interval: 1s, metrics: "
                   "[{name: errors, query: 'max(canary_errors)', fail_if: '>= 0'}]}\n",
    # a manual judgment at the last step: the operator's approve_what_waits lets it on
    "rolling_approval": "strategy: {type: rolling_red_black, steps: [50, {percent: 100, pause_for_approval: true}]}\n",
    "canary_rolling": "strategy:\n  type: canary\n  steps: [50, 100]\n  canary: {duration: 2s, interval: 1s, "
                      "then: rolling_red_black, metrics: [{name: errors, query: 'max(canary_errors)', "
                      "fail_if: '> 0.5'}]}\n",
}
PROMETHEUS = {"url": ""}
"""Set by the test: the Prometheus every machine's config names."""


@dataclasses.dataclass(frozen=True)
class Want:
    """What the machine has committed for the application ``app`` (``file`` None: removed)."""

    file: str | None = "app.yaml"
    image: str = "app-1"
    stack: str = ""
    where: tuple[str, str] = ("local", "default")
    regions: tuple[str, ...] = REGIONS
    balancer: str = ""  # a declared balancer (and the security group app-sg) the cluster uses; "" none
    path: str = PATHS[0]
    ports: tuple[int, ...] = PORTS[0]
    strategy: str = "red_black"

    def spec(self) -> str:
        later = ", ".join(self.regions[1:])
        extra = f"rollout: {{waves: [[{self.regions[0]}], [{later}]]}}\n" + STRATEGIES[self.strategy]
        if self.balancer:
            extra += f"load_balancers: [{self.balancer}]\nsecurity_groups: [app-sg]\n"
        text = app_spec("app", image=self.image, stack=self.stack, provider=self.where[0], account=self.where[1],
                        regions=self.regions, extra=extra)
        if self.balancer:
            rules = "".join(f"      - {{protocol: tcp, ports: {p}, cidr: 10.0.0.0/8}}\n" for p in self.ports)
            text += (f"load_balancers:\n  - name: {self.balancer}\n    health_check: {{path: {self.path}}}\n"
                     f"security_groups:\n  - name: app-sg\n    ingress:\n{rules}")
        return text

    @property
    def converges(self) -> bool:
        """A final state every pass must reach exactly (no held or failing change left)."""
        return (self.file is not None and self.image != BAD and self.where in WHERE and self.regions == REGIONS
                and self.strategy != "canary_fail")


class Fleet(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="reconciler-stateful-", dir=_memory_dir()))
        self.plugin = othercloud.registered(self.tmp / "plugins")
        self.plugin.__enter__()
        self.repo = DesiredRepo(self.tmp / "desired")
        self.baked: dict[str, list[str]] = {r: ["baked-1-0"] for r in BAKED_REGIONS}  # region -> images, oldest first
        self.baked_version = "1"
        self.baked_served: set[str] = set()  # images of baked that served in r1
        self.cfg_path = self._write_config()
        self.cfg = config_mod.load_config(self.cfg_path)
        self.clock = clock_mod.FakeClock()
        self.want = Want()
        self.history: list[tuple[str, Want]] = []
        self.served: set[tuple[str, str]] = set()
        self.succeeded: set[tuple[str, str, str, str, str]] = set()  # provider, account, cluster, region, hash
        self.paused = False
        self.background = False
        self.other: engine_mod.Engine | None = None  # a second replica on the same store (two-replica mode)
        self.recorded_by: engine_mod.Engine | None = None  # the replica whose pass wrote status last
        self.checked = False
        self.answers: dict[str, tuple[object, ...]] = {}  # digest of an evaluation's inputs -> its answer
        self.repo.write("apps/keep.yaml", app_spec("keep", regions=REGIONS))
        self.flow = Flow()
        self.flow_rules: dict[str, Flow] = {}  # version -> the commit that last declared it
        self.approved: set[str] = set()
        self.flow_served: dict[str, set[str]] = {}  # version -> spec hashes of flow-test that served it
        self.repo.write("apps/flow.yaml", self.flow.spec())
        self.repo.write("apps/baked.yaml", baked_spec(self.baked_version))
        self.repo.write("apps/policies.yaml", "defaults: {mass_deletion: {max_share: 1.0}}\n")
        self._commit("first")
        ctx = provider_context(self.cfg.state_url, self.cfg.state_dir, self.clock)
        self.providers = [(othercloud.OtherCloud if p == othercloud.NAME else local_mod.LocalProvider)(a, ctx)
                          for p, a in ACCOUNTS]
        self.providers[0].put_foreign_group("r1", FOREIGN, desired=2)
        self.providers[0].put_foreign_resource("r1", Kind.LOAD_BALANCER, FOREIGN_LB)
        self.engine = self._engine()
        stateful_stats.EXAMPLES += 1
        stateful_stats.CURRENT = self

    # ------------------------------------------------------------------ helpers

    @initialize(daemon=st.booleans(), replicas=st.sampled_from([1, 2]))
    def choose_how_passes_run(self, daemon: bool, replicas: int) -> None:
        """The daemon runs rollouts in worker threads (a destroy waits a pass for its replacement);
        ``run --once`` and ``apply`` run them in the pass (the destroy is ordered after it). With two
        replicas, both engines share the store with ``ha`` on (claims, shares, fencing) and the steps
        interleave their passes, crashes and restarts."""
        self.background = daemon
        self.engine.close()
        if replicas == 2:
            self.cfg = dataclasses.replace(self.cfg, ha=dataclasses.replace(self.cfg.ha, enabled=True))
            self.other = self._engine()
            stateful_stats.KINDS["two replicas"] += 1
        self.engine = self._engine()
        stateful_stats.KINDS["daemon passes" if daemon else "run --once passes"] += 1

    def _write_config(self) -> Path:
        images = [{"name": n, "regions": [r], "created": i} for r, names in self.baked.items()
                  for i, n in enumerate(names)]
        return write_config(
            self.tmp / "config.yaml", self.repo.path, self.tmp / "state", prune=True,
            providers={"local": {"accounts": {"default": {"images": images}, "second": {}}},
                       othercloud.NAME: {"accounts": {"other": {}}}},
            execution={"poll_health": "1s", "retry_backoff": "10s", "max_attempts": 2, "step_backoff": "0s"},
            analysis={"prometheus": {"url": PROMETHEUS["url"]}})

    def _engine(self) -> engine_mod.Engine:
        return engine_mod.Engine(self.cfg, clock=self.clock, background=self.background)

    def _replica(self, which: int) -> engine_mod.Engine:
        return self.other if which == 1 and self.other is not None else self.engine

    def _commit(self, message: str) -> None:
        apps = self.repo.path / "apps"
        for p in apps.glob("app.*"):
            p.unlink()
        if self.want.file is not None:
            (apps / self.want.file).write_text(self.want.spec(), encoding="utf-8")
        self.history.append((self.repo.commit(message), self.want))

    def _change(self, kind: str, passes: int, **changes: Any) -> None:
        failing = any(key.startswith(("local/", f"{othercloud.NAME}/")) and "/app" in key
                      for key, _ in self.engine.store.failures())
        new = dataclasses.replace(self.want, **changes)
        if failing and new.image not in (self.want.image, BAD):
            stateful_stats.KINDS["fix-forward commit"] += 1
        self.want = new
        self._commit(kind)
        stateful_stats.KINDS[kind] += 1
        for _ in range(passes):
            self._pass("a reconcile pass")

    def _pass(self, kind: str, which: int = 0) -> None:
        engine = self._replica(which)
        result = engine.reconcile(reason="test")
        self.recorded_by = engine  # with two replicas on one store, status is the last writer's document
        engine.wait(timeout=60)
        stateful_stats.KINDS[kind] += 1
        if which == 1 and self.other is not None and result.resource_results:
            stateful_stats.KINDS["resources: changed by the second replica"] += 1
        for rr in result.resource_results:
            if rr.change.after:
                stateful_stats.KINDS[f"freed resource destroyed after its groups: {rr.state}"] += 1
        for r in result.results:
            stateful_stats.KINDS[f"execution {r.state}"] += 1
            if r.change.restore:
                stateful_stats.KINDS[f"rolling execution {r.state}"] += 1
            elif r.change.desired is not None and r.change.desired.strategy.type.value == "highlander":
                stateful_stats.KINDS[f"highlander execution {r.state}"] += 1
        status = self.engine.store.get(keys.STATUS) or {}
        for h in status.get("held", []):
            stateful_stats.KINDS[f"held: {h['kind']}"] += 1
        for s in status.get("skipped", []):
            stateful_stats.KINDS[f"skipped: {s['kind']}"] += 1
        for p in status.get("problems", []):
            for what in ("unknown provider", "is not configured for provider"):
                if what in p:
                    stateful_stats.KINDS[f"spec problem: {what}"] += 1

    def _observe(self) -> list[model.ServerGroup]:
        """Every group of the simulated clouds, read in one query of their table."""
        by_account = {p.account: p for p in self.providers}
        now = self.clock.now()
        with self.providers[0]._engine.begin() as conn:
            rows = conn.execute(sa.select(local_mod.local_groups)).all()
        return [by_account[r.account]._to_model(r.region, json.loads(r.data), now) for r in rows]

    # ------------------------------------------------------------------ commits

    # every commit is followed by 0-2 passes, as a daemon polls: several commits may land between passes

    @rule(image=st.sampled_from(GOOD), passes=st.sampled_from([0, 1, 1, 2]))
    def deploy(self, image: str, passes: int) -> None:
        self._change("deploy a good image", passes, image=image)

    @rule(strategy=st.sampled_from(sorted(STRATEGIES)), passes=st.sampled_from([0, 1, 1, 2]))
    def change_strategy(self, strategy: str, passes: int) -> None:
        """The strategy is drawn at random: the next deployments (and any in flight) follow it."""
        self._change(f"strategy: {strategy}", passes, strategy=strategy)

    @rule(passes=st.sampled_from([0, 1, 1, 2]))
    def deploy_bad_image(self, passes: int) -> None:
        self._change("deploy an image that never becomes healthy", passes, image=BAD)

    @rule(stack=st.sampled_from(["", "web", "api"]), passes=st.sampled_from([0, 1, 1, 2]))
    def rename_cluster(self, stack: str, passes: int) -> None:
        self._change("rename the cluster (stack)", passes, stack=stack)

    @rule(where=st.sampled_from(WHERE), passes=st.sampled_from([0, 1, 1, 2]))
    def move(self, where: tuple[str, str], passes: int) -> None:
        kind = "move to another provider" if where[0] != self.want.where[0] else "move to another account"
        self._change(kind, passes, where=where)

    @rule(where=st.sampled_from(UNKNOWN), passes=st.sampled_from([0, 1, 1, 2]))
    def name_something_unknown(self, where: tuple[str, str], passes: int) -> None:
        self._change("unknown provider" if where[0] == "nosuchcloud" else "unknown account", passes, where=where)

    @precondition(lambda self: self.want.file is not None)
    @rule(name=st.sampled_from([*FILES, "app.yaml.bak"]), passes=st.sampled_from([0, 1, 1, 2]))
    def rename_file(self, name: str, passes: int) -> None:
        self._change("rename the spec file to a non-spec name" if name.endswith(".bak")
                     else "rename the spec file (.yml/.YAML)", passes, file=name)

    @rule(drop=st.booleans(), passes=st.sampled_from([0, 1, 1, 2]))
    def change_regions(self, drop: bool, passes: int) -> None:
        self._change("drop a region" if drop else "keep every region", passes,
                     regions=REGIONS[:2] if drop else REGIONS)

    @precondition(lambda self: self.want.file is not None)
    @rule(passes=st.sampled_from([0, 1, 1, 2]))
    def delete_file(self, passes: int) -> None:
        self._forget_app()
        self._change("remove the application's file", passes, file=None)

    @precondition(lambda self: self.want.file is None)
    @rule(passes=st.sampled_from([0, 1, 1, 2]))
    def restore_file(self, passes: int) -> None:
        self._change("add the application back", passes, file="app.yaml")

    @precondition(lambda self: len(self.history) >= 2)
    @rule(passes=st.sampled_from([0, 1, 1, 2]))
    def revert(self, passes: int) -> None:
        previous = self.history[-2][1]
        if previous.file is None:
            self._forget_app()
        self._change("revert the last commit", passes, **dataclasses.asdict(previous))

    @rule(name=st.sampled_from(["", *BALANCERS]), passes=st.sampled_from([0, 1, 1, 2]))
    def declare_or_remove_a_balancer(self, name: str, passes: int) -> None:
        kind = ("stop using and remove the balancer" if not name else "declare a balancer" if not self.want.balancer
                else "rename the balancer" if name != self.want.balancer else "keep the balancer")
        self._change(kind, passes, balancer=name)

    @precondition(lambda self: bool(self.want.balancer))
    @rule(passes=st.sampled_from([0, 1, 1, 2]))
    def rename_the_balancer(self, passes: int) -> None:
        """The cluster moves to a balancer of another name: the new one first, the old one once unused."""
        other = next(b for b in BALANCERS if b != self.want.balancer)
        self._change("rename the balancer", passes, balancer=other)

    @precondition(lambda self: bool(self.want.balancer))
    @rule(path=st.sampled_from(PATHS), ports=st.sampled_from(PORTS), passes=st.sampled_from([0, 1, 1, 2]))
    def change_health_check_or_rules(self, path: str, ports: tuple[int, ...], passes: int) -> None:
        self._change("change the health check or the rules", passes, path=path, ports=ports)

    @rule(path=st.sampled_from(["/by-hand", *PATHS]), port=st.sampled_from([22, 443]))
    def edit_a_resource_by_hand(self, path: str, port: int) -> None:
        """Someone edits a managed balancer's health check or adds a rule in the console (drift)."""
        with self.providers[0]._engine.begin() as conn:
            rows = conn.execute(sa.select(local_resources.local_resources)).all()
        owned = [r for r in rows if '"managed-by": "reconciler"' in r.data]
        if not owned:
            return
        r = owned[0]
        prov = next(p for p in self.providers if p.account == r.account)
        if r.kind == Kind.LOAD_BALANCER.value:
            prov.tamper_resource(r.region, Kind.LOAD_BALANCER, r.name, settings={"health_check.path": path})
        else:
            rules = json.loads(r.data)["rules"]
            prov.tamper_resource(r.region, Kind.SECURITY_GROUP, r.name, rules=[*rules, f"tcp {port} from 0.0.0.0/0"])
        stateful_stats.KINDS["edit a resource by hand"] += 1

    @rule()
    def approve_what_waits(self) -> None:
        """An operator approves the resource changes waiting for one (narrowed ingress) and the rollouts
        waiting at a manual judgment (a rolling step with ``pause_for_approval``)."""
        status = self.engine.store.get(keys.STATUS) or {}
        for h in status.get("held", []):
            if h["kind"] == model.Hold.APPROVAL.value:
                try:
                    self.engine.approve(h["change_id"], by="test")
                except errors.ReconcilerError:
                    continue  # the plan moved on since the status was saved
                stateful_stats.KINDS["approve a manual judgment"] += 1
        events = [e for e in self.engine.store.history(limit=500) if e["kind"] == "waiting_for_approval"]
        announced = {c["content_id"] for e in events for c in e["detail"].get("changes", [])}
        for h in status.get("resource_held", []):
            if h["kind"] == model.Hold.APPROVAL.value:  # told once, by its content id (not again per commit)
                assert h["content_id"] in announced, f"{h['key']} waits for approval unannounced"
        for rc in status.get("resource_changes", []):
            if rc["verdict"] == "approve":
                try:
                    self.engine.approve(rc["change_id"], by="test")
                except errors.ReconcilerError:
                    continue  # the plan moved on since the status was saved
                stateful_stats.KINDS["approve a narrowed ingress"] += 1

    @rule()
    def commit_elsewhere(self) -> None:
        """A commit that changes no spec (another team's file): every change id moves with it, and no change
        held before is told again (each is told once, when it begins: docs/notifications.md)."""
        told = self.engine.store.get(notify_history.KEY_SNAPSHOT) or {}
        before = {(ident, kind) for ident, kind in told.get("held") or []} if told.get("held_by") else set()
        last = max((e["id"] for e in self.engine.store.history(limit=1)), default=0)
        (self.repo.path / "NOTES.md").write_text(f"note {len(self.history)}\n", encoding="utf-8")
        self.history.append((self.repo.commit("a note outside the specs"), self.want))
        stateful_stats.KINDS["a commit outside the specs"] += 1
        self._pass("a reconcile pass")
        again = [(c.get("content_id"), e["kind"]) for e in self.engine.store.history(limit=500) if e["id"] > last
                 for c in e["detail"].get("changes", []) if (c.get("content_id"), e["kind"]) in before]
        assert not again, f"held changes told again after a commit outside the specs: {again}"
        if before:
            stateful_stats.KINDS["a commit outside the specs with changes held"] += 1

    def _forget_app(self) -> None:
        """Its file is removed: losing its capacity is allowed from now until it is back and serves."""
        self.served = {s for s in self.served if s[0] != "app"}

    # ------------------------------------------------------------------ the daemon's life

    @rule(version=st.sampled_from([*FLOW_VERSIONS, FLOW_BAD]), soak=st.sampled_from([0, 0, 60, 600]),
          approval=st.booleans(), passes=st.sampled_from([0, 1, 2]))
    def promote_flow(self, version: str, soak: int, approval: bool, passes: int) -> None:
        """A new version (or new constraints) for the environments of ``flow``."""
        self.flow = Flow(version, soak, approval)
        self.flow_rules[version] = self.flow
        self.repo.write("apps/flow.yaml", self.flow.spec())
        self._commit("promote flow")
        stateful_stats.KINDS["flow: bad version" if version == FLOW_BAD else "flow: promote"] += 1
        for _ in range(passes):
            self._pass("a reconcile pass")

    @rule(what=st.sampled_from(["release 1", "release 2", "release 3", "bake r1", "bake r2"]),
          passes=st.sampled_from([0, 1, 2]))
    def release_or_bake(self, what: str, passes: int) -> None:
        """Commit a version of ``baked`` (its image found by pattern per region), or let the bake of the
        committed version reach one region (a newer image there; the daemon reloads its config to see it)."""
        verb, arg = what.split()
        if verb == "bake":
            self._bake(arg)
        else:
            self.baked_version = arg
            self.repo.write("apps/baked.yaml", baked_spec(arg))
            self._commit("release baked")
            stateful_stats.KINDS["baked: release"] += 1
        for _ in range(passes):
            self._pass("a reconcile pass")

    def _bake(self, region: str) -> None:
        names = self.baked[region]
        names.append(f"baked-{self.baked_version}-{len(names)}")
        self._write_config()
        self.cfg = config_mod.load_config(self.cfg_path)
        for engine in [self.engine] if self.other is None else [self.engine, self.other]:
            engine.apply_config(self.cfg)  # a reload (SIGHUP) of each replica: the local provider built afresh
        stateful_stats.KINDS["baked: an image reaches a region"] += 1

    @rule()
    def approve_flow(self) -> None:
        if not self.flow.approval:
            return
        self.engine.decide_environment("flow", "prod", self.flow.version, "approved", by="test")
        self.approved.add(self.flow.version)
        stateful_stats.KINDS["flow: approve"] += 1

    @rule(passes=st.integers(1, 3), on=st.lists(st.integers(0, 1), min_size=3, max_size=3))
    def reconcile(self, passes: int, on: list[int]) -> None:
        for i in range(passes):
            self._pass("a reconcile pass", on[i])
            if self.other is not None and on[i] == 1:
                stateful_stats.KINDS["a pass of the second replica"] += 1

    @rule()
    def a_bad_day(self) -> None:
        """A broken image, then passes with time passing until its first wave stalls (multi-pass waves)."""
        self._change("deploy an image that never becomes healthy", 0, image=BAD)
        for _ in range(2):  # max_attempts: 2
            self._pass("a reconcile pass")
            self.clock.advance(60)
        stateful_stats.KINDS["passes until the first wave stalls"] += 1

    @rule(steps=st.integers(1, 8))
    def crash_mid_pass(self, steps: int) -> None:
        """Stop the executor after some steps (what a crash leaves), then start a fresh engine."""
        counter = {"n": 0}
        original = executor_mod.Executor._run_step

        def run_step(ex: executor_mod.Executor, provider: provider_base.Provider, change: model.Change,
                     step: model.Step) -> None:
            counter["n"] += 1
            if counter["n"] > steps:
                ex.stopping.set()
                raise executor_mod.Interrupted("crash")
            return original(ex, provider, change, step)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(executor_mod.Executor, "_run_step", run_step)
            self._pass("crash in the middle of a pass")
        self.restart()

    @rule()
    def restart(self) -> None:
        self.engine.close()
        self.engine = self._engine()
        stateful_stats.KINDS["restart"] += 1

    @precondition(lambda self: self.other is not None)
    @rule(passes=st.integers(0, 2))
    def restart_the_second_replica(self, passes: int) -> None:
        """It leaves the group (its claims go), rejoins under a new id: the shares move between the two."""
        assert self.other is not None
        self.other.close()
        self.other = self._engine()
        for _ in range(passes):
            self._pass("a reconcile pass", 1)
        stateful_stats.KINDS["restart of the second replica"] += 1

    @rule(seconds=st.sampled_from([10, 60, 600]))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds)
        stateful_stats.KINDS["time passes (backoff ends)"] += 1

    @rule()
    def pause_or_resume(self) -> None:
        if self.paused:
            self.engine.resume("app", by="test")
        else:
            self.engine.pause("app", by="test", force=True)  # app may be out of Git at the moment
        self.paused = not self.paused
        stateful_stats.KINDS["pause and resume"] += 1

    @rule(image=st.sampled_from(GOOD), region=st.sampled_from(["r1", "r1", None]), passes=st.sampled_from([0, 1, 2]),
          resume=st.booleans())
    def roll_back_by_hand(self, image: str, region: str | None, passes: int, resume: bool) -> None:
        """A deploy goes out, then ``reconciler rollback CLUSTER [--region r1]``: the retained groups back in
        traffic now and the cluster paused, so the passes that follow leave them serving; the operator may
        resume at once (Git's version comes back on the next pass)."""
        if image == self.want.image:  # a deploy that changes something, so there is a version to go back to
            image = GOOD[(GOOD.index(image) + 1) % len(GOOD)]
        self._change("deploy, then roll back by hand", 2, image=image)
        cluster = model.cluster_name("app", self.want.stack)
        try:
            results = self.engine.rollback(cluster, region=region, by="test")
        except errors.ReconcilerError:  # a region with nothing retained (yet), or the cluster is not in Git now
            stateful_stats.KINDS["manual rollback refused"] += 1
            return
        stateful_stats.KINDS["manual rollback"] += 1
        self.paused = self.paused or cluster == "app"  # a cluster without a stack is named like its application
        back = {(r.change.region, r.change.desired_server_group) for r in results
                if r.state is model.ExecState.SUCCEEDED}
        for _ in range(passes):
            self._pass("a pass while rolled back by hand")
        serving = {(g.region, g.name) for g in self._observe() if g.enabled and g.cluster == cluster}
        assert back <= serving, f"a pass undid the manual rollback of {cluster}: {sorted(back - serving)}"
        if resume:
            self.engine.resume(cluster, by="test")
            self.paused = self.paused and cluster != "app"

    # ------------------------------------------------------------------ invariants

    @invariant()
    def invariants_hold(self) -> None:
        if self.checked:  # the first check follows initialisation, not a step
            stateful_stats.STEPS += 1
        self.checked = True
        groups = self._observe()
        names = [(g.provider, g.account, g.region, g.name) for g in groups]
        assert len(names) == len(set(names)), "server group names are unique"
        foreign = [g for g in groups if g.name == FOREIGN]
        assert len(foreign) == 1 and foreign[0].enabled and foreign[0].capacity.desired == 2, "unowned: untouched"
        mine = [r for r in self.providers[0].list_resources("r1") if r.name == FOREIGN_LB]
        assert len(mine) == 1 and not mine[0].managed and mine[0].settings == (), "unowned resource: untouched"
        now: set[tuple[str, str]] = set()
        for g in groups:
            if g.managed and planner.serves([g], healthy_percent=100):
                now.add((g.application, g.region))
                self.succeeded.add((g.provider, g.account, g.cluster, g.region, g.spec_hash))
                if g.cluster == "flow-test":
                    self.flow_served.setdefault(g.launch.image.removeprefix("flow-"), set()).add(g.spec_hash)
                if g.cluster == "baked-main" and g.region == "r1":
                    self.baked_served.add(g.launch.image)
            if g.cluster == "baked-main":
                assert g.launch.image in self.baked[g.region], f"{g.name} in {g.region} runs {g.launch.image}, " \
                    "an image never baked there"
        removed = self.want.file is None
        lost = {s for s in self.served - now if not (s[0] == "app" and removed)}
        assert not lost, f"lost the last serving capacity: {sorted(lost)} (commit {self.history[-1][0][:8]})"
        self.served |= {s for s in now if not (s[0] == "app" and removed)}

    @invariant()
    def a_reused_decision_is_the_one_made_afresh(self) -> None:
        """The memos (reconciler.core.memo: the unchanged pass's, each cluster's) never answer what a fresh
        evaluation would not."""
        commit = self.engine.store.get(keys.LAST_GOOD)
        if commit is None:
            return
        pipeline = self.engine.pipeline
        want = self.engine.desired.at(commit)
        hits, cluster_hits = pipeline.evaluations.hits, pipeline.clusters.hits + pipeline.verdicts.hits
        digests = _Digests()  # what ``plan`` would name these inputs by (its persisted answers)
        reused = pipeline.evaluate(want, reuse=digests)
        if pipeline.evaluations.hits > hits:
            stateful_stats.KINDS["a decision reused"] += 1
        elif pipeline.clusters.hits + pipeline.verdicts.hits > cluster_hits:  # clusters' changes or verdicts reused
            stateful_stats.KINDS["a cluster's change reused"] += 1
        else:
            self._one_digest_one_answer(digests.last, reused)
            return  # everything decided afresh just now: nothing reused to check
        saved = pipeline.evaluations, pipeline.clusters, pipeline.verdicts
        pipeline.evaluations, pipeline.clusters, pipeline.verdicts = memo.LastResult(), memo.PerKey(), memo.PerKey()
        try:
            fresh = pipeline.evaluate(want, reuse=digests)
        finally:
            pipeline.evaluations, pipeline.clusters, pipeline.verdicts = saved
        self._one_digest_one_answer(digests.last, fresh)
        assert (reused.plan, reused.runnable, reused.held, reused.outcome.skipped) == \
            (fresh.plan, fresh.runnable, fresh.held, fresh.outcome.skipped), "a reused decision went stale"

    def _one_digest_one_answer(self, digest: str | None, fresh: pipeline_mod.Evaluation) -> None:
        """``plan``'s persisted answers (reconciler.state.plancache) are named by the digest of every input:
        whenever the same digest comes back, in any later step, a fresh evaluation answers the same."""
        if digest is None:
            return
        answer = (fresh.plan, fresh.held, fresh.outcome.skipped, fresh.resources_held, fresh.outcome.resource_skipped,
                  fresh.live.unreadable, fresh.desired)
        first = self.answers.setdefault(digest, answer)
        if first is not answer:
            stateful_stats.KINDS["the same inputs again (one digest)"] += 1
            assert first == answer, "one digest of every input stood for two different answers"

    @invariant()
    def status_shows_the_last_evaluation(self) -> None:
        """A pass that reused its evaluation wrote only a stamp: status is still that evaluation's document."""
        writer = self.recorded_by or self.engine
        if writer not in (self.engine, self.other):
            return  # the replica that wrote it was restarted since: its evaluation is gone with it
        store, last = writer.store, writer.pipeline._last
        if last is None:
            return
        stamp = store.get(keys.STATUS_STAMP) or {}
        shown = status_mod.stamped(store.get(keys.STATUS) or {}, stamp)
        if stamp.get("updated_at") != stamp.get("built_at"):
            stateful_stats.KINDS["status stamped, not rewritten"] += 1
        fresh = status_mod.build(last, commit=last.desired.commit, source_error=last.source_error,
                                 reason=shown["reason"], now=shown["updated_at"],
                                 file_apps=store.get(keys.FILE_APPS, {}) or {})
        assert shown == json.loads(json.dumps(fresh)), "status is not the document of the last evaluation"

    def teardown(self) -> None:
        """Converge: nothing runnable is left; a good, complete desired state plans nothing at all."""
        try:
            for name in sorted(self.engine.store.pauses()):  # the machine's own, and those of manual rollbacks
                self.engine.resume(name, by="test")
            if self.flow.approval:
                self.engine.decide_environment("flow", "prod", self.flow.version, "approved", by="test")
                self.approved.add(self.flow.version)  # the spy on prod's creations checks against this
            for region in BAKED_REGIONS:  # the bake of baked's version finishes everywhere
                if not any(n.startswith(f"baked-{self.baked_version}-") for n in self.baked[region]):
                    self._bake(region)
            # a round per step a deployment may still need: environments, waves, rolling steps, a canary's
            # analysis and the freed resources after it each take a pass of their own
            for _ in range(12):
                self.clock.advance(3600)
                self.approve_what_waits()
                for engine in [self.engine] if self.other is None else [self.engine, self.other]:
                    engine.reconcile(reason="final")
                    engine.wait(timeout=60)
                ev = self.engine.plan()
                # a hold that time or another change's progress releases (a soak that began this round, a
                # later environment waiting on an earlier one) needs another round, not a verdict
                settling = [c for c, h in ev.held if h.kind not in FINAL_HOLDS]
                if not ev.runnable and not ev.resources_runnable and not settling and not [
                        c for c, h in ev.resources_held if h.kind is model.Hold.APPROVAL]:
                    break
            running: list[model.Change | ResourceChange] = [*ev.runnable, *ev.resources_runnable]
            runnable = [f"{c.key} {c.action.value}: {c.reason}" for c in running]
            assert runnable == [], runnable
            if self.want.converges:
                left = [c for c in ev.plan.changes if c.application != "flow" or self.flow.version != FLOW_BAD]
                assert [c.key for c in left] == [], [f"{c.key}: {c.reason}" for c in left]
                declared = [c.key for c in ev.plan.resource_changes if c.action is not ResourceAction.DESTROY]
                assert declared == [], [f"{c.key}: {c.reason}" for c in ev.plan.resource_changes]
        finally:
            stateful_stats.CURRENT = None
            self.engine.close()
            if self.other is not None:
                self.other.close()
            self.plugin.__exit__(None, None, None)
            shutil.rmtree(self.tmp, ignore_errors=True)


FINAL_HOLDS = frozenset({model.Hold.DENIED, model.Hold.PLAN_DENIED, model.Hold.BAD_VERSION, model.Hold.REJECTED})
"""Holds no further round releases: a policy's denial, a version that failed, a refused approval."""


MUST_REACH = frozenset({
    "rename the cluster (stack)", "move to another account", "move to another provider", "unknown provider",
    "unknown account", "rename the spec file (.yml/.YAML)", "crash in the middle of a pass", "restart",
    "held: wave", "skipped: stalled", "spec problem: unknown provider",
    "fix-forward commit", "execution rolled_back", "declare a balancer", "rename the balancer",
    "stop using and remove the balancer", "change the health check or the rules", "edit a resource by hand",
    "resources created", "resources destroyed", "held: depends_on", "held: soak", "held: env_approval",
    "held: bad_version", "flow: entered prod", "strategy: highlander", "strategy: rolling_red_black",
    "strategy: canary_pass", "strategy: canary_fail", "strategy: rolling_approval", "strategy: canary_rolling",
    "held: approval", "approve a manual judgment", "canary analysis passed", "canary analysis failed",
    "two replicas", "a pass of the second replica", "restart of the second replica",
    "skipped: image", "baked: r2 after r1", "highlander execution succeeded", "rolling execution succeeded",
    "freed resource destroyed after its groups: succeeded",
    "a decision reused", "status stamped, not rewritten", "a cluster's change reused"})
"""Scenario kinds the directed sequences must reach: the invariants are only as good as the states they saw.
("held: replacement", a destroy waiting for its cluster's replacement to serve, is shown only when a pass
records status while the daemon's rollout thread is still creating the replacement: thread timing, so not
required here; random runs reach it, and tests/core/test_planner_safety.py holds it every run.)"""

Move = tuple[str, dict[str, Any]]
ONE_REPLICA: tuple[Move, ...] = (
    ("deploy", {"image": "app-2", "passes": 2}),
    ("reconcile", {"passes": 2, "on": [0, 0, 0]}),
    ("change_strategy", {"strategy": "highlander", "passes": 1}),
    ("deploy", {"image": "app-3", "passes": 2}),
    ("change_strategy", {"strategy": "rolling_red_black", "passes": 1}),
    ("deploy", {"image": "app-1", "passes": 2}),
    ("change_strategy", {"strategy": "canary_pass", "passes": 1}),
    ("deploy", {"image": "app-2", "passes": 2}),
    ("time_passes", {"seconds": 10}),
    ("reconcile", {"passes": 3, "on": [0, 0, 0]}),
    ("change_strategy", {"strategy": "canary_fail", "passes": 1}),
    ("deploy", {"image": "app-3", "passes": 2}),
    ("time_passes", {"seconds": 10}),
    ("reconcile", {"passes": 3, "on": [0, 0, 0]}),
    # images never deployed before, so these deploy by their strategy (a retained group would come back instead)
    ("change_strategy", {"strategy": "rolling_approval", "passes": 1}),
    ("deploy", {"image": "app-4", "passes": 2}),
    ("approve_what_waits", {}),
    ("reconcile", {"passes": 2, "on": [0, 0, 0]}),
    ("change_strategy", {"strategy": "canary_rolling", "passes": 1}),
    ("deploy", {"image": "app-5", "passes": 2}),
    ("reconcile", {"passes": 2, "on": [0, 0, 0]}),
    ("change_strategy", {"strategy": "red_black", "passes": 1}),
    ("a_bad_day", {}),
    ("reconcile", {"passes": 2, "on": [0, 0, 0]}),
    ("deploy", {"image": "app-1", "passes": 2}),  # a fix-forward
    ("rename_cluster", {"stack": "web", "passes": 2}),
    ("move", {"where": ("local", "second"), "passes": 2}),
    ("move", {"where": (othercloud.NAME, "other"), "passes": 2}),
    ("name_something_unknown", {"where": ("nosuchcloud", "default"), "passes": 1}),
    ("name_something_unknown", {"where": ("local", "nosuch"), "passes": 1}),
    ("move", {"where": ("local", "default"), "passes": 2}),
    ("rename_file", {"name": "app.yml", "passes": 1}),
    ("crash_mid_pass", {"steps": 2}),
    ("declare_or_remove_a_balancer", {"name": "app-web", "passes": 2}),
    ("change_health_check_or_rules", {"path": "/ready", "ports": (443, 8443), "passes": 2}),
    ("edit_a_resource_by_hand", {"path": "/by-hand", "port": 22}),
    ("reconcile", {"passes": 1, "on": [0, 0, 0]}),
    ("rename_the_balancer", {"passes": 2}),
    ("reconcile", {"passes": 2, "on": [0, 0, 0]}),
    ("declare_or_remove_a_balancer", {"name": "", "passes": 2}),
    ("reconcile", {"passes": 2, "on": [0, 0, 0]}),
    ("promote_flow", {"version": "2", "soak": 60, "approval": True, "passes": 2}),
    ("time_passes", {"seconds": 600}),
    ("reconcile", {"passes": 1, "on": [0, 0, 0]}),
    ("approve_flow", {}),
    ("reconcile", {"passes": 2, "on": [0, 0, 0]}),
    ("promote_flow", {"version": FLOW_BAD, "soak": 0, "approval": False, "passes": 2}),
    ("time_passes", {"seconds": 60}),
    ("reconcile", {"passes": 3, "on": [0, 0, 0]}),
    ("release_or_bake", {"what": "release 2", "passes": 1}),
    ("release_or_bake", {"what": "bake r1", "passes": 2}),
    ("release_or_bake", {"what": "bake r2", "passes": 2}),
    ("reconcile", {"passes": 2, "on": [0, 0, 0]}),
)
TWO_REPLICAS: tuple[Move, ...] = (
    ("deploy", {"image": "app-2", "passes": 1}),
    ("reconcile", {"passes": 3, "on": [1, 0, 1]}),
    ("rename_cluster", {"stack": "api", "passes": 1}),  # which replica runs what is drawn by their ids
    ("move", {"where": ("local", "second"), "passes": 1}),
    ("reconcile", {"passes": 3, "on": [0, 0, 1]}),
    ("restart_the_second_replica", {"passes": 1}),
    ("restart", {}),
    ("reconcile", {"passes": 2, "on": [1, 0, 0]}),
)
DIRECTED: tuple[tuple[dict[str, Any], tuple[Move, ...]], ...] = (
    ({"daemon": False, "replicas": 1}, ONE_REPLICA), ({"daemon": True, "replicas": 2}, TWO_REPLICAS))
"""Operator sequences written out, each move one the random test also draws: together they reach every kind
in ``MUST_REACH`` on every run (random sequences of 2,000 steps reach most, but not all, every time)."""
INVARIANTS = ("invariants_hold", "a_reused_decision_is_the_one_made_afresh", "status_shows_the_last_evaluation")


@contextmanager
def _prometheus_and_spies() -> Iterator[None]:
    """A real Prometheus serving ``canary_errors`` over the fake clock's days, and the creation-time checks."""
    t0 = clock_mod.FakeClock().now()
    with prometheus_server.backfilled(Path(tempfile.mkdtemp(dir=_memory_dir())) / "prom",
                                      {"canary_errors": {"any": (0.0, 0.0)}}, now=t0, before=600,
                                      after=10 * 86400, every=60) as url, _watch_waves():
        PROMETHEUS["url"] = url
        yield


def test_directed_sequences_reach_every_required_kind_and_keep_every_invariant(record_property: Any) -> None:
    start, before = stateful_stats.STEPS, dict(stateful_stats.KINDS)
    with _prometheus_and_spies():
        for init, moves in DIRECTED:
            machine, at = Fleet(), "the start"
            try:
                machine.choose_how_passes_run(**init)
                for name in INVARIANTS:
                    getattr(machine, name)()
                for i, (move, args) in enumerate(moves):
                    at = f"move {i}, {move}({args})"
                    getattr(machine, move)(**args)
                    for name in INVARIANTS:
                        getattr(machine, name)()
            except BaseException as exc:
                exc.add_note(f"at {at} of the sequence for {init}")
                with contextlib.suppress(BaseException):
                    machine.teardown()
                raise
            machine.teardown()
    kinds = {k: n - before.get(k, 0) for k, n in stateful_stats.KINDS.items() if n > before.get(k, 0)}
    record_property("stateful", {"steps": stateful_stats.STEPS - start, "examples": len(DIRECTED), "kinds": kinds})
    reached = set(kinds)
    assert sorted(MUST_REACH - reached) == [], "kinds the directed sequences no longer reach"


@pytest.mark.timeout(max(300, TARGET // 4))
def test_random_operator_sequences_keep_every_safety_invariant(record_property: Any) -> None:
    target = TARGET
    phases = [Phase.explicit, Phase.reuse, Phase.generate]
    if os.environ.get(ENV_SHRINK) == "1":
        phases.append(Phase.shrink)
    start, examples, before = stateful_stats.STEPS, stateful_stats.EXAMPLES, dict(stateful_stats.KINDS)
    with _prometheus_and_spies():
        while (done := stateful_stats.STEPS - start) < target:
            left = max(target - done, STEPS_PER_EXAMPLE * 4)
            run_state_machine_as_test(Fleet, settings=settings(
                max_examples=max(2, math.ceil(left / STEPS_PER_EXAMPLE * 1.2)),
                stateful_step_count=STEPS_PER_EXAMPLE, deadline=None, database=None, phases=phases,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
    # the figures travel with the test's report, so the summary prints them under pytest-xdist too
    kinds = {k: n - before.get(k, 0) for k, n in stateful_stats.KINDS.items() if n > before.get(k, 0)}
    record_property("stateful", {"steps": stateful_stats.STEPS - start, "examples": stateful_stats.EXAMPLES - examples,
                                 "kinds": kinds})
    assert stateful_stats.STEPS - start >= target


def _check_promotion(machine: Fleet, prov: local_mod.LocalProvider, request: provider_base.CreateRequest) -> None:
    """prod gets a version only after it passed test's constraints: served there, soaked, approved, never bad."""
    version = request.launch.image.removeprefix("flow-")
    assert version != FLOW_BAD, f"{request.name}: the version that fails in test reached prod"
    serving = [g for g in prov.list_server_groups("r1")
               if g.cluster == "flow-test" and g.launch.image == request.launch.image]
    assert planner.serves(serving, healthy_percent=100) or version in machine.flow_served, (
        f"{request.name} got version {version} before it served in test")
    rules = machine.flow_rules.get(version, machine.flow if machine.flow.version == version else Flow(version))
    facts = {(f["environment"], f["version"], f["kind"]): f for f in machine.engine.store.env_facts("flow")}
    healthy = facts.get(("test", version, "healthy"))
    assert healthy is not None, f"{request.name}: no durable record of {version} healthy in test"
    assert healthy["at"] + rules.soak_s <= machine.clock.now() + 1e-6, (
        f"{request.name}: version {version} entered prod before its {rules.soak_s}s soak in test ended")
    if rules.approval:
        assert version in machine.approved, f"{request.name}: version {version} entered prod without approval"
    stateful_stats.KINDS["flow: entered prod"] += 1


class _Digests:
    """A ``Request.reuse`` that never has an answer: it keeps the digest it was asked last."""

    def __init__(self) -> None:
        self.last: str | None = None

    def __call__(self, digest: str) -> object | None:
        self.last = digest
        return None


def _memory_dir() -> str | None:
    """A RAM-backed temporary directory where there is one: SQLite and Git writes cost no disk."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


@contextmanager
def _watch_waves() -> Iterator[None]:
    """Check every group the providers create: a later wave's region only gets a spec hash that served
    in every earlier wave, observed now or at some earlier step (a spy: the real method runs)."""
    original = local_mod.LocalProvider.create_server_group
    put, destroy = local_mod.LocalProvider.put_resource, local_mod.LocalProvider.destroy_resource
    analyze = canary_runtime.Analyzer.run

    def run_analysis(analyzer: canary_runtime.Analyzer, change: model.Change, step: model.Step) -> None:
        try:
            analyze(analyzer, change, step)
        except canary_runtime.AnalysisFailed:
            stateful_stats.KINDS["canary analysis failed"] += 1
            raise
        stateful_stats.KINDS["canary analysis passed"] += 1

    def put_resource(prov: local_mod.LocalProvider, request: provider_base.ResourceRequest) -> None:
        put(prov, request)
        stateful_stats.KINDS["resources updated" if request.update else "resources created"] += 1

    def destroy_resource(prov: local_mod.LocalProvider, region: str, kind: Kind, name: str) -> None:
        users = [g.name for g in prov.list_server_groups(region)
                 if name in (g.launch.load_balancers if kind is Kind.LOAD_BALANCER else g.launch.security_groups)]
        assert not users, f"{kind.label} {name} in {region} destroyed while {users} use it"
        destroy(prov, region, kind, name)
        stateful_stats.KINDS["resources destroyed"] += 1

    def create(prov: local_mod.LocalProvider, request: provider_base.CreateRequest) -> model.ServerGroup:
        live = {(r.kind, r.name) for r in prov.list_resources(request.region)}
        needed = [(Kind.LOAD_BALANCER, n) for n in request.launch.load_balancers] + [
            (Kind.SECURITY_GROUP, n) for n in request.launch.security_groups]
        missing = [n for n in needed if n not in live]
        assert not missing, f"{request.name} in {request.region} created before {missing} existed"
        machine = stateful_stats.CURRENT
        if machine is not None and request.cluster == "flow-prod":
            _check_promotion(machine, prov, request)
        if machine is not None and request.cluster == "baked-main":
            version = request.launch.image.rsplit("-", 1)[0]
            assert request.launch.image in machine.baked[request.region], (
                f"{request.name} in {request.region} created from {request.launch.image}, not baked there")
            if request.region == "r2":
                r1 = [g for g in prov.list_server_groups("r1") if g.cluster == request.cluster]
                assert any(i.startswith(f"{version}-") for i in machine.baked_served) or any(
                    g.launch.image.startswith(f"{version}-") for g in r1 if planner.serves([g], healthy_percent=100)
                ), f"{request.name} got {version} in r2 before it served in r1"
                stateful_stats.KINDS["baked: r2 after r1"] += 1
        elif machine is not None and request.region != "r1":
            now = planner.serves([g for g in prov.list_server_groups("r1") if g.cluster == request.cluster],
                                 healthy_percent=100, spec_hash=request.spec_hash)
            key = (prov.name, prov.account, request.cluster, "r1", request.spec_hash)
            assert now or key in machine.succeeded, (
                f"{request.name} in {request.region} got spec {request.spec_hash} before it succeeded in r1")
        return original(prov, request)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(local_mod.LocalProvider, "create_server_group", create)
        patch.setattr(local_mod.LocalProvider, "put_resource", put_resource)
        patch.setattr(local_mod.LocalProvider, "destroy_resource", destroy_resource)
        patch.setattr(canary_runtime.Analyzer, "run", run_analysis)
        yield

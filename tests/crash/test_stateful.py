"""Random operator sequences keep the safety invariants (Hypothesis, stateful).

The machine commits what operators commit in their first weeks (new images, broken images, fix-forward
commits, cluster renames, moves between accounts and providers, unknown providers and accounts, the deployment
strategy (red/black, highlander, rolling red/black) drawn at random, spec files renamed to
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

``RECONCILER_STATEFUL_STEPS`` sets how many steps run (default 2,000, what CI runs); the counts of
steps and scenario kinds are printed in pytest's summary.
"""

from __future__ import annotations

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
from reconciler.core.resources import Kind, ResourceAction
from reconciler.runtime import engine as engine_mod
from reconciler.runtime import executor as executor_mod
from reconciler.runtime import status as status_mod
from reconciler.state import keys
from tests import othercloud
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
}


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
        return (self.file is not None and self.image != BAD and self.where in WHERE and self.regions == REGIONS)


class Fleet(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="reconciler-stateful-", dir=_memory_dir()))
        self.plugin = othercloud.registered(self.tmp / "plugins")
        self.plugin.__enter__()
        self.repo = DesiredRepo(self.tmp / "desired")
        self.cfg_path = write_config(
            self.tmp / "config.yaml", self.repo.path, self.tmp / "state", prune=True,
            providers={"local": {"accounts": {"default": {}, "second": {}}},
                       othercloud.NAME: {"accounts": {"other": {}}}},
            execution={"poll_health": "1s", "retry_backoff": "10s", "max_attempts": 2, "step_backoff": "0s"})
        self.cfg = config_mod.load_config(self.cfg_path)
        self.clock = clock_mod.FakeClock()
        self.want = Want()
        self.history: list[tuple[str, Want]] = []
        self.served: set[tuple[str, str]] = set()
        self.succeeded: set[tuple[str, str, str, str, str]] = set()  # provider, account, cluster, region, hash
        self.paused = False
        self.background = False
        self.checked = False
        self.repo.write("apps/keep.yaml", app_spec("keep", regions=REGIONS))
        self.flow = Flow()
        self.flow_rules: dict[str, Flow] = {}  # version -> the commit that last declared it
        self.approved: set[str] = set()
        self.flow_served: dict[str, set[str]] = {}  # version -> spec hashes of flow-test that served it
        self.repo.write("apps/flow.yaml", self.flow.spec())
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

    @initialize(daemon=st.booleans())
    def choose_how_passes_run(self, daemon: bool) -> None:
        """The daemon runs rollouts in worker threads (a destroy waits a pass for its replacement);
        ``run --once`` and ``apply`` run them in the pass (the destroy is ordered after it)."""
        self.background = daemon
        self.engine.close()
        self.engine = self._engine()
        stateful_stats.KINDS["daemon passes" if daemon else "run --once passes"] += 1

    def _engine(self) -> engine_mod.Engine:
        return engine_mod.Engine(self.cfg, clock=self.clock, background=self.background)

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

    def _pass(self, kind: str) -> None:
        result = self.engine.reconcile(reason="test")
        self.engine.wait(timeout=60)
        stateful_stats.KINDS[kind] += 1
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
        """An operator approves the resource changes waiting for one (narrowed ingress)."""
        status = self.engine.store.get(keys.STATUS) or {}
        for rc in status.get("resource_changes", []):
            if rc["verdict"] == "approve":
                try:
                    self.engine.approve(rc["change_id"], by="test")
                except errors.ReconcilerError:
                    continue  # the plan moved on since the status was saved
                stateful_stats.KINDS["approve a narrowed ingress"] += 1

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

    @rule()
    def approve_flow(self) -> None:
        if not self.flow.approval:
            return
        self.engine.decide_environment("flow", "prod", self.flow.version, "approved", by="test")
        self.approved.add(self.flow.version)
        stateful_stats.KINDS["flow: approve"] += 1

    @rule(passes=st.integers(1, 3))
    def reconcile(self, passes: int) -> None:
        for _ in range(passes):
            self._pass("a reconcile pass")

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

        def run_step(ex, provider, change, step):  # type: ignore[no-untyped-def]
            counter["n"] += 1
            if counter["n"] > steps:
                ex.stopping.set()
                raise executor_mod.Interrupted("crash")
            return original(ex, provider, change, step)

        executor_mod.Executor._run_step = run_step  # type: ignore[method-assign]
        try:
            self._pass("crash in the middle of a pass")
        finally:
            executor_mod.Executor._run_step = original  # type: ignore[method-assign]
        self.restart()

    @rule()
    def restart(self) -> None:
        self.engine.close()
        self.engine = self._engine()
        stateful_stats.KINDS["restart"] += 1

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
        hits, cluster_hits = pipeline.evaluations.hits, pipeline.clusters.hits
        reused = pipeline.evaluate(want)
        if pipeline.evaluations.hits > hits:
            stateful_stats.KINDS["a decision reused"] += 1
        elif pipeline.clusters.hits > cluster_hits:  # decided anew, with clusters' changes of earlier passes
            stateful_stats.KINDS["a cluster's change reused"] += 1
        else:
            return  # everything decided afresh just now: nothing reused to check
        saved = pipeline.evaluations, pipeline.clusters
        pipeline.evaluations, pipeline.clusters = memo.LastResult(), memo.PerKey()
        try:
            fresh = pipeline.evaluate(want)
        finally:
            pipeline.evaluations, pipeline.clusters = saved
        assert (reused.plan, reused.runnable, reused.held, reused.outcome.skipped) == \
            (fresh.plan, fresh.runnable, fresh.held, fresh.outcome.skipped), "a reused decision went stale"

    @invariant()
    def status_shows_the_last_evaluation(self) -> None:
        """A pass that reused its evaluation wrote only a stamp: status is still that evaluation's document."""
        store, last = self.engine.store, self.engine.pipeline._last
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
            if self.paused:
                self.engine.resume("app", by="test")
            if self.flow.approval:
                self.engine.decide_environment("flow", "prod", self.flow.version, "approved", by="test")
                self.approved.add(self.flow.version)  # the spy on prod's creations checks against this
            for _ in range(5):
                self.clock.advance(3600)
                self.approve_what_waits()
                self.engine.reconcile(reason="final")
                self.engine.wait(timeout=60)
                ev = self.engine.plan()
                if not ev.runnable and not ev.resources_runnable and not [
                        c for c, h in ev.resources_held if h.kind is model.Hold.APPROVAL]:
                    break
            runnable = [f"{c.key} {c.action.value}: {c.reason}" for c in (*ev.runnable, *ev.resources_runnable)]
            assert runnable == [], runnable
            if self.want.converges:
                left = [c for c in ev.plan.changes if c.application != "flow" or self.flow.version != FLOW_BAD]
                assert [c.key for c in left] == [], [f"{c.key}: {c.reason}" for c in left]
                declared = [c.key for c in ev.plan.resource_changes if c.action is not ResourceAction.DESTROY]
                assert declared == [], [f"{c.key}: {c.reason}" for c in ev.plan.resource_changes]
        finally:
            stateful_stats.CURRENT = None
            self.engine.close()
            self.plugin.__exit__(None, None, None)
            shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.mark.timeout(max(300, TARGET // 4))
def test_random_operator_sequences_keep_every_safety_invariant(record_property: Any) -> None:
    target = TARGET
    phases = [Phase.explicit, Phase.reuse, Phase.generate]
    if os.environ.get(ENV_SHRINK) == "1":
        phases.append(Phase.shrink)
    start = stateful_stats.STEPS
    with _watch_waves():
        while stateful_stats.STEPS - start < target:
            left = target - (stateful_stats.STEPS - start)
            run_state_machine_as_test(Fleet, settings=settings(
                max_examples=max(2, math.ceil(left / STEPS_PER_EXAMPLE * 1.2)),
                stateful_step_count=STEPS_PER_EXAMPLE, deadline=None, database=None, phases=phases,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
    kinds = {k for k in stateful_stats.KINDS if stateful_stats.KINDS[k]}
    # the figures travel with the test's report, so the summary prints them under pytest-xdist too
    record_property("stateful", {"steps": stateful_stats.STEPS, "examples": stateful_stats.EXAMPLES,
                                 "kinds": dict(stateful_stats.KINDS)})
    assert stateful_stats.STEPS - start >= target
    must = {"rename the cluster (stack)", "move to another account", "move to another provider", "unknown provider",
            "unknown account", "rename the spec file (.yml/.YAML)", "crash in the middle of a pass", "restart",
            "held: wave", "held: replacement", "skipped: stalled", "spec problem: unknown provider",
            "fix-forward commit", "execution rolled_back", "declare a balancer", "rename the balancer",
            "stop using and remove the balancer", "change the health check or the rules", "edit a resource by hand",
            "resources created", "resources destroyed", "held: depends_on", "held: soak", "held: env_approval",
            "held: bad_version", "flow: entered prod", "strategy: highlander", "strategy: rolling_red_black",
            "status stamped, not rewritten", "a cluster's change reused"}
    assert must <= kinds, f"scenario kinds never reached: {sorted(must - kinds)}"


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
        if machine is not None and request.region != "r1":
            now = planner.serves([g for g in prov.list_server_groups("r1") if g.cluster == request.cluster],
                                 healthy_percent=100, spec_hash=request.spec_hash)
            key = (prov.name, prov.account, request.cluster, "r1", request.spec_hash)
            assert now or key in machine.succeeded, (
                f"{request.name} in {request.region} got spec {request.spec_hash} before it succeeded in r1")
        return original(prov, request)

    local_mod.LocalProvider.create_server_group = create  # type: ignore[method-assign]
    local_mod.LocalProvider.put_resource = put_resource  # type: ignore[method-assign]
    local_mod.LocalProvider.destroy_resource = destroy_resource  # type: ignore[method-assign]
    try:
        yield
    finally:
        local_mod.LocalProvider.create_server_group = original  # type: ignore[method-assign]
        local_mod.LocalProvider.put_resource = put  # type: ignore[method-assign]
        local_mod.LocalProvider.destroy_resource = destroy  # type: ignore[method-assign]

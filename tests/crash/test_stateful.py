"""Random operator sequences keep the safety invariants (Hypothesis, stateful).

The machine commits what operators commit in their first weeks (new images, broken images, fix-forward
commits, cluster renames, moves between accounts and providers, unknown providers and accounts, spec
files renamed to ``.yml``/``.YAML``/``.yaml.bak``, dropped regions, deleted and restored files, reverts),
and runs what happens to a daemon (passes, crashes mid-pass, restarts, time passing, pauses), on the
local provider and a second cloud registered as a plugin, with a fake clock. After every step:

* no application loses its last healthy enabled capacity in a region, unless its file was removed;
* no region of a later wave ever receives a spec hash that has not succeeded in every earlier wave
  (checked when each group is created);
* groups the reconciler does not own are untouched, and group names are unique.

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
from reconciler.config import settings as config_mod
from reconciler.core import clock as clock_mod
from reconciler.core import model, planner
from reconciler.runtime import engine as engine_mod
from reconciler.runtime import executor as executor_mod
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


@dataclasses.dataclass(frozen=True)
class Want:
    """What the machine has committed for the application ``app`` (``file`` None: removed)."""

    file: str | None = "app.yaml"
    image: str = "app-1"
    stack: str = ""
    where: tuple[str, str] = ("local", "default")
    regions: tuple[str, ...] = REGIONS

    def spec(self) -> str:
        later = ", ".join(self.regions[1:])
        extra = f"rollout: {{waves: [[{self.regions[0]}], [{later}]]}}\n"
        return app_spec("app", image=self.image, stack=self.stack, provider=self.where[0], account=self.where[1],
                        regions=self.regions, extra=extra)

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
        self.other: engine_mod.Engine | None = None  # a second replica on the same store (two-replica mode)
        self.checked = False
        self.repo.write("apps/keep.yaml", app_spec("keep", regions=REGIONS))
        self.repo.write("apps/policies.yaml", "defaults: {mass_deletion: {max_share: 1.0}}\n")
        self._commit("first")
        ctx = provider_context(self.cfg.state_url, self.cfg.state_dir, self.clock)
        self.providers = [(othercloud.OtherCloud if p == othercloud.NAME else local_mod.LocalProvider)(a, ctx)
                          for p, a in ACCOUNTS]
        self.providers[0].put_foreign_group("r1", FOREIGN, desired=2)
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
        engine.wait(timeout=60)
        stateful_stats.KINDS[kind] += 1
        for r in result.results:
            stateful_stats.KINDS[f"execution {r.state}"] += 1
        status = self.engine.store.get(engine_mod.KEY_STATUS) or {}
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

    def _forget_app(self) -> None:
        """Its file is removed: losing its capacity is allowed from now until it is back and serves."""
        self.served = {s for s in self.served if s[0] != "app"}

    # ------------------------------------------------------------------ the daemon's life

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
        now: set[tuple[str, str]] = set()
        for g in groups:
            if g.managed and planner.serves([g], healthy_percent=100):
                now.add((g.application, g.region))
                self.succeeded.add((g.provider, g.account, g.cluster, g.region, g.spec_hash))
        removed = self.want.file is None
        lost = {s for s in self.served - now if not (s[0] == "app" and removed)}
        assert not lost, f"lost the last serving capacity: {sorted(lost)} (commit {self.history[-1][0][:8]})"
        self.served |= {s for s in now if not (s[0] == "app" and removed)}

    def teardown(self) -> None:
        """Converge: nothing runnable is left; a good, complete desired state plans nothing at all."""
        try:
            if self.paused:
                self.engine.resume("app", by="test")
            for _ in range(5):
                self.clock.advance(3600)
                for engine in [self.engine] if self.other is None else [self.engine, self.other]:
                    engine.reconcile(reason="final")
                    engine.wait(timeout=60)
                ev = self.engine.plan()
                if not ev.runnable:
                    break
            runnable = [f"{c.key} {c.action.value}: {c.reason}" for c in ev.runnable]
            assert runnable == [], runnable
            if self.want.converges:
                assert [c.key for c in ev.plan.changes] == [], [f"{c.key}: {c.reason}" for c in ev.plan.changes]
        finally:
            stateful_stats.CURRENT = None
            self.engine.close()
            if self.other is not None:
                self.other.close()
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
            "fix-forward commit", "execution rolled_back", "two replicas", "a pass of the second replica",
            "restart of the second replica"}
    assert must <= kinds, f"scenario kinds never reached: {sorted(must - kinds)}"


def _memory_dir() -> str | None:
    """A RAM-backed temporary directory where there is one: SQLite and Git writes cost no disk."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


@contextmanager
def _watch_waves() -> Iterator[None]:
    """Check every group the providers create: a later wave's region only gets a spec hash that served
    in every earlier wave, observed now or at some earlier step (a spy: the real method runs)."""
    original = local_mod.LocalProvider.create_server_group

    def create(prov: local_mod.LocalProvider, request: provider_base.CreateRequest) -> model.ServerGroup:
        machine = stateful_stats.CURRENT
        if machine is not None and request.region != "r1":
            now = planner.serves([g for g in prov.list_server_groups("r1") if g.cluster == request.cluster],
                                 healthy_percent=100, spec_hash=request.spec_hash)
            key = (prov.name, prov.account, request.cluster, "r1", request.spec_hash)
            assert now or key in machine.succeeded, (
                f"{request.name} in {request.region} got spec {request.spec_hash} before it succeeded in r1")
        return original(prov, request)

    local_mod.LocalProvider.create_server_group = create  # type: ignore[method-assign]
    try:
        yield
    finally:
        local_mod.LocalProvider.create_server_group = original  # type: ignore[method-assign]

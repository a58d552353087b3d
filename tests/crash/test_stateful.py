"""Random sequences of commits, health failures and crashes keep the invariants (Hypothesis, stateful)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pygit2
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from reconciler import clock as clock_mod
from reconciler import config as config_mod
from reconciler import engine as engine_mod
from reconciler import executor as executor_mod
from reconciler import model
from tests.conftest import DesiredRepo, app_spec, write_config

REGIONS = ("r1", "r2")


class Fleet(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="reconciler-stateful-"))
        self.repo = DesiredRepo(self.tmp / "desired")
        self.cfg_path = write_config(self.tmp / "config.yaml", self.repo.path, self.tmp / "state", prune=True,
                                     execution={"poll_health": "1s", "retry_backoff": "0s", "max_attempts": 2,
                                                "step_backoff": "0s"})
        self.clock = clock_mod.FakeClock()
        self.history: list[str] = []
        self.served: set[tuple[str, str]] = set()
        self.present = False
        self.image = "app-1"
        self._commit("app-1")
        self.engine = self._engine()

    def _engine(self) -> engine_mod.Engine:
        return engine_mod.Engine(config_mod.load_config(self.cfg_path), clock=self.clock)

    def _commit(self, image: str | None, desired: int = 2) -> None:
        if image is None:
            if not self.present:
                return
            self.repo.remove("apps/app.yaml").write("apps/keep.yaml", app_spec("keep", regions=("r1",)))
            self.present = False
        else:
            self.repo.write("apps/app.yaml", app_spec("app", image=image, regions=REGIONS, desired=desired))
            self.repo.write("apps/keep.yaml", app_spec("keep", regions=("r1",)))
            self.present = True
            self.image = image
        self.history.append(self.repo.commit(f"image {image}"))

    @rule(image=st.sampled_from(["app-1", "app-2", "app-3"]), desired=st.integers(1, 3))
    def deploy(self, image: str, desired: int) -> None:
        self._commit(image, desired)

    @rule()
    def deploy_bad_image(self) -> None:
        self._commit("app-9-bad")

    @precondition(lambda self: len(self.history) >= 2)
    @rule()
    def revert(self) -> None:
        apps = self.repo.repo[self.history[-2]].peel(pygit2.Commit).tree["apps"].peel(pygit2.Tree)
        for name in ("app.yaml", "keep.yaml"):
            path = self.repo.path / "apps" / name
            if name in apps:
                path.write_bytes(apps[name].peel(pygit2.Blob).data)
            elif path.exists():
                path.unlink()
        self.present = (self.repo.path / "apps" / "app.yaml").exists()
        self.history.append(self.repo.commit("revert"))

    @rule()
    def delete_app(self) -> None:
        self._commit(None)

    @rule()
    def reconcile(self) -> None:
        self.engine.reconcile(reason="test")

    @rule(steps=st.integers(1, 6))
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
            self.engine.reconcile(reason="crash")
        finally:
            executor_mod.Executor._run_step = original  # type: ignore[method-assign]
        self.engine.close()
        self.engine = self._engine()

    @invariant()
    def every_serving_region_keeps_capacity_and_names_are_unique(self) -> None:
        live = self.engine.read_live(None)
        by_region: dict[tuple[str, str], list] = {}
        for g in live.groups:
            by_region.setdefault((g.cluster, g.region), []).append(g)
        for (cluster, region), groups in by_region.items():
            names = [g.name for g in groups]
            assert len(names) == len(set(names))
            serving = any(g.enabled and g.healthy for g in groups)
            if cluster == "keep-main" and (cluster, region) in self.served:
                assert serving, f"{cluster} {region} served before and lost its capacity"
            if serving:
                self.served.add((cluster, region))

    def teardown(self) -> None:
        """Converge; then a good desired state plans nothing (a bad one is stalled, never half-applied)."""
        for _ in range(4):
            self.engine.reconcile(reason="final")
        ev = self.engine.plan()
        pending = [c for c in ev.plan.changes if c.verdict is not model.Verdict.DENY]  # e.g. mass-deletion
        if not self.image.endswith("-bad"):
            assert pending == [], [f"{c.key} {c.action.value}: {c.reason}" for c in pending]
        self.engine.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


TestFleet = Fleet.TestCase
TestFleet.settings = settings(max_examples=15, stateful_step_count=10, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow])

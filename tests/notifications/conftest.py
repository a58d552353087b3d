"""A delivery rig: a real SQLite store, the real outbox, feeder and target workers, and a fake clock.

History rows come from the real ``DeployTracker`` fed with planner-shaped
changes, so the tests read what the executor writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.config import settings as config_mod
from reconciler.core import clock as clock_mod
from reconciler.core import model
from reconciler.notifications import history, outbox, worker
from reconciler.runtime import executor
from reconciler.state import store as store_mod
from specs import policy_file
from tests.conftest import write_config
from tests.daemon.conftest import daemon_factory  # noqa: F401 - the fixture, for test_daemon.py
from tests.notifications.endpoints import endpoint  # noqa: F401 - the fixture
from tests.render import factory


@dataclass
class Rig:
    store: store_mod.Store
    clock: clock_mod.FakeClock
    config: config_mod.Config
    box: outbox.Outbox
    feeder: worker.Feeder
    workers: dict[str, worker.TargetWorker]
    tracker: history.DeployTracker

    def deploy(self, app: str = "checkout", *, image: str = "checkout-2.0", regions: tuple[str, ...] = ("us-east-1",),
               fail: str = "", **spec_kw: Any) -> list[model.Change]:
        """Record a deploy the way the executor does: started, then each rollout's results."""
        s = factory.spec(app, image=image, regions=regions, **spec_kw)
        changes = [factory.replace(s, factory.group(factory.spec(app, regions=regions), r, 0)) for r in regions]
        self.tracker.started("plan-1", changes)
        results = []
        for c in changes:
            if fail and c.region == fail:
                error = f"{c.desired_server_group} in {c.region}: 0 of 3 instances healthy after 10m"
                results.append(executor.ExecutionResult(c, "ex1", model.ExecState.ROLLED_BACK, error,
                                                           step="wait_healthy"))
            else:
                results.append(executor.ExecutionResult(c, "ex1", model.ExecState.SUCCEEDED))
        self.tracker.rollout_ended("plan-1", changes, results)
        return changes

    def feed(self) -> int:
        total = 0
        while n := self.feeder.step():
            total += n
        return total

    def drain(self, name: str, *, steps: int = 200, until: Callable[[], bool] | None = None,
              max_wait: float = 1e9) -> int:
        """Step one target's worker, moving the fake clock by each wait; returns the steps taken."""
        w = self.workers[name]
        for i in range(steps):
            if until is not None and until():
                return i
            if until is None and self.box.head(name) is None:
                return i
            self.clock.advance(min(w.step(), max_wait))
        raise AssertionError(f"{name}: not done after {steps} steps")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(notifications: dict[str, Any], *, policies: str = "", criticality: dict[str, str] | None = None,
             state: str | None = None) -> Rig:
        extra = {"state": state} if state else {}
        cfg_file = write_config(tmp_path / "config.yaml", tmp_path / "desired", tmp_path / "state",
                                notifications=notifications, **extra)
        cfg = config_mod.load_config(cfg_file)
        store = store_mod.Store(cfg.state_url)
        clock = clock_mod.FakeClock()
        box = outbox.Outbox(store)
        pol, problems = policy_file.load_policy_file(policies, file="apps/policies.yaml")
        assert not problems, problems
        feeder = worker.Feeder(store, box, cfg.notifications, lambda: (pol, criticality or {}), clock)
        hub_senders = worker._build_senders(cfg.notifications)
        workers = {t.name: worker.TargetWorker(t, hub_senders[t.name], store, box, cfg.notifications.delivery, clock)
                   for t in cfg.notifications.targets}
        r = Rig(store, clock, cfg, box, feeder, workers, history.DeployTracker(store, clock))
        r.feeder.step()  # the first step only sets the cursor: earlier history is not announced
        made.append(r)
        return r

    yield make
    for r in made:
        r.store.close()


def dump(doc: Any) -> str:
    return yaml.safe_dump(doc)

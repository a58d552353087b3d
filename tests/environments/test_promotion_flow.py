"""A version flows test -> staging -> prod on the local provider, judged from durable facts, with a fake clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciler.config import settings as config_mod
from reconciler.core import clock as clock_mod
from reconciler.core import errors, model
from reconciler.runtime import engine as engine_mod
from reconciler.runtime import pipeline
from tests.conftest import DesiredRepo, write_config

MONDAY_NOON = 1_700_481_600.0  # 2023-11-20 12:00 UTC, a Monday


def pipeline_spec(*, soak: str = "30m", approval: str = "approval: {timeout: 2h}", extra_prod: str = "") -> str:
    """test -> staging -> prod, each soaking ``soak`` after the one before; prod in two regions."""

    def env(name: str, regions: str, *lines: str) -> str:
        head = [f"  - name: {name}", *(f"    {line}" for line in lines if line), "    clusters:"]
        cluster = [f"      - stack: {name}", "        provider: local", "        account: default",
                   f"        regions: {regions}", '        image: "checkout-{version}"',
                   "        instance_type: m5.large", "        capacity: {min: 1, desired: 1, max: 2}",
                   "        health: {timeout: 5s}"]
        return "\n".join(head + cluster) + "\n"

    return ("application: checkout\nowner: team@example.com\nversion_from: checkout.version\nenvironments:\n"
            + env("test", "[us-east-1]")
            + env("staging", "[us-east-1]", f"soak: {soak}")
            + env("prod", "[us-east-1, eu-west-1]", f"soak: {soak}", approval, extra_prod))


class Pipeline:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.repo = DesiredRepo(tmp_path / "desired")
        self.state = tmp_path / "state"
        self.cfg = write_config(tmp_path / "config.yaml", self.repo.path, self.state)
        self.clock = clock_mod.FakeClock(MONDAY_NOON)
        self.engine = self._engine()

    def _engine(self) -> engine_mod.Engine:
        return engine_mod.Engine(config_mod.load_config(str(self.cfg)), clock=self.clock)

    def restart(self) -> None:
        self.engine.close()
        self.engine = self._engine()

    def commit(self, version: str, spec: str | None = None) -> None:
        self.repo.write("apps/values.yaml", f'checkout:\n  version: "{version}"\n')
        self.repo.write("apps/checkout.yaml", spec or pipeline_spec())
        self.repo.commit(f"checkout {version}")

    def reconcile(self) -> pipeline.PassResult:
        """One pass, then the status refresh the daemon makes after its rollouts end."""
        result = self.engine.reconcile(reason="test")
        self.engine.refresh_status("rollout finished")
        return result

    def images(self, stack: str) -> set[str]:
        status = self.engine.status()
        return {g["image"] for g in status["server_groups"]
                if g["cluster"] == f"checkout-{stack}" and g["enabled"]}

    def envs(self) -> dict[str, dict[str, Any]]:
        return {e["name"]: e for e in self.engine.status()["pipelines"]["checkout"]["environments"]}

    def close(self) -> None:
        self.engine.close()


@pytest.fixture
def pipe(tmp_path: Path) -> Any:
    p = Pipeline(tmp_path)
    yield p
    p.close()


def test_a_version_flows_through_soak_and_approval_and_a_restart_keeps_the_soak(pipe: Pipeline) -> None:
    pipe.commit("1.0")
    pipe.reconcile()
    assert pipe.images("test") == {"checkout-1.0"}
    assert pipe.images("staging") == set()
    envs = pipe.envs()
    assert envs["test"]["state"] == "deployed"
    assert envs["staging"]["hold"]["kind"] == "soak"
    assert envs["staging"]["hold"]["until"] == MONDAY_NOON + 1800
    assert envs["prod"]["hold"]["kind"] == "depends_on"

    pipe.clock.advance(1000)
    pipe.restart()  # mid-soak: the soak's start is in the store
    pipe.reconcile()
    assert pipe.images("staging") == set()
    assert pipe.envs()["staging"]["hold"]["until"] == MONDAY_NOON + 1800

    pipe.clock.advance(800)
    pipe.reconcile()
    assert pipe.images("staging") == {"checkout-1.0"}
    pipe.clock.advance(1800)
    pipe.reconcile()
    prod = pipe.envs()["prod"]
    assert prod["hold"]["kind"] == "env_approval"
    assert prod["hint"] == "reconciler approve checkout --env prod --version 1.0"
    assert pipe.images("prod") == set()

    pipe.engine.decide_environment("checkout", "prod", "1.0", "approved", by="alice")
    pipe.reconcile()
    assert pipe.images("prod") == {"checkout-1.0"}
    assert {g["region"] for g in pipe.engine.status()["server_groups"] if g["cluster"] == "checkout-prod"} == {
        "us-east-1", "eu-west-1"}
    assert all(e["state"] == "deployed" for e in pipe.envs().values())


def test_a_failing_version_stops_in_test_is_marked_bad_and_a_fixed_one_flows_on(pipe: Pipeline) -> None:
    spec = pipeline_spec(soak="0s", approval="")
    pipe.commit("1.0", spec)
    pipe.reconcile()
    pipe.reconcile()
    pipe.reconcile()
    assert pipe.images("prod") == {"checkout-1.0"}

    pipe.commit("2.0-bad", spec)  # the local provider's unhealthy_images: "*-bad" never gets healthy
    pipe.reconcile()
    assert pipe.images("test") == {"checkout-1.0"}  # rolled back
    pipe.reconcile()
    envs = pipe.envs()
    assert envs["test"]["state"] == "failed"
    assert envs["test"]["bad_versions"] == ["2.0-bad"]
    assert envs["staging"]["hold"]["kind"] == "bad_version"
    assert envs["staging"]["state"] == "bad"
    assert "reconciler promote checkout" in envs["staging"]["hint"]
    assert pipe.images("staging") == {"checkout-1.0"}
    assert pipe.images("prod") == {"checkout-1.0"}
    held = {h["kind"] for h in pipe.engine.status()["held"]}
    assert "bad_version" in held

    pipe.commit("2.1", spec)
    for _ in range(3):
        pipe.reconcile()
    assert pipe.images("test") == {"checkout-2.1"}
    assert pipe.images("staging") == {"checkout-2.1"}
    assert pipe.images("prod") == {"checkout-2.1"}
    history = [e["kind"] for e in pipe.engine.store.history(limit=200)]
    assert "environment_bad" in history and "environment_healthy" in history


def test_allowed_times_hold_until_the_window_opens(pipe: Pipeline) -> None:
    spec = pipeline_spec(soak="0s", approval="",
                         extra_prod='allowed_times: [{days: [tue], from: "09:00", to: "17:00", timezone: UTC}]')
    pipe.commit("1.0", spec)
    pipe.reconcile()
    pipe.reconcile()
    prod = pipe.envs()["prod"]
    assert prod["hold"]["kind"] == "allowed_times"
    assert prod["hold"]["until"] == MONDAY_NOON + 21 * 3600  # Tuesday 09:00 UTC
    pipe.clock.advance(21 * 3600)
    pipe.reconcile()
    assert pipe.images("prod") == {"checkout-1.0"}


def test_an_approval_not_given_in_time_refuses_the_version_there(pipe: Pipeline) -> None:
    pipe.commit("1.0", pipeline_spec(soak="0s"))
    for _ in range(3):
        pipe.reconcile()
    assert pipe.envs()["prod"]["hold"]["kind"] == "env_approval"
    pipe.clock.advance(2 * 3600)
    pipe.reconcile()
    prod = pipe.envs()["prod"]
    assert prod["hold"]["kind"] == "rejected"
    assert prod["state"] == "bad"
    pipe.engine.decide_environment("checkout", "prod", "1.0", "approved", by="late")
    pipe.reconcile()
    assert pipe.images("prod") == {"checkout-1.0"}  # a late approval still counts: a person decided


def test_a_rejection_is_bound_to_its_version(pipe: Pipeline) -> None:
    pipe.commit("1.0", pipeline_spec(soak="0s"))
    for _ in range(3):
        pipe.reconcile()
    pipe.engine.decide_environment("checkout", "prod", "1.0", "rejected", by="bob", comment="not today")
    pipe.reconcile()
    assert pipe.envs()["prod"]["hold"]["kind"] == "rejected"
    pipe.engine.decide_environment("checkout", "prod", "1.1", "approved", by="alice")  # approved ahead of its arrival
    pipe.commit("1.1", pipeline_spec(soak="0s"))
    for _ in range(3):
        pipe.reconcile()
    assert pipe.images("prod") == {"checkout-1.1"}


def test_approving_an_unknown_environment_names_the_known_ones(pipe: Pipeline) -> None:
    pipe.commit("1.0")
    pipe.reconcile()
    with pytest.raises(errors.ReconcilerError, match=r"no environment named 'prdo'.*prod"):
        pipe.engine.decide_environment("checkout", "prdo", "1.0", "approved", by="alice")
    with pytest.raises(errors.ReconcilerError, match="no application named 'chekout'"):
        pipe.engine.decide_environment("chekout", "prod", "1.0", "approved", by="alice")
    with pytest.raises(errors.ReconcilerError, match="not a version"):
        pipe.engine.decide_environment("checkout", "prod", "1.0 beta", "approved", by="alice")
    assert model.Hold.ENV_APPROVAL.value == "env_approval"


def test_a_renamed_cluster_is_not_destroyed_while_its_replacement_waits_for_its_environment(tmp_path: Path) -> None:
    pipe = Pipeline(tmp_path)
    pipe.cfg = write_config(tmp_path / "config.yaml", pipe.repo.path, pipe.state, prune=True)
    pipe.restart()
    try:
        spec = pipeline_spec(soak="0s", approval="approval: true")
        pipe.commit("1.0", spec)
        for _ in range(3):
            pipe.reconcile()
        pipe.engine.decide_environment("checkout", "prod", "1.0", "approved", by="alice")
        pipe.reconcile()
        assert pipe.images("prod") == {"checkout-1.0"}

        # 1.1 and a new stack for prod in one commit: the new cluster waits for approval, the old one stays
        pipe.commit("1.1", spec.replace("- stack: prod", "- stack: live"))
        for _ in range(3):
            pipe.reconcile()
        status = pipe.engine.status()
        kinds = {h["key"].rsplit("/", 1)[-1]: h["kind"] for h in status["held"]}
        assert kinds.get("checkout-live") == "env_approval"
        assert kinds.get("checkout-prod") == "replacement"
        assert pipe.images("prod") == {"checkout-1.0"}

        pipe.engine.decide_environment("checkout", "prod", "1.1", "approved", by="alice")
        for _ in range(3):
            pipe.reconcile()
        assert pipe.images("live") == {"checkout-1.1"}
        assert pipe.images("prod") == set()
    finally:
        pipe.close()


def test_waiting_for_an_environment_approval_is_told_once_with_the_command(pipe: Pipeline) -> None:
    pipe.commit("1.0", pipeline_spec(soak="0s"))
    for _ in range(4):
        pipe.reconcile()
    waits = [e for e in pipe.engine.store.history(limit=200) if e["kind"] == "waiting_for_approval"]
    assert len(waits) == 1
    assert "reconciler approve checkout --env prod --version 1.0" in waits[0]["message"]

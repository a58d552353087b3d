"""The examples repository's environments: the spec the docs point at loads and flows test -> staging -> prod."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from reconciler.config import settings as config_mod
from reconciler.core import clock as clock_mod
from reconciler.runtime import engine as engine_mod
from specs import loader
from tests.conftest import ROOT, DesiredRepo, write_config


def test_the_examples_repository_has_a_pipeline_that_flows(tmp_path: Path) -> None:
    state = loader.load_directory(ROOT / "examples" / "desired-state")
    assert state.problems == ()
    payments = state.applications["payments"]
    assert [e.name for e in payments.environments] == ["test", "staging", "prod"]
    assert payments.version == "2.0"

    repo = DesiredRepo(tmp_path / "desired")
    shutil.copytree(ROOT / "examples" / "desired-state" / "apps", repo.path / "apps")
    repo.commit("examples")
    example = yaml.safe_load((ROOT / "examples" / "config.yaml").read_text())
    images = example["providers"]["local"]["accounts"]["default"]["images"]
    cfg = write_config(tmp_path / "config.yaml", repo.path, tmp_path / "state", providers={
        "local": {"accounts": {"default": {"boot_seconds": 0, "images": images}}}})
    clock = clock_mod.FakeClock()
    engine = engine_mod.Engine(config_mod.load_config(str(cfg)), clock=clock)
    try:
        for minutes in (0, 11, 11):
            clock.advance(minutes * 60)
            engine.reconcile()
            engine.refresh_status()
        engine.decide_environment("payments", "prod", "2.0", "approved", by="ops")
        engine.reconcile()
        engine.refresh_status()
        envs = engine.status()["pipelines"]["payments"]["environments"]
        looks = engine.automate()
    finally:
        engine.close()
    assert [(e["name"], e["state"]) for e in envs] == [("test", "deployed"), ("staging", "deployed"),
                                                       ("prod", "deployed")]
    prod = {r["region"]: r["serving"][0]["image"] for r in envs[2]["regions"]}
    assert prod == {"us-east-1": "payments-2.0-20261202", "eu-west-1": "payments-2.0-20261201"}, \
        "prod's pattern found the newest bake of each region"
    assert [(x.application, x.state, x.latest) for x in looks] == [("payments", "up_to_date", "2.0")], \
        "the example's automation finds 2.0 everywhere and Git already has it"

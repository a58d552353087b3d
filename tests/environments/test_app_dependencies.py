"""Dependencies between applications: a change waits for the other application's change there; cycles refused."""

from __future__ import annotations

import textwrap
from pathlib import Path

from reconciler.config import settings as config_mod
from reconciler.core import clock as clock_mod
from reconciler.runtime import engine as engine_mod
from specs import loader
from tests.conftest import DesiredRepo, write_config


def app(name: str, version: str, depends: str = "", image: str = "") -> str:
    return textwrap.dedent(f"""\
        application: {name}
        owner: team@example.com
        version: "{version}"
        {depends}
        environments:
          - name: prod
            clusters:
              - provider: local
                account: default
                regions: [us-east-1]
                image: "{image or name}-{{version}}"
                instance_type: m5.large
                capacity: {{min: 1, desired: 1, max: 2}}
                health: {{timeout: 1s}}
        """)


DEP = "depends_on: [{application: migrator, environment: prod}]"


def test_a_change_starts_only_after_the_other_applications_change_there_succeeded(tmp_path: Path) -> None:
    repo = DesiredRepo(tmp_path / "desired")
    repo.write("apps/migrator.yaml", app("migrator", "1-bad"))  # never healthy: the local provider's *-bad
    repo.write("apps/shop.yaml", app("shop", "1", DEP))
    repo.commit("both")
    cfg = write_config(tmp_path / "config.yaml", repo.path, tmp_path / "state")
    engine = engine_mod.Engine(config_mod.load_config(str(cfg)), clock=clock_mod.FakeClock())
    try:
        engine.reconcile()
        engine.refresh_status()
        status = engine.status()
        shop = [h for h in status["held"] if h["key"].endswith("/shop")]
        assert [h["kind"] for h in shop] == ["app_depends_on"]
        assert "waiting for migrator in prod: its version 1-bad failed there" in shop[0]["why"]
        assert not [g for g in status["server_groups"] if g["application"] == "shop"]

        repo.write("apps/migrator.yaml", app("migrator", "2"))
        repo.commit("migrator fixed")
        engine.reconcile()
        engine.refresh_status()
        engine.reconcile()
        engine.refresh_status()
        images = {g["image"] for g in engine.status()["server_groups"] if g["enabled"]}
    finally:
        engine.close()
    assert images == {"migrator-2", "shop-1"}


def load(tmp_path: Path, **files: str) -> list[str]:
    apps = tmp_path / "apps"
    apps.mkdir(exist_ok=True)
    for name, text in files.items():
        (apps / f"{name}.yaml").write_text(text, encoding="utf-8")
    return [str(p) for p in loader.load_directory(tmp_path).problems]


def test_cycles_and_unknown_names_are_spec_problems_naming_file_and_field(tmp_path: Path) -> None:
    problems = load(tmp_path, a=app("a", "1", "depends_on: [{application: b, environment: prod}]"),
                    b=app("b", "1", "depends_on: [{application: a, environment: prod}]"),
                    c=app("c", "1", "depends_on: [{application: nosuch, environment: prod}]"),
                    d=app("d", "1", "depends_on: [{application: c, environment: staging}]"))

    assert problems == [
        "apps/a.yaml:4: depends_on[0].application: dependency cycle between applications a, b: each would wait "
        "for the other forever",
        "apps/b.yaml:4: depends_on[0].application: dependency cycle between applications a, b: each would wait "
        "for the other forever",
        "apps/c.yaml:4: depends_on[0].application: no application named 'nosuch' (or its file is broken)",
        "apps/d.yaml:4: depends_on[0].environment: c has no environment named 'staging' (its environments: prod)",
    ]

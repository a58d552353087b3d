"""The daemon moves a version test -> staging -> prod on its own, with soaks, and picks a promotion up."""

from __future__ import annotations

import pygit2
import yaml

from tests.conftest import run_cli
from tests.daemon.conftest import DaemonFactory
from tests.environments.test_promotion_flow import pipeline_spec


def test_the_daemon_walks_a_version_through_the_environments_and_deploys_a_promotion(
        daemon_factory: DaemonFactory) -> None:
    d = daemon_factory(interval="1s", apps={"checkout": pipeline_spec(soak="1s", approval="")})
    d.repo.write("apps/values.yaml", 'checkout:\n  version: "1.0"\n').commit("1.0")
    bare = d.repo.path.parent / "desired.git"  # where CI pushes: a bare repository, as on a Git server
    pygit2.clone_repository(str(d.repo.path), str(bare), bare=True)
    cfg = yaml.safe_load(d.config.read_text(encoding="utf-8"))
    cfg["repo"]["url"] = str(bare)
    d.config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    d.start()

    def images(stack: str) -> set[str]:
        return {g["image"] for g in d.status()["server_groups"] if g["cluster"] == f"checkout-{stack}" and g["enabled"]}

    d.wait_for(lambda: images("test") == {"checkout-1.0"}, "1.0 in test")
    held = {e["name"]: (e["hold"] or {}).get("kind") for e in d.status()["pipelines"]["checkout"]["environments"]}
    assert held["prod"] in ("depends_on", "soak")
    d.wait_for(lambda: images("prod") == {"checkout-1.0"}, "1.0 in prod, after two soaks", timeout=40)

    res = run_cli("promote", "checkout", "1.1", "--config", str(d.config))
    assert res.code == 0, res.err
    d.wait_for(lambda: images("test") == {"checkout-1.1"}, "the promotion in test")
    assert images("prod") == {"checkout-1.0"}  # prod still waits for staging's soak
    d.wait_for(lambda: images("prod") == {"checkout-1.1"}, "1.1 in prod", timeout=40)
    assert d.stop() == 0

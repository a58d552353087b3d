"""The daemon moves a version test -> staging -> prod on its own, with soaks, and picks a promotion up."""

from __future__ import annotations

import json
import signal

import pygit2
import yaml

from tests.conftest import run_cli
from tests.daemon.conftest import DaemonFactory
from tests.environments.test_image_automation import SPEC
from tests.environments.test_promote import blob
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


def test_image_automation_commits_a_newer_image_and_the_next_pass_deploys_it(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory(interval="1s", apps={"checkout": SPEC})
    d.repo.write("apps/values.yaml", 'checkout:\n  version: "2.0.0"\n').commit("2.0.0")
    bare = d.repo.path.parent / "desired.git"
    pygit2.clone_repository(str(d.repo.path), str(bare), bare=True)
    cfg = yaml.safe_load(d.config.read_text(encoding="utf-8"))
    cfg["repo"]["url"] = str(bare)
    account = cfg["providers"]["local"]["accounts"]["default"]
    account["images"] = [{"name": "checkout-2.0.0-a", "created": 1}]
    d.config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    d.start()

    def images() -> set[str]:
        return {g["image"] for g in d.status()["server_groups"] if g["enabled"]}

    d.wait_for(lambda: images() == {"checkout-2.0.0-a"}, "2.0.0 deployed")
    d.wait_for(lambda: d.status()["automation"]["checkout"]["state"] == "up_to_date", "a look finding nothing newer")
    account["images"] += [{"name": "checkout-3.0.0-a", "created": 3},  # outside the policy: ignored
                          {"name": "checkout-2.1.0-a", "created": 2}]  # a new bake in both regions
    d.config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert d.proc is not None
    d.proc.send_signal(signal.SIGHUP)  # the local provider's image list is its config

    d.wait_for(lambda: images() == {"checkout-2.1.0-a"}, "the committed version deployed in both regions")
    assert blob(bare, "apps/values.yaml") == 'checkout:\n  version: "2.1.0"\n'
    look = d.status()["automation"]["checkout"]
    assert look["commit"] == str(pygit2.Repository(str(bare)).references["refs/heads/main"].target)
    code, text = d.get("/api/v1/history?limit=50")
    assert code == 200
    assert [e["message"] for e in json.loads(text)["events"] if e["kind"] == "image_automation"] == [
        f"checkout: committed 2.1.0 to apps/values.yaml checkout.version (was 2.0.0) at {look['commit'][:8]} of main"]
    assert d.stop() == 0

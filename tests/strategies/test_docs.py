"""docs/strategies.md is copied by users: its spec snippets validate, and the example repository does too."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.conftest import Env, app_spec, run_cli

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "strategies.md").read_text(encoding="utf-8")


def test_every_strategy_snippet_in_the_docs_is_a_valid_spec(env: Env) -> None:
    snippets = re.findall(r"```yaml\n(.*?)```", DOC, re.S)
    assert len(snippets) == 7
    for i, snippet in enumerate(snippets):
        env.repo.write(f"apps/app{i}.yaml", app_spec(f"app{i}", extra=snippet))
    env.repo.commit("the documented strategies")
    res = run_cli("validate", str(env.repo.path / "apps"))  # without --config: endpoint names are not checked
    assert res.code == 0, res.out + res.err


def test_the_example_repository_validates_with_its_rolling_cluster(tmp_path: Path) -> None:
    tree = tmp_path / "desired-state"
    shutil.copytree(ROOT / "examples" / "desired-state", tree)
    assert "rolling_red_black" in (tree / "apps" / "cart.yaml").read_text(encoding="utf-8")
    res = run_cli("validate", str(tree))
    assert res.code == 0, res.out + res.err


def documented_failure() -> str:
    """The failed rolling deployment the docs show (the end-to-end test produces exactly this line)."""
    block = DOC.split("## Reading a failed rolling deployment", 1)[1]
    return re.search(r"```text\n(.*?)\n```", block, re.S).group(1)  # type: ignore[union-attr]


def test_the_canary_example_validates_and_its_config_names_a_prometheus(tmp_path: Path) -> None:
    from reconciler.config import settings as config_mod

    tree = tmp_path / "canary"
    shutil.copytree(ROOT / "examples" / "canary", tree)
    res = run_cli("validate", str(tree))
    assert res.code == 0, res.out + res.err
    cfg = config_mod.load_config(tree / "config.yaml")
    assert cfg.prometheus is not None and cfg.prometheus.url == "http://127.0.0.1:9090"


def test_the_canary_example_plans_its_metrics_and_thresholds(tmp_path: Path) -> None:
    import json

    from tests.conftest import DesiredRepo, write_config

    repo = DesiredRepo(tmp_path / "desired")
    cfg = write_config(tmp_path / "config.yaml", repo.path, tmp_path / "state",
                       analysis={"prometheus": {"url": "http://127.0.0.1:9090"}})
    repo.write("apps/search.yaml", (ROOT / "examples" / "canary" / "apps" / "search.yaml").read_text()).commit("x")
    res = run_cli("plan", "--config", str(cfg), "--format", "json", config_first=True)
    assert res.code == 2, res.out + res.err
    (change,) = json.loads(res.out)["changes"]
    canary = change["strategy"]["canary"]
    assert [(m["name"], m.get("fail_if"), m.get("direction")) for m in canary["metrics"]] == [
        ("error-rate", "> 0.01", None), ("latency-p99", None, "increase"), ("throughput", None, "decrease")]
    assert (canary["duration_seconds"], canary["interval_seconds"], canary["pass_score"]) == (1800.0, 300.0, 95.0)
    assert change["reason"] == "first deploy: canary without a baseline (nothing serves yet)"

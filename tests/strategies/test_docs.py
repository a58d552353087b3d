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
    assert len(snippets) == 4
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

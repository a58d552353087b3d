"""docs/environments.md's full example loads, and its delivery path is what the Markdown plan prints."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import ROOT, DesiredRepo, run_cli

DOC = (ROOT / "docs" / "environments.md").read_text(encoding="utf-8")


def _block_after(marker: str, lang: str = "yaml") -> str:
    found = re.search(re.escape(marker) + rf"\s*```{lang}\n(.*?)```", DOC, re.S)
    assert found, marker
    return found.group(1)


def test_the_full_example_loads_and_its_delivery_path_is_the_documented_one(tmp_path: Path) -> None:
    repo = DesiredRepo(tmp_path / "desired")
    repo.write("apps/values.yaml", _block_after("`apps/values.yaml`:"))
    repo.write("apps/checkout.yaml", _block_after("`apps/checkout.yaml`:")).commit("1.4.2")
    assert run_cli("validate", str(repo.path)).code == 0
    repo.write("apps/values.yaml", _block_after("`apps/values.yaml`:").replace('"1.4.2"', '"1.4.3"')).commit()

    res = run_cli("plan", "--repo", str(repo.path), "--base", "HEAD~1", "--format", "markdown")
    documented = _block_after("ends with the path the\nchange takes:", "").strip()
    assert documented in res.out, res.out

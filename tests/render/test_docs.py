"""The CI recipes and the pre-commit hook are copied by users as they are: they must at least parse and agree."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from reconciler import render

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "pull-requests.md").read_text(encoding="utf-8")


def _yaml_blocks() -> list[object]:
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", DOC, re.S)]


def test_the_pre_commit_hook_validates_the_whole_tree() -> None:
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert hook["id"] == "reconciler-validate" and hook["entry"] == "reconciler validate"
    assert hook["language"] == "python" and hook["pass_filenames"] is False
    assert "reconciler-validate" in DOC


def test_every_yaml_recipe_parses_and_the_workflows_plan_against_the_base() -> None:
    blocks = _yaml_blocks()
    github = next(b for b in blocks if isinstance(b, dict) and "jobs" in b)
    steps = github["jobs"]["plan"]["steps"]
    runs = "\n".join(s.get("run", "") for s in steps)
    assert "reconciler validate" in runs
    assert 'reconciler plan --base "origin/${{ github.base_ref }}" --ref HEAD' in runs and "--out plan.md" in runs
    script = next(s for s in steps if s.get("uses", "").startswith("actions/github-script"))["with"]["script"]
    assert render.MARKER in script and "updateComment" in script
    gitlab = next(b for b in blocks if isinstance(b, dict) and "deployment-plan" in b)["deployment-plan"]
    assert any("merge_requests" in line for line in gitlab["script"])


def test_the_gitlab_note_script_is_valid_python() -> None:
    gitlab = next(b for b in _yaml_blocks() if isinstance(b, dict) and "deployment-plan" in b)["deployment-plan"]
    heredoc = next(line for line in gitlab["script"] if "<<'EOF'" in line)
    source = heredoc.split("\n", 1)[1].rsplit("EOF", 1)[0]
    compile(source, "gitlab-note.py", "exec")
    assert "PUT" in source and "POST" in source and render.MARKER in source

"""The CI recipes and the pre-commit hook are copied by users as they are: they must at least parse and agree."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from reconciler import render
from tests.conftest import Env

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
    assert 'reconciler plan --repo . --base "origin/${{ github.base_ref }}" --ref HEAD' in runs
    assert "> plan.md" in runs and "--out" not in runs, "--out writes the saved plan; the comment is stdout"
    script = next(s for s in steps if s.get("uses", "").startswith("actions/github-script"))["with"]["script"]
    assert render.MARKER in script and "updateComment" in script and "split(marker)" in script
    gitlab = next(b for b in blocks if isinstance(b, dict) and "deployment-plan" in b)["deployment-plan"]
    assert any("merge_requests" in line for line in gitlab["script"])


def test_the_gitlab_note_script_is_valid_python() -> None:
    gitlab = next(b for b in _yaml_blocks() if isinstance(b, dict) and "deployment-plan" in b)["deployment-plan"]
    heredoc = next(line for line in gitlab["script"] if "<<'EOF'" in line)
    source = heredoc.split("\n", 1)[1].rsplit("EOF", 1)[0]
    compile(source, "gitlab-note.py", "exec")
    assert "PUT" in source and "POST" in source and render.MARKER in source and "split(marker)" in source


def test_the_recipes_split_parts_as_the_cli_prints_them(env: Env) -> None:
    """The comment scripts split stdout on the marker: every part must start with it, nothing before."""
    from tests.conftest import app_spec

    for i in range(12):
        env.repo.write(f"apps/app{i}.yaml", app_spec(f"app{i}"))
    env.repo.commit("twelve apps")
    out = env.cli("plan", "--format", "markdown", "--max-comment-chars", "6000").out
    chunks = out.split(render.MARKER)
    assert chunks[0] == "" and len(chunks) > 2
    parts = [render.MARKER + c.rstrip() + "\n" for c in chunks[1:]]
    assert all(len(p) <= 6000 for p in parts) and f"Part {len(parts)} of {len(parts)}" in parts[-1]

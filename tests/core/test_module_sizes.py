"""A module over 400 lines says in its docstring why it is that long (docs/architecture.md: one idea per module)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("reconciler", "specs", "providers", "policies", "contrib/reconciler-cloudfoundry/reconciler_cloudfoundry")
LIMIT = 400


def test_every_module_over_the_limit_says_why_it_is_long() -> None:
    long = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            if text.count("\n") > LIMIT:
                long[path.relative_to(ROOT).as_posix()] = ast.get_docstring(ast.parse(text)) or ""
    assert long, "the check reads the modules"
    unexplained = sorted(name for name, doc in long.items() if "Why it is" not in doc)
    assert unexplained == [], f"over {LIMIT} lines without a 'Why it is ...' paragraph in the docstring: {unexplained}"

"""Prints what the stateful test covered, so a run's figures can be quoted."""

from __future__ import annotations

from typing import Any

from tests.crash import stateful_stats


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not stateful_stats.STEPS:
        return
    kinds = sorted(k for k, n in stateful_stats.KINDS.items() if n)
    terminalreporter.write_sep("-", "stateful safety test")
    terminalreporter.write_line(f"{stateful_stats.STEPS} steps in {stateful_stats.EXAMPLES} runs, "
                                f"{len(kinds)} scenario kinds:")
    for k in kinds:
        terminalreporter.write_line(f"  {stateful_stats.KINDS[k]:>6}  {k}")

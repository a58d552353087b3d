"""Deployment strategies as pure step builders: which steps take a cluster from its serving groups to a new one.

The planner decides *whether* a cluster changes and which group is the target; a strategy decides *how* the
target takes over (docs/strategies.md). Every builder is convergent like the planner: it reads live state
(and, for rolling, the capacities the old groups had when the deployment began, kept in the store) and
returns the steps that are left, so a deployment interrupted at any step is simply planned again.
"""

from __future__ import annotations

from typing import Any

from reconciler.core import model
from reconciler.core.strategies import canary, retire, rolling

__all__ = ["canary", "describe", "retire", "rolling", "view"]


def describe(strategy: model.Strategy) -> str:
    """One line for previews: what serves when, what is kept for rollback, which hooks are asked."""
    hooks = (f"; verified by {', '.join(strategy.verify)} before the old groups leave traffic"
             + (" (and after every step)" if strategy.type is model.StrategyType.ROLLING_RED_BLACK else "")
             if strategy.verify else "")
    return _describe(strategy) + hooks


def _describe(strategy: model.Strategy) -> str:
    kind, steps, pause_s, keep_disabled = strategy.type, strategy.steps, strategy.pause_s, strategy.keep_disabled
    if kind is model.StrategyType.CANARY and strategy.canary is not None:
        return canary.describe(strategy)
    if kind is model.StrategyType.HIGHLANDER:
        return "highlander: once the new group serves, every older group is destroyed; no rollback target is kept"
    if kind is model.StrategyType.ROLLING_RED_BLACK:
        pause = f", pause {model._fmt_seconds(pause_s)} between steps" if pause_s else ""
        judged = (f"; after the {', '.join(f'{p}%' for p in strategy.approval_steps)} step(s) it waits for "
                  f"`reconciler approve`" if strategy.approval_steps else "")
        return (f"rolling_red_black in steps of {', '.join(f'{p}%' for p in steps)}{pause}: the new group grows "
                f"and the same share of the old groups' capacity leaves at each step; on failure the old groups "
                f"return to full capacity first, then the new group is removed{judged}")
    kept = f"{keep_disabled} disabled group(s) kept for rollback" if keep_disabled else "no rollback target is kept"
    return f"red_black: the new group takes all traffic at once; {kept}"


def view(strategy: model.Strategy) -> dict[str, Any]:
    """The strategy as plan JSON shows it (``changes[].strategy``)."""
    rolling_ = strategy.type is model.StrategyType.ROLLING_RED_BLACK or (
        strategy.canary is not None and strategy.canary.then == model.StrategyType.ROLLING_RED_BLACK.value)
    return {
        "type": strategy.type.value,
        "steps": list(strategy.steps) if rolling_ else [100],
        "pause_seconds": strategy.pause_s if rolling_ else 0.0,
        "approval_steps": list(strategy.approval_steps),
        "keep_disabled": strategy.keep_disabled,
        "rollback_target_kept": strategy.type is not model.StrategyType.HIGHLANDER and strategy.keep_disabled > 0,
        "verify": list(strategy.verify),
        "summary": describe(strategy),
        **({"canary": canary.view(strategy)} if strategy.canary is not None else {}),
    }

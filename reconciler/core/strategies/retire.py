"""What follows once the new group serves: older groups leave traffic, shrink and go, per strategy."""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.core import model
from reconciler.core.model import Capacity, ServerGroup, Step, StepKind

ZERO = Capacity(0, 0, 0)


def verify_steps(spec: model.ClusterSpec, name: str, percent: int = 0) -> list[Step]:
    """One ``verify`` step per configured hook of the spec, for group ``name``."""
    return [Step(StepKind.VERIFY, name, reason=hook, percent=percent) for hook in spec.strategy.verify]


def steps(spec: model.ClusterSpec, new: str, enabled_others: Iterable[ServerGroup],
          owned: list[ServerGroup]) -> list[Step]:
    """Disable the older enabled groups, then scale down and destroy per the strategy.

    Red/black and rolling keep ``keep_disabled`` disabled groups (scaled to zero with ``scale_down``);
    highlander destroys every older group as soon as it is out of traffic.
    """
    out: list[Step] = []
    strategy = spec.strategy
    to_disable = [g for g in enabled_others if g.name != new]
    if to_disable:
        out += verify_steps(spec, new, 100 if strategy.type is model.StrategyType.ROLLING_RED_BLACK else 0)
        if strategy.delay_before_disable_s > 0:
            out.append(Step(StepKind.DELAY, new, seconds=strategy.delay_before_disable_s,
                            reason="delay before disable"))
        out += [Step(StepKind.DISABLE, g.name) for g in to_disable]
    rest = [g for g in owned if g.name != new]  # newest first; all disabled once the above ran
    if strategy.type is model.StrategyType.HIGHLANDER:
        return out + [Step(StepKind.DESTROY, g.name, reason="highlander: no older group is kept") for g in rest]
    keep, drop = rest[: strategy.keep_disabled], rest[strategy.keep_disabled:]
    if strategy.scale_down:
        shrink = [g for g in keep if g.capacity != ZERO]
        if shrink and strategy.delay_before_scale_down_s > 0:
            out.append(Step(StepKind.DELAY, new, seconds=strategy.delay_before_scale_down_s,
                            reason="delay before scale down"))
        out += [Step(StepKind.RESIZE, g.name, capacity=ZERO, reason="scale down disabled group") for g in shrink]
    out += [Step(StepKind.DESTROY, g.name, reason=f"beyond keep_disabled={strategy.keep_disabled}") for g in drop]
    return out

"""Region waves: never all regions at once unless allowed; a first wave of the required size; a pause."""

from __future__ import annotations

from collections.abc import Iterator

from policies.base import Judgement, Policy, PolicyContext, allow, deny
from reconciler import model
from reconciler.config import parse_duration

NAME = "region-waves"


def evaluate(plan: model.Plan, ctx: PolicyContext) -> Iterator[Judgement]:
    seen: set[tuple[str, str]] = set()
    for change in plan.changes:
        spec = change.desired
        if spec is None or change.action is model.Action.ROLLBACK or len(spec.regions) < 2:
            continue
        waves = spec.waves
        rules = ctx.for_change(change)["waves"]
        problem = _problem(waves, spec.rollout.pause_s, rules)
        key = (change.application, change.cluster)
        if problem:
            yield deny(NAME, change, problem)
        elif key not in seen:
            yield allow(NAME, change, f"{len(waves)} wave(s): " + " then ".join("+".join(w) for w in waves))
        seen.add(key)


def _problem(waves: tuple[tuple[str, ...], ...], pause_s: float, rules: dict[str, object]) -> str:
    max_per_wave = int(rules.get("max_regions_per_wave", 0) or 0)  # type: ignore[call-overload]
    first = int(rules.get("first_wave_size", 0) or 0)  # type: ignore[call-overload]
    min_pause = parse_duration(rules.get("min_pause", 0) or 0, where="waves.min_pause")
    if first and len(waves[0]) > first:
        return (f"the first wave has {len(waves[0])} regions ({', '.join(waves[0])}); at most {first} may go "
                "first (rollout.waves)")
    for i, wave in enumerate(waves, 1):
        if max_per_wave and len(wave) > max_per_wave:
            return f"wave {i} has {len(wave)} regions; at most {max_per_wave} at once (rollout.waves)"
    if len(waves) > 1 and pause_s < min_pause:
        return f"rollout.pause is {pause_s:.0f}s; at least {min_pause:.0f}s between waves is required"
    return ""


POLICY = Policy(NAME, evaluate)

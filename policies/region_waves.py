"""Region waves: never all regions at once unless allowed; a first wave of the required size; a pause.

Settings (``waves`` in policies.yaml, resolved per cluster): ``first_wave_size``
(most regions the first wave may hold; 0 = no limit), ``max_regions_per_wave``
(most regions in flight at once; 0 = no limit) and ``min_pause`` (shortest
``rollout.pause`` between waves). The built-in criticality layers give
``critical`` one region per wave, ``normal`` one region first, and ``low`` no
limit. A violating layout denies every change of the cluster, so no region of
it starts with a layout nobody approved. Rollbacks are exempt: they restore.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from policies.base import Judgement, Policy, PolicyContext, allow, deny
from reconciler.core import model
from reconciler.core.durations import parse_duration

NAME = "region-waves"


def evaluate(plan: model.Plan, ctx: PolicyContext) -> Iterator[Judgement]:
    reported: set[tuple[str, str, str]] = set()
    for change in plan.changes:
        spec = change.desired
        if spec is None or change.action is model.Action.ROLLBACK or len(spec.regions) < 2:
            continue
        waves = spec.waves
        problem = layout_problem(waves, spec.rollout.pause_s, ctx.for_change(change)["waves"])
        key = (change.provider, change.account, change.cluster)
        if problem:
            yield deny(NAME, change, problem)
        elif key not in reported:  # one line per cluster is enough to show the layout
            reported.add(key)
            yield allow(NAME, change, f"{len(waves)} wave(s): " + " then ".join("+".join(w) for w in waves))


def layout_problem(waves: tuple[tuple[str, ...], ...], pause_s: float, rules: Mapping[str, Any]) -> str:
    """Why this wave layout breaks the rules ("" when it does not); the message names the wave."""
    max_per_wave = int(rules.get("max_regions_per_wave") or 0)
    first = int(rules.get("first_wave_size") or 0)
    min_pause = parse_duration(rules.get("min_pause") or 0, where="waves.min_pause")
    if first and len(waves[0]) > first:
        return (f"wave 1 has {len(waves[0])} regions ({', '.join(waves[0])}); at most {first} may go first "
                "(rollout.waves)")
    for i, wave in enumerate(waves, 1):
        if max_per_wave and len(wave) > max_per_wave:
            return (f"wave {i} has {len(wave)} regions ({', '.join(wave)}); at most {max_per_wave} may be in "
                    "flight at once (rollout.waves)")
    if len(waves) > 1 and pause_s < min_pause:
        return f"rollout.pause is {pause_s:g}s; waves must be at least {min_pause:g}s apart (waves.min_pause)"
    return ""


POLICY = Policy(NAME, evaluate, per_cluster=True)

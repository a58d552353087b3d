"""The ``strategy`` block of a cluster: its schema, its cross-field rules and its model.

Kept apart from ``specs/schema.py`` so that the strategy's fields live in one place: the cerberus rules,
the JSON Schema descriptions, the checks cerberus cannot express and the conversion to ``model.Strategy``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from reconciler.core import durations, errors, model
from specs import canary as canary_spec

MAX_STEPS = 20
DEFAULT_ROLLING_STEPS = (25, 50, 100)



def rules(duration: dict[str, Any]) -> dict[str, Any]:
    """The cerberus rule of ``strategy``; ``duration`` is the schema's rule for a duration."""
    return {"type": "dict", "schema": {
        "type": {"type": "string", "allowed": [t.value for t in model.StrategyType]},
        "keep_disabled": {"type": "integer", "min": 0, "max": 20},
        "scale_down": {"type": "boolean"},
        "delay_before_disable": duration,
        "delay_before_scale_down": duration,
        "rollback_on_failure": {"type": "boolean"},
        "steps": {"type": "list", "minlength": 1, "maxlength": MAX_STEPS,
                  "schema": {"type": ["integer", "dict"]}},  # a percent or a STEP mapping (checked in check)
        "pause": duration,
        "verify": {"type": "list", "maxlength": 10,
                   "schema": {"type": "string", "regex": r"^[a-z][a-z0-9_-]*$", "maxlength": 64}},
        "canary": canary_spec.rules(duration),
    }}

DESCRIPTIONS = {
    "type": "red_black (default), highlander (red/black, then every older group is destroyed) or "
            "rolling_red_black (the new group grows in steps while the old groups shrink) or canary (canary and "
            "baseline groups judged by metric analysis, then red_black or highlander); see docs/strategies.md.",
    "keep_disabled": "Older disabled server groups kept for fast rollback (red_black, rolling_red_black).",
    "scale_down": "Scale disabled groups to zero after disabling them.",
    "delay_before_disable": "Pause after enabling the new group before disabling the old ones, e.g. 5m.",
    "delay_before_scale_down": "Pause after disabling before scaling down, e.g. 30m.",
    "rollback_on_failure": "On a failed health wait, remove the new group (the old one was never touched).",
    "steps": "rolling_red_black (or canary with then: rolling_red_black) only: percent of the target capacity "
             "after each step, increasing, ending at 100 (default [25, 50, 100]); a step written "
             "{percent: 50, pause_for_approval: true} waits, once healthy, for `reconciler approve`.",
    "pause": "rolling_red_black (or canary with then: rolling_red_black) only: pause after each step but the "
             "last, e.g. 5m.",
    "verify": "Verification endpoints, by the names the daemon's config gives them (verify.endpoints), asked "
              "for a verdict before the old groups leave traffic (rolling: after every step).",
    "canary": "canary only: the canary and baseline groups' size, the analysis' duration, interval, metrics "
              "and score thresholds, and what follows a pass (then); see docs/strategies.md.",
}

STEP_KEYS = ("percent", "pause_for_approval")
"""The keys of a step written as a mapping."""

STEP_JSON: dict[str, Any] = {"oneOf": [
    {"type": "integer", "minimum": 1, "maximum": 100, "description": "percent of the target capacity"},
    {"type": "object", "additionalProperties": False, "required": ["percent"], "properties": {
        "percent": {"type": "integer", "minimum": 1, "maximum": 100,
                    "description": "percent of the target capacity after this step"},
        "pause_for_approval": {"type": "boolean",
                               "description": "once this step is healthy, wait for `reconciler approve` "
                                              "(default false)"}}},
]}
"""The JSON Schema of one rolling step (cerberus cannot say \"an integer or this mapping\")."""


def describe_json(strategy: dict[str, Any]) -> None:
    """Put the descriptions and the step's shape into the exported JSON Schema of ``strategy``."""
    for name, text in DESCRIPTIONS.items():
        strategy["properties"][name]["description"] = text
    strategy["properties"]["steps"]["items"] = STEP_JSON
    for name, text in canary_spec.DESCRIPTIONS.items():
        strategy["properties"]["canary"]["properties"][name]["description"] = text


Report = Callable[[str, str], None]


def _percents(at: str, steps: list[Any], bad: Report) -> list[int] | None:
    """Each step's percent (a step is ``50`` or ``{percent: 50, pause_for_approval: true}``); None after a
    reported problem."""
    out: list[int] = []
    for i, step in enumerate(steps):
        where = f"{at}.strategy.steps[{i}]"
        value = step.get("percent") if isinstance(step, dict) else step
        if isinstance(step, dict):
            unknown = sorted(str(k) for k in step if k not in STEP_KEYS)
            if unknown:
                bad(where, f"unknown field(s) {', '.join(unknown)} (a step has percent and pause_for_approval)")
                return None
            if not isinstance(step.get("pause_for_approval", False), bool):
                bad(f"{where}.pause_for_approval", "must be true or false")
                return None
            where += ".percent"
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
            bad(where, f"a percent from 1 to 100 is needed, got {value!r}")
            return None
        out.append(value)
    return out


def check(at: str, strategy: Any, bad: Report) -> None:
    """What cerberus cannot say about one cluster's ``strategy`` (``at`` is ``clusters[i]``)."""
    if not isinstance(strategy, dict):
        return
    kind = strategy.get("type", model.StrategyType.RED_BLACK.value)
    rolling = _rolls(strategy)
    for only in ("steps", "pause"):
        if only in strategy and not rolling:
            bad(f"{at}.strategy.{only}", f"only for type rolling_red_black or a canary with then: "
                                         f"rolling_red_black (this strategy is {kind})")
    if kind == model.StrategyType.HIGHLANDER.value and "keep_disabled" in strategy:
        bad(f"{at}.strategy.keep_disabled", "highlander keeps no disabled group; remove keep_disabled "
                                            "or use red_black")
    canary_spec.check(f"{at}.strategy", kind, strategy, bad)
    hooks = strategy.get("verify")
    if isinstance(hooks, list):
        twice = sorted({h for h in hooks if isinstance(h, str) and hooks.count(h) > 1})
        if twice:
            bad(f"{at}.strategy.verify", f"each endpoint once; repeated: {', '.join(twice)}")
    given = strategy.get("steps")
    steps = _percents(at, given, bad) if rolling and isinstance(given, list) and given else None
    if steps:
        if any(b <= a for a, b in itertools.pairwise(steps)):
            bad(f"{at}.strategy.steps", f"steps must increase, got {steps}")
        elif steps[-1] != 100:
            bad(f"{at}.strategy.steps", f"the last step must be 100 (the new group at full capacity), got {steps}")


def to_model(strategy: dict[str, Any]) -> model.Strategy:
    """A validated ``strategy`` mapping as the model's value (defaults filled in)."""
    kind = model.StrategyType(strategy.get("type", model.StrategyType.RED_BLACK.value))
    rolling = _rolls(strategy)
    canary = canary_spec.to_model(strategy["canary"]) if kind is model.StrategyType.CANARY else None
    destroys_all = kind is model.StrategyType.HIGHLANDER or (canary is not None and canary.then == "highlander")
    return model.Strategy(
        type=kind,
        canary=canary,
        keep_disabled=0 if destroys_all else int(strategy.get("keep_disabled", 1)),
        scale_down=bool(strategy.get("scale_down", True)),
        delay_before_disable_s=_seconds(strategy.get("delay_before_disable", 0), "strategy.delay_before_disable"),
        delay_before_scale_down_s=_seconds(strategy.get("delay_before_scale_down", 0),
                                           "strategy.delay_before_scale_down"),
        rollback_on_failure=bool(strategy.get("rollback_on_failure", True)),
        steps=tuple(_percent(s) for s in strategy.get("steps") or DEFAULT_ROLLING_STEPS) if rolling else (100,),
        approval_steps=tuple(_percent(s) for s in strategy.get("steps") or ()
                             if isinstance(s, dict) and s.get("pause_for_approval")) if rolling else (),
        pause_s=_seconds(strategy.get("pause", 0), "strategy.pause"),
        verify=tuple(str(v) for v in strategy.get("verify") or ()),
    )


def _rolls(strategy: dict[str, Any]) -> bool:
    """Whether the strategy grows its new group in ``steps``: rolling, or a canary that continues rolling."""
    kind = strategy.get("type", model.StrategyType.RED_BLACK.value)
    block = strategy.get("canary")
    then = block.get("then") if kind == model.StrategyType.CANARY.value and isinstance(block, dict) else None
    return model.StrategyType.ROLLING_RED_BLACK.value in (kind, then)


def _percent(step: Any) -> int:
    return int(step["percent"] if isinstance(step, dict) else step)


def _seconds(value: Any, field: str) -> float:
    try:
        return durations.parse_duration(value, where=field)
    except errors.ConfigError as exc:
        raise ValueError(str(exc)) from exc

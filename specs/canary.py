"""The ``strategy.canary`` block: its cerberus rules, JSON Schema descriptions, cross-field checks and model.

Metrics are PromQL queries with ``${server_group}``-style variables (``core/canary.py: VARIABLES``):
the spec file is a Jinja2 template already, so ``{{ }}`` would be rendered away before the query is seen.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from reconciler.core import canary as canary_mod
from reconciler.core import durations, errors

MAX_METRICS = 20
FAIL_IF_RE = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
THEN = ("red_black", "highlander", "rolling_red_black")


def rules(duration: dict[str, Any]) -> dict[str, Any]:
    metric = {"type": "dict", "schema": {
        "name": {"type": "string", "required": True, "regex": r"^[a-z][a-z0-9_-]*$", "maxlength": 64},
        "query": {"type": "string", "required": True, "empty": False, "maxlength": 4000},
        "fail_if": {"type": "string", "maxlength": 64},
        "compare": {"type": "dict", "schema": {
            "direction": {"type": "string", "allowed": [d.value for d in canary_mod.Direction]},
            "tolerance": {"type": ["integer", "float"], "min": 0, "max": 100},
        }},
        "weight": {"type": ["integer", "float"], "min": 0.001, "max": 1000},
        "no_data": {"type": "string", "allowed": [n.value for n in canary_mod.NoData]},
    }}
    return {"type": "dict", "schema": {
        "capacity": {"type": "integer", "min": 1, "max": 100},
        "duration": duration,
        "interval": duration,
        "then": {"type": "string", "allowed": list(THEN)},
        "pause_for_approval": {"type": "boolean"},
        "score": {"type": "dict", "schema": {"pass": {"type": ["integer", "float"], "min": 0, "max": 100},
                                             "marginal": {"type": ["integer", "float"], "min": 0, "max": 100}}},
        "metrics": {"type": "list", "required": True, "minlength": 1, "maxlength": MAX_METRICS,
                    "schema": metric},
    }}


DESCRIPTIONS = {
    "capacity": "Instances of the canary group and of the baseline group each (default 1).",
    "duration": "How long the analysis runs, e.g. 30m (default 30m).",
    "interval": "How often the metrics are judged, e.g. 5m (default 5m, at most the duration).",
    "then": "How the canary takes over once it passed: red_black (default), highlander, or rolling_red_black "
            "(the canary grows in strategy.steps while the serving groups shrink).",
    "pause_for_approval": "Manual judgment: once the analysis passed, wait for `reconciler approve` (default false).",
    "score": "pass (default 95): the final score needed; marginal (default 75): any interval below it fails.",
    "metrics": "PromQL queries with ${server_group}, ${cluster}, ${region}, ${application}, ${version} "
               "(vNNN) and ${image}; each with fail_if (\"> 0.01\") or compare ({direction, tolerance}).",
}

Report = Callable[[str, str], None]


def check(at: str, kind: str, strategy: dict[str, Any], bad: Report) -> None:
    """What cerberus cannot say (``at`` is ``clusters[i].strategy``)."""
    block = strategy.get("canary")
    if kind != "canary":
        if "canary" in strategy:
            bad(f"{at}.canary", f"only for type canary (this strategy is {kind})")
        return
    if not isinstance(block, dict):
        if block is None:
            bad(f"{at}.canary", "type canary needs a canary block with at least one metric")
        return
    metrics = block.get("metrics")
    if isinstance(metrics, list):
        names = [m.get("name") for m in metrics if isinstance(m, dict)]
        twice = sorted({n for n in names if isinstance(n, str) and names.count(n) > 1})
        if twice:
            bad(f"{at}.canary.metrics", f"each metric name once; repeated: {', '.join(twice)}")
        for i, m in enumerate(metrics):
            if not isinstance(m, dict):
                continue
            where = f"{at}.canary.metrics[{i}]"
            if ("fail_if" in m) == ("compare" in m):
                bad(where, "give exactly one of fail_if (an absolute bound) or compare (against the baseline)")
            if isinstance(m.get("fail_if"), str) and not FAIL_IF_RE.match(m["fail_if"]):
                bad(f"{where}.fail_if", f"expected an operator and a number, e.g. \"> 0.01\" (operators: "
                                        f"{', '.join(canary_mod.OPERATORS)}), got {m['fail_if']!r}")
            if isinstance(m.get("query"), str):
                problem = canary_mod.template_problem(m["query"])
                if problem:
                    bad(f"{where}.query", problem)
    dur = _quiet_seconds(block.get("duration", "30m"))
    every = _quiet_seconds(block.get("interval", "5m"))
    if dur is not None and dur <= 0:
        bad(f"{at}.canary.duration", "must be more than 0s")
    if every is not None and every <= 0:
        bad(f"{at}.canary.interval", "must be more than 0s")
    elif dur is not None and every is not None and every > dur:
        bad(f"{at}.canary.interval", f"interval {block.get('interval')} is longer than the duration "
                                     f"{block.get('duration', '30m')}")
    score = block.get("score")
    if isinstance(score, dict) and isinstance(score.get("pass", 95), int | float) \
            and isinstance(score.get("marginal", 75), int | float) \
            and score.get("marginal", 75) > score.get("pass", 95):
        bad(f"{at}.canary.score", "marginal must not be above pass")


def to_model(block: dict[str, Any]) -> canary_mod.Canary:
    """A validated ``canary`` mapping as the model's value (defaults filled in)."""
    score = block.get("score") or {}
    return canary_mod.Canary(
        metrics=tuple(_metric(m) for m in block["metrics"]),
        capacity=int(block.get("capacity", 1)),
        duration_s=_seconds(block.get("duration", "30m"), "strategy.canary.duration"),
        interval_s=_seconds(block.get("interval", "5m"), "strategy.canary.interval"),
        pass_score=float(score.get("pass", 95)),
        marginal_score=float(score.get("marginal", 75)),
        then=str(block.get("then", "red_black")),
        pause_for_approval=bool(block.get("pause_for_approval", False)),
    )


def _metric(m: dict[str, Any]) -> canary_mod.Metric:
    fail_if = None
    if "fail_if" in m:
        match = FAIL_IF_RE.match(m["fail_if"])
        assert match is not None  # the schema's regex
        fail_if = (match.group(1), float(match.group(2)))
    compare = m.get("compare") or {}
    return canary_mod.Metric(
        name=str(m["name"]), query=str(m["query"]), fail_if=fail_if,
        direction=canary_mod.Direction(compare.get("direction", "increase")) if "compare" in m else None,
        tolerance=float(compare.get("tolerance", 0)), weight=float(m.get("weight", 1)),
        no_data=canary_mod.NoData(m.get("no_data", "fail")))


def _quiet_seconds(value: Any) -> float | None:
    try:
        return durations.parse_duration(value, where="")
    except (errors.ConfigError, TypeError, ValueError):
        return None


def _seconds(value: Any, field: str) -> float:
    try:
        return durations.parse_duration(value, where=field)
    except errors.ConfigError as exc:
        raise ValueError(str(exc)) from exc

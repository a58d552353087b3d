"""A canary deployment's runtime: its progress record in the store and the analysis step.

The record (``core/strategies/canary.py: Progress``) is written before the first step, says which group
is the baseline, when the analysis began and whether it passed, and is dropped when the deployment ends
either way; so after ``kill -9`` the planner resumes the analysis where its window stands instead of
starting it over, and never analyzes again a canary that passed. Each interval's reading goes to history
(``canary_analysis``) with its score and every metric's values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reconciler.config import settings as config_mod
from reconciler.core import analysis, errors, model
from reconciler.core import canary as canary_mod
from reconciler.core import clock as clock_mod
from reconciler.core.strategies import canary as strategy
from reconciler.core.strategies import rolling
from reconciler.runtime import prometheus
from reconciler.state import store as store_mod


class AnalysisFailed(errors.ReconcilerError):
    """The canary's analysis failed: the deployment rolls back as after a failed health wait."""


def progress(store: store_mod.Store) -> dict[str, strategy.Progress]:
    """Every canary in progress, by store key, for the planner's options."""
    return strategy.parse(store.get_prefix(strategy.PREFIX))


def remember(store: store_mod.Store, change: model.Change, now: float) -> None:
    """Before the first step of a canary change: record its groups (a resumed deployment keeps its record)."""
    spec = change.desired
    if spec is None or spec.strategy.canary is None or change.desired_server_group is None:
        return
    key = strategy.progress_key(change.key)
    known = strategy.parse({key: store.get(key)}).get(key)
    if known is not None and known.canary == change.desired_server_group and known.spec_hash == change.spec_hash:
        return
    record = strategy.Progress(change.desired_server_group, strategy.baseline_of(change), change.spec_hash)
    store.put(key, record.as_dict(), now)


def forget(store: store_mod.Store, change: model.Change) -> None:
    store.delete(strategy.progress_key(change.key))


def ended(store: store_mod.Store, change: model.Change) -> None:
    """A canary change succeeded: the record goes unless the deployment now waits for its manual judgment
    (after the analysis, or, ``then: rolling_red_black``, at a rolling step)."""
    spec = change.desired
    if spec is None or spec.strategy.canary is None or rolling.stops_at(change) is not None:
        return
    key = strategy.progress_key(change.key)
    rec = strategy.parse({key: store.get(key)}).get(key)
    if rec is None or rec.done(spec.strategy.canary):
        forget(store, change)


def approved(store: store_mod.Store, change: model.Change, now: float) -> None:
    """The manual judgment step ran (its change was approved): the rest of the deployment needs no other."""
    key = strategy.progress_key(change.key)
    rec = strategy.parse({key: store.get(key)}).get(key)
    if rec is not None:
        store.put(key, {**rec.as_dict(), "approved": True}, now)


def baseline(store: store_mod.Store, change: model.Change) -> str:
    """The baseline group recorded for the cluster's canary (empty: none)."""
    key = strategy.progress_key(change.key)
    rec = strategy.parse({key: store.get(key)}).get(key)
    return rec.baseline if rec is not None else ""


@dataclass
class Analyzer:
    """Runs an ``analyze`` step: every interval, query each metric for the canary and its baseline since
    the analysis began, judge (``core/analysis.py``), record the reading; fail at the first failing reading,
    pass only on a passing final one."""

    store: store_mod.Store
    clock: clock_mod.Clock
    sleep: Callable[[float], None]
    prometheus: config_mod.PrometheusSettings | None

    def run(self, change: model.Change, step: model.Step) -> None:
        spec = change.desired
        assert spec is not None and spec.strategy.canary is not None
        canary = spec.strategy.canary
        if self.prometheus is None:
            raise AnalysisFailed(f"canary analysis of {step.server_group}: no Prometheus to read metrics from "
                                 f"(set analysis.prometheus.url in the config)")
        key = strategy.progress_key(change.key)
        rec = strategy.parse({key: self.store.get(key)}).get(key) \
            or strategy.Progress(step.server_group, step.reason, change.spec_hash)
        started = rec.started
        if started is None:
            started = self.clock.now()
            self.store.put(key, {**rec.as_dict(), "started": started}, started)
        end = started + canary.duration_s
        done = math.floor(max(self.clock.now() - started, 0.0) / canary.interval_s + 1e-9)
        at = min(started + (done + 1) * canary.interval_s, end)
        while True:
            wait = at - self.clock.now()
            if wait > 0:
                self.sleep(wait)
            t = min(self.clock.now(), end)
            reading = analysis.judge(canary, self._samples(change, step, canary, started, t),
                                     final=t >= end - 1e-6)
            self._record(change, step, reading, t - started)
            verdict = analysis.concluded(reading)
            if verdict is analysis.Verdict.FAIL:
                raise AnalysisFailed(f"canary analysis of {step.server_group} failed after "
                                     f"{model._fmt_seconds(t - started)}: {reading.summary()}")
            if verdict is analysis.Verdict.PASS:
                self.store.put(key, {**rec.as_dict(), "started": started, "passed": True}, self.clock.now())
                return
            at = min(at + canary.interval_s, end)

    def _samples(self, change: model.Change, step: model.Step, canary: canary_mod.Canary, start: float,
                 end: float) -> dict[str, analysis.Samples]:
        assert self.prometheus is not None and change.desired is not None
        groups = {"canary": (step.server_group, change.desired.launch.image)}
        if step.reason:
            groups["baseline"] = (step.reason, change.current.launch.image if change.current else "")
        out: dict[str, analysis.Samples] = {}
        for metric in canary.metrics:
            got: dict[str, tuple[float, ...]] = {}
            try:
                for role, (name, image) in groups.items():
                    if role == "baseline" and metric.fail_if is not None:
                        continue  # absolute bounds judge the canary alone
                    values = {"server_group": name, "cluster": change.cluster, "region": change.region,
                              "application": change.application, "version": f"v{model.parse_version(name):03d}",
                              "image": image}
                    got[role] = prometheus.query_range(self.prometheus, metric.render(values), start, end,
                                                       canary.sample_step_s)
            except prometheus.QueryFailed as exc:
                out[metric.name] = analysis.Samples(error=str(exc))
                continue
            out[metric.name] = analysis.Samples(got.get("canary", ()), got.get("baseline") if step.reason else None)
        return out

    def _record(self, change: model.Change, step: model.Step, reading: analysis.Reading, elapsed: float) -> None:
        self.store.record("canary_analysis", f"canary {step.server_group} after {model._fmt_seconds(elapsed)}: "
                          f"{reading.summary()}", self.clock.now(), application=change.application,
                          cluster=change.cluster, region=change.region, commit=change.commit,
                          detail={"server_group": step.server_group, "baseline": step.reason,
                                  "elapsed_seconds": round(elapsed, 3), **reading.as_dict()})


READINGS_SHOWN = 20
"""Latest analysis readings ``status`` shows."""


def status(store: store_mod.Store) -> dict[str, object]:
    """What ``status`` shows of canaries: those in progress, and the latest readings (newest first), each
    with its score, verdict and the failing metrics with the values that decided them."""
    readings: list[dict[str, object]] = []
    for e in store.history(limit=READINGS_SHOWN, kinds=("canary_analysis",)):
        d: dict[str, Any] = e["detail"] if isinstance(e.get("detail"), dict) else {}
        results: list[Any] = d["results"] if isinstance(d.get("results"), list) else []
        readings.append({
            "at": e["ts"], "application": e["application"], "cluster": e["cluster"], "region": e["region"],
            "server_group": d.get("server_group"), "baseline": d.get("baseline"),
            "elapsed_seconds": d.get("elapsed_seconds"), "score": d.get("score"), "verdict": d.get("verdict"),
            "final": d.get("final"), "message": e["message"],
            "failing": [{"metric": r.get("metric"), "outcome": r.get("outcome"), "detail": r.get("detail")}
                        for r in results if isinstance(r, dict) and r.get("counted") and r.get("outcome") != "pass"],
        })
    in_progress = [{"key": key.removeprefix(strategy.PREFIX), **p.as_dict()}
                   for key, p in sorted(progress(store).items())]
    return {"in_progress": in_progress, "readings": readings}

"""Environments at run time: read the durable facts, judge each environment's gate, hold what may not enter.

The judging is ``reconciler.core.environments`` (pure); this module reads the store, records what a
look at live state established (healthy since when, bad, approval awaited since when), opens the
``allowed_times`` windows with the deployment windows' rules, and shapes the pipeline view that
``reconciler status`` and the JSON status show.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from policies import windows as windows_mod
from reconciler.core import environments as envs
from reconciler.core import errors, model, planner
from reconciler.state import store as store_mod

if TYPE_CHECKING:
    from reconciler.runtime.pipeline import Evaluation

log = logging.getLogger("reconciler.promotion")

VERSION_RE = r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}"
"""The version form specs accept (specs/environments.py), for versions given on the command line."""


@dataclass(frozen=True, slots=True)
class Promotion:
    """Each (application, environment) gate (None: open) and the pipeline view of every application."""

    gates: Mapping[tuple[str, str], model.Held | None] = field(default_factory=dict)
    pipelines: Mapping[str, dict[str, Any]] = field(default_factory=dict)


def load_facts(store: store_mod.Store) -> dict[envs.FactKey, envs.Fact]:
    out: dict[envs.FactKey, envs.Fact] = {}
    for r in store.env_facts():
        try:
            kind = envs.FactKind(r["kind"])
        except ValueError:
            continue  # written by a newer release: not ours to judge on
        fact = envs.Fact(r["application"], r["environment"], r["version"], kind, float(r["at"]), r["detail"] or "")
        out[fact.key] = fact
    return out


def window_of(env: model.Environment, now: float) -> envs.Window:
    if not env.allowed_times:
        return envs.Window(True)
    allow = [{"from": w.start, "to": w.end, "days": list(w.days), "timezone": w.timezone} for w in env.allowed_times]
    ok, message, next_open = windows_mod.opening({"allow": allow}, now)
    return envs.Window(ok, message, next_open)


def evaluate(store: store_mod.Store, desired: model.DesiredState, live: planner.LiveState, now: float, *,
             record: bool) -> Promotion:
    """Gates and pipelines of every application with environments; with ``record``, the facts are saved."""
    apps = [a for a in desired.applications.values() if a.environments or a.depends_on]
    if not apps:
        return Promotion()
    facts = load_facts(store)
    failures = {(k, h): row.last_error or "failed" for (k, h), row in store.failures().items()}
    gates: dict[tuple[str, str], model.Held | None] = {}
    pipelines: dict[str, dict[str, Any]] = {}
    seen_all = {a.name: envs.observe(a, live.groups, live.unreadable.keys(), failures) for a in apps}
    for app in apps:
        seen = seen_all[app.name]
        writes, drops = envs.advance(app, seen, facts, now)
        facts = envs.merged(facts, writes, drops)
        if not app.environments:
            gates[(app.name, "")] = envs.dependency_hold(app, "", seen_all, facts)
        for env in app.environments:
            started = seen[env.name].started
            window = window_of(env, now)
            held = envs.gate(app, env, facts, started=started, window=window, now=now)
            asked = envs.asks(app, env, held, facts, now)
            if asked is not None:
                writes.append(asked)
                facts[asked.key] = asked
                held = envs.gate(app, env, facts, started=started, window=window, now=now)
            if held is None and not started:
                held = envs.dependency_hold(app, env.name, seen_all, facts)
            gates[(app.name, env.name)] = held
        if record:
            _save(store, writes, drops)
        if app.environments:
            pipelines[app.name] = pipeline(app, seen, facts, gates, live.groups)
    return Promotion(gates, pipelines)


def _save(store: store_mod.Store, writes: Iterable[envs.Fact], drops: Iterable[envs.FactKey]) -> None:
    for key in drops:
        store.drop_env_fact(key[0], key[1], key[2], key[3].value)
    for f in writes:
        store.put_env_fact(f.application, f.environment, f.version, f.kind.value, f.at, f.detail)
        if f.kind in (envs.FactKind.HEALTHY, envs.FactKind.BAD):
            what = "runs healthy" if f.kind is envs.FactKind.HEALTHY else f"failed: {f.detail}"
            store.record(f"environment_{f.kind.value}", f"{f.environment}: version {f.version} {what}", f.at,
                         application=f.application)


def hold(changes: Iterable[model.Change], desired: model.DesiredState, promotion: Promotion,
         others: Iterable[tuple[model.Change, model.Held]] = ()
         ) -> tuple[list[model.Change], list[tuple[model.Change, model.Held]]]:
    """Changes that would put a version into an environment whose gate is closed are held with its reason,
    and those beyond its ``max_concurrent`` regions (``others``: the holds so far, running ones among them)."""
    if not promotion.gates:
        return list(changes), []
    runnable: list[model.Change] = []
    held: list[tuple[model.Change, model.Held]] = []
    for c in changes:
        spec = c.desired
        why = promotion.gates.get((c.application, spec.environment)) if spec is not None else None
        if why is not None and planner.delivers(c):
            held.append((c, why))
        else:
            runnable.append(c)
    limits = {(a.name, e.name): e.max_concurrent for a in desired.applications.values() for e in a.environments
              if e.max_concurrent}
    if limits:
        busy: dict[tuple[str, str], set[str]] = {}
        for c, why in others:
            if why.kind is model.Hold.RUNNING and c.desired is not None and planner.delivers(c):
                busy.setdefault((c.application, c.desired.environment), set()).add(
                    f"{c.provider}/{c.account}/{c.region}")
        runnable, over = envs.limit_regions(runnable, limits, busy)
        held += over
    blocked = {c.key: why for c, why in held}
    moved = True
    while moved:  # what waits for a held change is held too (a destroy waiting for its replacement)
        moved = False
        for c in list(runnable):
            waits = [k for k in c.waiting if k in blocked]
            if waits:
                kind = model.Hold.REPLACEMENT if c.action is model.Action.DESTROY else model.Hold.WAVE
                why = model.Held(kind, f"waiting for {model.split_key(waits[0])[3]} in {model.split_key(waits[0])[2]}, "
                                 f"held: {blocked[waits[0]]}", waits_for=blocked[waits[0]].waits_for,
                                 until=blocked[waits[0]].until)
                runnable.remove(c)
                held.append((c, why))
                blocked[c.key] = why
                moved = True
    return runnable, held


def pipeline(app: model.Application, seen: Mapping[str, envs.Observation], facts: envs.Facts,
             gates: Mapping[tuple[str, str], model.Held | None], live: Iterable[model.ServerGroup]
             ) -> dict[str, Any]:
    """The delivery path of one application: per environment, its version, state, hold and regions."""
    groups = [g for g in live if g.application == app.name and g.managed]
    out_envs: list[dict[str, Any]] = []
    for env in app.environments:
        obs = seen[env.name]
        held = gates.get((app.name, env.name))
        version = obs.version
        healthy = facts.get((app.name, env.name, version, envs.FactKind.HEALTHY))
        regions = []
        for spec in (c for c in app.clusters if c.environment == env.name):
            for region in spec.regions:
                h = spec.for_region(region).launch.spec_hash()
                mine = [g for g in groups if g.cluster == spec.name and g.region == region
                        and g.provider == spec.provider and g.account == spec.account]
                serving = [g for g in mine if g.enabled]
                at_version = any(g.spec_hash == h and g.enabled and g.healthy > 0 for g in mine)
                regions.append({"cluster": spec.name, "region": region, "at_version": at_version,
                                "serving": [{"server_group": g.name, "image": g.launch.image} for g in serving]})
        bad = sorted(f.version for f in facts.values() if f.application == app.name and f.environment == env.name
                     and f.kind is envs.FactKind.BAD)
        hint = ""
        if held is not None and held.kind is model.Hold.ENV_APPROVAL:
            hint = f"reconciler approve {app.name} --env {env.name} --version {version}"
        elif (held is not None and held.kind in (model.Hold.BAD_VERSION, model.Hold.REJECTED)) or bad:
            hint = f"reconciler promote {app.name} NEWER_VERSION"
        out_envs.append({
            "name": env.name, "version": version, "state": envs.state_of(obs, held, facts, app.name),
            "healthy_since": healthy.at if healthy is not None else None,
            "depends_on": list(env.depends_on), "soak_s": env.soak_s,
            "approval": env.approval is not None,
            "schedules": [{"cron": w.cron, "timezone": w.timezone} for w in env.schedules],
            "hold": None if held is None else {"kind": held.kind.value, "message": held.message,
                                               "waits_for": held.waits_for, "until": held.until},
            "bad_versions": bad, "hint": hint, "regions": regions,
        })
    return {"version": app.version, "environments": out_envs}


def decide(store: store_mod.Store, desired: model.DesiredState, application: str, environment: str, version: str,
           decision: str, *, by: str, comment: str, now: float) -> dict[str, Any]:
    """Bind an approval or rejection to (application, environment, version); the other decision is forgotten.

    A version not deployed yet may be decided ahead of its arrival; the application and environment
    must exist at the commit in force, and the environment must ask for approvals.
    """
    app = desired.applications.get(application)
    if app is None:
        raise _unknown(application, set(desired.applications), "application",
                                  where=f"at {desired.commit[:8]}")
    env = envs.env_of(app, environment)
    if env is None:
        raise _unknown(environment, {e.name for e in app.environments}, "environment",
                                  where=f"in {application} ({app.source.file})")
    if not re.fullmatch(VERSION_RE, version):
        raise errors.ReconcilerError(f"--version {version!r} is not a version (letters, digits, '.', '_', '+', '-')")
    if env.approval is None:
        raise errors.ReconcilerError(f"{application}: environment {environment} does not ask for approvals "
                                     f"(add approval: to it in {app.source.file})")
    kind = envs.FactKind.APPROVED if decision == "approved" else envs.FactKind.REJECTED
    other = envs.FactKind.REJECTED if kind is envs.FactKind.APPROVED else envs.FactKind.APPROVED
    detail = by + (f": {comment}" if comment else "")
    store.drop_env_fact(application, environment, version, other.value)
    store.put_env_fact(application, environment, version, kind.value, now, detail)
    store.record(decision, f"{application} version {version} {decision} for {environment} by {detail}", now,
                 application=application, commit=desired.commit)
    return {"id": f"{application}/{environment}/{version}", "decision": decision, "by": by, "at": now}


def _unknown(name: str, known: set[str], what: str, *, where: str) -> errors.ReconcilerError:
    near = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(near)}?" if near else f"; known: {', '.join(sorted(known)) or 'none'}"
    return errors.ReconcilerError(f"no {what} named {name!r} {where}{hint}")


def only_environment(ev: Evaluation, name: str) -> Evaluation:
    """The evaluation narrowed to one environment's changes (``apply --env``); an unknown name is refused."""
    known = {e.name for a in ev.desired.applications.values() for e in a.environments}
    if name not in known:
        raise errors.ReconcilerError(f"--env: no environment named {name!r} in the desired state "
                                     f"(environments: {', '.join(sorted(known)) or 'none'})")

    def mine(c: model.Change) -> bool:
        return c.desired is not None and c.desired.environment == name

    plan = dataclasses.replace(ev.plan, changes=tuple(c for c in ev.plan.changes if mine(c)))
    return dataclasses.replace(ev, plan=plan, runnable=tuple(c for c in ev.runnable if mine(c)),
                               held=tuple((c, h) for c, h in ev.held if mine(c)))

"""Environments and promotion: where each version may run, decided from durable facts. Pure.

An application lists environments in order (``test``, ``staging``, ``prod``). Its version enters an
environment only when that environment's constraints pass; each later one waits on its own. The
inputs are values: what live state shows of each environment (``observe``), the facts the store
keeps (``Fact``: healthy since when, bad, approved, waiting for approval since when) and, for
``allowed_times``, whether a window is open (computed at the edge, where the window rules live).
``advance`` says which facts change after a look at live state; ``gate`` says whether a version may
enter an environment now, and if not, a ``model.Held`` naming what it waits for and until when.

An environment that already runs some group of the version (the deployment started) stays open for
it: a window closing or an approval expiring never strands a half-done rollout, and that is derived
from live state, so it survives restarts like region waves do.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from reconciler.core import model, schedules
from reconciler.core.durations import format_seconds


class FactKind(enum.StrEnum):
    HEALTHY = "healthy"  # every cluster and region of the environment serves the version; ``at``: since when
    BAD = "bad"  # the version failed there; never promoted past it
    APPROVED = "approved"  # a person approved the version for the environment
    REJECTED = "rejected"  # a person rejected it
    AWAITING = "awaiting_approval"  # every other constraint passed; ``at``: since when the approval is awaited
    SCHEDULED = "waiting_for_schedule"  # every other constraint passed; ``at``: since when (the next firing counts)


@dataclass(frozen=True, slots=True)
class Fact:
    """One durable fact about (application, environment, version)."""

    application: str
    environment: str
    version: str
    kind: FactKind
    at: float
    detail: str = ""

    @property
    def key(self) -> FactKey:
        return (self.application, self.environment, self.version, self.kind)


FactKey = tuple[str, str, str, FactKind]
Facts = Mapping[FactKey, Fact]


@dataclass(frozen=True, slots=True)
class Observation:
    """What live state and the failure records say of one environment at its desired version.

    ``healthy`` is None when some region of it cannot be read (nothing is concluded then).
    """

    environment: str
    version: str
    healthy: bool | None
    started: bool
    failed: str = ""  # the last error of a failure of this version there, if any


@dataclass(frozen=True, slots=True)
class Window:
    """Whether an environment's ``allowed_times`` are open now, and when that changes (epoch seconds)."""

    open: bool
    message: str = ""
    next_open: float | None = None


def env_of(app: model.Application, name: str) -> model.Environment | None:
    return next((e for e in app.environments if e.name == name), None)


def version_of(app: model.Application, env: model.Environment) -> str:
    """The version the environment must run: its own pin, else the application's."""
    return env.version or app.version


def earlier(app: model.Application, env: model.Environment) -> tuple[model.Environment, ...]:
    index = app.environments.index(env)
    return app.environments[:index]


def observe(app: model.Application, live: Iterable[model.ServerGroup],
            unreadable: Iterable[tuple[str, str, str]], failures: Mapping[tuple[str, str], str]
            ) -> dict[str, Observation]:
    """Per environment: does each of its clusters serve, in each region, the spec of the version it must run?

    ``failures`` maps (cluster key, spec hash) to the last error recorded for it.
    """
    by_key: dict[str, list[model.ServerGroup]] = {}
    for g in live:
        by_key.setdefault(model.cluster_key(g.provider, g.account, g.region, g.cluster), []).append(g)
    blind = set(unreadable)
    out: dict[str, Observation] = {}
    for env in app.environments:
        specs = [c for c in app.clusters if c.environment == env.name]
        healthy: bool | None = bool(specs)
        started = False
        failed = ""
        for spec in specs:
            for region in spec.regions:
                h = spec.for_region(region).launch.spec_hash()
                key = model.cluster_key(spec.provider, spec.account, region, spec.name)
                groups = by_key.get(key, [])
                if any(g.managed and g.spec_hash == h for g in groups):
                    started = True
                if (key, h) in failures:
                    failed = failures[(key, h)]
                if (spec.provider, spec.account, region) in blind:
                    healthy = None if healthy is not False else False
                elif not _serves(groups, h, spec.health.healthy_percent):
                    healthy = False
        out[env.name] = Observation(env.name, version_of(app, env), healthy, started, failed)
    return out


def _serves(groups: list[model.ServerGroup], spec_hash: str, healthy_percent: int) -> bool:
    """The same rule as the planner's region waves: an enabled owned group of the spec with enough healthy."""
    for g in groups:
        if g.managed and g.enabled and g.spec_hash == spec_hash and g.healthy > 0:
            want = g.capacity.desired
            if want == 0 or g.healthy * 100 >= healthy_percent * want:
                return True
    return False


def advance(app: model.Application, seen: Mapping[str, Observation], facts: Facts, now: float
            ) -> tuple[list[Fact], list[FactKey]]:
    """Facts to write and to forget after a look at live state.

    Healthy keeps its first time while the environment stays healthy (a restart mid-soak keeps the
    soak's start, because the start is in the store); it is forgotten when the environment stops
    serving the version, so a soak restarts after a relapse. A failure marks the version bad there.
    """
    writes: list[Fact] = []
    drops: list[FactKey] = []
    for name, obs in seen.items():
        if not obs.version:
            continue
        hkey: FactKey = (app.name, name, obs.version, FactKind.HEALTHY)
        if obs.healthy is True and hkey not in facts:
            writes.append(Fact(app.name, name, obs.version, FactKind.HEALTHY, now))
        elif obs.healthy is False and hkey in facts:
            drops.append(hkey)
        bkey: FactKey = (app.name, name, obs.version, FactKind.BAD)
        if obs.failed and bkey not in facts:
            writes.append(Fact(app.name, name, obs.version, FactKind.BAD, now, obs.failed))
    return writes, drops


def merged(facts: Facts, writes: Iterable[Fact], drops: Iterable[FactKey]) -> dict[FactKey, Fact]:
    out = dict(facts)
    for k in drops:
        out.pop(k, None)
    for f in writes:
        out[f.key] = f
    return out


def gate(app: model.Application, env: model.Environment, facts: Facts, *, started: bool, window: Window,
         now: float) -> model.Held | None:
    """None when the environment's version may enter it now; else why not, the first failing constraint.

    Constraints in order: no earlier environment marked the version bad; each ``depends_on``
    environment runs it healthy, for at least ``soak``; ``allowed_times`` is open; an approval bound
    to (application, environment, version) was given, within ``approval.timeout`` of being asked; then, with
    ``schedules``, one of them fired since the version began waiting for it.
    """
    version = version_of(app, env)
    if started:
        return None
    for prev in earlier(app, env):
        bad = facts.get((app.name, prev.name, version, FactKind.BAD))
        if bad is not None:
            return model.Held(model.Hold.BAD_VERSION, f"version {version} failed in {prev.name} and is not "
                              f"promoted past it: {bad.detail}; commit a newer version",
                              waits_for=f"a version newer than {version}")
    for dep in env.depends_on:
        healthy = facts.get((app.name, dep, version, FactKind.HEALTHY))
        if healthy is None:
            return model.Held(model.Hold.DEPENDS_ON, f"waiting for {dep} to run version {version} healthy",
                              waits_for=f"{dep} healthy at {version}")
        if now < healthy.at + env.soak_s:
            until = healthy.at + env.soak_s
            return model.Held(model.Hold.SOAK, f"soaking version {version} in {dep} for "
                              f"{format_seconds(env.soak_s)}: {_left(until - now)} left",
                              waits_for=f"{dep} healthy at {version} for {format_seconds(env.soak_s)}", until=until)
    if not window.open:
        return model.Held(model.Hold.ALLOWED_TIMES, f"outside the allowed times of {env.name}: {window.message}",
                          waits_for="an allowed time", until=window.next_open)
    if env.approval is not None:
        held = _approval(app, env, version, facts, now)
        if held is not None:
            return held
    if env.schedules:
        return _scheduled(app, env, version, facts, now)
    return None


def _approval(app: model.Application, env: model.Environment, version: str, facts: Facts,
              now: float) -> model.Held | None:
    """Approved (a late approval still counts: a person decided), or why not."""
    if env.approval is None:
        return None
    rejected = facts.get((app.name, env.name, version, FactKind.REJECTED))
    if rejected is not None:
        return model.Held(model.Hold.REJECTED, f"version {version} was rejected for {env.name} by "
                          f"{rejected.detail or 'someone'}; commit a newer version",
                          waits_for=f"a version newer than {version}")
    if (app.name, env.name, version, FactKind.APPROVED) in facts:
        return None
    asked = facts.get((app.name, env.name, version, FactKind.AWAITING))
    hint = f"reconciler approve {app.name} --env {env.name} --version {version}"
    if asked is not None and env.approval.timeout_s and now >= asked.at + env.approval.timeout_s:
        return model.Held(model.Hold.REJECTED, f"nobody approved version {version} for {env.name} within "
                          f"{format_seconds(env.approval.timeout_s)}; commit a newer version",
                          waits_for=f"a version newer than {version}")
    deadline = asked.at + env.approval.timeout_s if asked is not None and env.approval.timeout_s else None
    return model.Held(model.Hold.ENV_APPROVAL, f"waiting for approval of version {version} for {env.name} "
                      f"({hint})", waits_for=f"approval ({hint})", until=deadline, command=hint)


def _scheduled(app: model.Application, env: model.Environment, version: str, facts: Facts,
               now: float) -> model.Held | None:
    """Open once a schedule fired at or after the version began waiting for one (a durable fact)."""
    times = ", ".join(s.describe() for s in env.schedules)
    since = facts.get((app.name, env.name, version, FactKind.SCHEDULED))
    tick = schedules.next_firing(env.schedules, since.at if since is not None else now)
    if since is not None and tick is not None and tick <= now:
        return None
    left = f": {_left(tick - now)} left" if tick is not None else ""
    return model.Held(model.Hold.SCHEDULE, f"version {version} enters {env.name} at its next scheduled time "
                      f"({times}){left}", waits_for=f"a scheduled time ({times})", until=tick)


_WAITS = {model.Hold.ENV_APPROVAL: FactKind.AWAITING, model.Hold.SCHEDULE: FactKind.SCHEDULED}


def asks(app: model.Application, env: model.Environment, held: model.Held | None, facts: Facts,
         now: float) -> Fact | None:
    """The fact to write when an approval (its timeout runs from then) or a schedule starts being awaited."""
    version = version_of(app, env)
    kind = _WAITS.get(held.kind) if held is not None else None
    if kind is None or (app.name, env.name, version, kind) in facts:
        return None
    return Fact(app.name, env.name, version, kind, now)


def state_of(obs: Observation, held: model.Held | None, facts: Facts, app: str) -> str:
    """The pipeline view's word for one environment: deployed, deploying, waiting, failed or bad."""
    if (app, obs.environment, obs.version, FactKind.BAD) in facts:
        return "failed"
    if held is not None:
        return "bad" if held.kind in (model.Hold.BAD_VERSION, model.Hold.REJECTED) else "waiting"
    if obs.healthy:
        return "deployed"
    return "deploying"


def _left(seconds: float) -> str:
    """``1h 20m``, ``4m 10s``, ``9s``: what people read in a status line."""
    s = max(int(seconds + 0.999), 0)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    if h:
        return f"{h}h {m}m" if m else f"{h}h"
    if m:
        return f"{m}m {sec}s" if sec else f"{m}m"
    return f"{sec}s"


def dependency_hold(app: model.Application, environment: str, others: Mapping[str, Mapping[str, Observation]],
                    facts: Facts) -> model.Held | None:
    """The first ``depends_on`` application whose change in ``environment`` has not succeeded, as a hold.

    Without environments of its own, every dependency holds the whole application.
    """
    for dep in app.depends_on:
        if app.environments and dep.environment != environment:
            continue
        obs = others.get(dep.application, {}).get(dep.environment)
        if obs is None:
            continue  # the loader refuses unknown names; an application being read later is not waited on
        if (dep.application, dep.environment, obs.version, FactKind.BAD) in facts:
            return model.Held(model.Hold.APP_DEPENDENCY, f"waiting for {dep.application} in {dep.environment}: its "
                              f"version {obs.version} failed there", waits_for=f"{dep.application} fixed in "
                              f"{dep.environment}")
        if not obs.healthy:
            return model.Held(model.Hold.APP_DEPENDENCY, f"waiting for {dep.application}'s change in "
                              f"{dep.environment} (version {obs.version}) to succeed",
                              waits_for=f"{dep.application} healthy at {obs.version} in {dep.environment}")
    return None


def limit_regions(changes: Iterable[model.Change], limits: Mapping[tuple[str, str], int],
                  busy: Mapping[tuple[str, str], set[str]]) -> tuple[list[model.Change],
                                                                    list[tuple[model.Change, model.Held]]]:
    """``max_concurrent``: changes putting a version into more regions of an environment than its limit wait.

    ``limits`` maps (application, environment) to its limit; ``busy`` to the regions (``provider/account/
    region``) whose deployment is running already. Deployments that already started (no group to create)
    go first, then by wave and key, so a crash or a restart never strands a half-done region.
    """
    out: list[model.Change] = []
    held: list[tuple[model.Change, model.Held]] = []
    taken: dict[tuple[str, str], set[str]] = {k: set(v) for k, v in busy.items()}

    def order(c: model.Change) -> tuple[bool, int, str]:
        return any(s.kind is model.StepKind.CREATE for s in c.steps), c.wave, c.key

    for c in sorted(changes, key=order):
        env = c.desired.environment if c.desired is not None else ""
        limit = limits.get((c.application, env), 0)
        region = f"{c.provider}/{c.account}/{c.region}"
        if not limit or not any(s.kind in (model.StepKind.CREATE, model.StepKind.ENABLE) for s in c.steps):
            out.append(c)
            continue
        now = taken.setdefault((c.application, env), set())
        if region in now or len(now) < limit:
            now.add(region)
            out.append(c)
            continue
        names = ", ".join(sorted(r.rsplit("/", 1)[1] for r in now))
        held.append((c, model.Held(model.Hold.MAX_CONCURRENT, f"{env} takes a new version in at most {limit} "
                                   f"region(s) at a time; deploying now: {names}",
                                   waits_for=f"one of {names} to finish")))
    keep = {id(c) for c in out}
    return [c for c in changes if id(c) in keep], held

"""Diff desired against live and plan red/black steps. Pure: values in, values out.

The planner is *convergent*: it derives the steps from live state alone, so an
interrupted deployment (a crash after any step) is simply re-planned from what
exists and finishes, and a plan made right after a successful apply is empty.

Per (application, cluster, provider, account, region), with ``h`` the desired
spec hash:

* no owned group                        -> ``create`` (create, wait healthy, enable)
* the serving group has ``h``            -> nothing, or ``resize`` for capacity only,
                                           or finish a red/black (disable older groups)
* the newest group has ``h`` but is out
  of traffic (interrupted deploy, drift) -> ``replace``: wait healthy, enable, then retire
* an older, retained group has ``h``     -> ``rollback``: resize it back, wait, enable, retire
* otherwise                              -> ``replace``: the full red/black of DESIGN §4
* owned groups of a cluster gone from Git -> ``destroy`` (only with prune)
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from reconciler import model
from reconciler.model import Action, Capacity, ServerGroup, Step, StepKind

ZERO = Capacity(0, 0, 0)


@dataclass(frozen=True, slots=True)
class LiveState:
    """Server groups read from the providers; ``unreadable`` regions are never planned."""

    groups: tuple[ServerGroup, ...] = ()
    unreadable: Mapping[tuple[str, str, str], str] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """Hash of what a saved plan depends on (membership, traffic, capacity, spec), not health."""
        rows = sorted(
            (g.provider, g.account, g.region, g.name, g.enabled, g.capacity.as_dict()["desired"],
             g.capacity.min, g.capacity.max, g.spec_hash)
            for g in self.groups
            if g.managed
        )
        return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Skip:
    key: str
    application: str
    cluster: str
    reason: str


@dataclass(frozen=True, slots=True)
class Outcome:
    plan: model.Plan
    skipped: tuple[Skip, ...] = ()
    drift: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Options:
    prune: bool = False
    stalled: Mapping[str, str] = field(default_factory=dict)  # change key -> spec hash that stalled
    paused: frozenset[str] = frozenset()  # application or cluster names
    base_commit: str = ""


def plan(desired: model.DesiredState, live: LiveState, options: Options | None = None) -> Outcome:
    opts = options or Options()
    by_key: dict[tuple[str, str, str, str], list[ServerGroup]] = defaultdict(list)
    for g in live.groups:
        by_key[(g.provider, g.account, g.region, g.cluster)].append(g)

    changes: list[model.Change] = []
    skipped: list[Skip] = []
    drift: list[str] = []
    wanted: set[tuple[str, str, str, str]] = set()

    for spec in desired.clusters():
        for wave_no, wave in enumerate(spec.waves):
            for region in wave:
                key = (spec.provider, spec.account, region, spec.name)
                wanted.add(key)
                skey = "/".join(key)
                if (spec.provider, spec.account, region) in live.unreadable:
                    why = live.unreadable[(spec.provider, spec.account, region)]
                    skipped.append(Skip(skey, spec.application, spec.name, f"live state unreadable: {why}"))
                    continue
                change = plan_cluster(spec, region, wave_no, by_key.get(key, []), desired.commit)
                if change is None:
                    continue
                if spec.application in opts.paused or spec.name in opts.paused:
                    skipped.append(Skip(skey, spec.application, spec.name, "paused"))
                    continue
                if opts.stalled.get(skey) == change.spec_hash and change.action is not Action.ROLLBACK:
                    skipped.append(Skip(skey, spec.application, spec.name,
                                        f"stalled: spec {change.spec_hash} kept failing; commit a fix"))
                    continue
                if change.reason.startswith("drift"):
                    drift.append(f"{skey}: {change.reason}")
                changes.append(change)

    orphan_keys = sorted(k for k, groups in by_key.items() if k not in wanted and any(g.managed for g in groups))
    for key in orphan_keys:
        owned = [g for g in by_key[key] if g.managed]
        app = owned[0].application
        skey = "/".join(key)
        if key[:3] in live.unreadable:
            continue
        if not opts.prune:
            skipped.append(Skip(skey, app, key[3], "not in Git; kept because prune is off"))
            continue
        if desired.broken_files:
            skipped.append(Skip(skey, app, key[3],
                                f"not destroyed: {len(desired.broken_files)} spec file(s) have errors"))
            continue
        if app in opts.paused or key[3] in opts.paused:
            skipped.append(Skip(skey, app, key[3], "paused"))
            continue
        changes.append(_destroy(key, owned, desired.commit))

    changes.sort(key=lambda c: (c.application, c.cluster, c.provider, c.account, c.wave, c.region))
    result = model.Plan(
        commit=desired.commit,
        changes=tuple(changes),
        problems=desired.problems,
        base_commit=opts.base_commit,
        live_fingerprint=live.fingerprint(),
    )
    return Outcome(result, tuple(skipped), tuple(drift))


def plan_cluster(
    spec: model.ClusterSpec, region: str, wave: int, groups: list[ServerGroup], commit: str
) -> model.Change | None:
    """The change for one cluster in one region, or None when live already matches."""
    h = spec.launch.spec_hash()
    owned = _newest_first([g for g in groups if g.managed])
    enabled = [g for g in owned if g.enabled]

    def change(action: Action, steps: list[Step], current: ServerGroup | None, target: str,
               reason: str) -> model.Change:
        return model.Change(
            application=spec.application, cluster=spec.name, provider=spec.provider,
            account=spec.account, region=region, action=action, steps=tuple(steps),
            current=current, desired_server_group=target, desired=spec, spec_hash=h,
            wave=wave, reason=reason, commit=commit,
        )

    wait = Step(StepKind.WAIT_HEALTHY, "", seconds=spec.health.timeout_s,
                healthy_percent=spec.health.healthy_percent)

    if not owned:
        name = next_name(spec.name, groups)
        return change(Action.CREATE, [
            Step(StepKind.CREATE, name, capacity=spec.capacity), _at(wait, name), Step(StepKind.ENABLE, name),
        ], None, name, "first deploy")

    matches = [g for g in owned if g.spec_hash == h]
    if matches:
        m = matches[0]
        target_cap = _target_capacity(spec, m, enabled)
        if m.enabled:
            others = [g for g in enabled if g.name != m.name]
            tail = _retire(spec, m.name, others, owned)
            resize = [] if _same_capacity(spec, m.capacity, target_cap) else [
                Step(StepKind.RESIZE, m.name, capacity=target_cap)]
            if not tail:
                if not resize:
                    return None
                reason = "capacity changed" if not spec.autoscaling else "autoscaling bounds changed"
                if m.commit and m.commit == commit:
                    reason = f"drift: {m.name} was resized outside the reconciler"
                return change(Action.RESIZE, resize, m, m.name, reason)
            return change(Action.REPLACE, [*resize, _at(wait, m.name), *tail], others[0] if others else m,
                          m.name, f"finish the deployment of {m.name}")
        current = enabled[0] if enabled else None
        resize = [] if _same_capacity(spec, m.capacity, target_cap) and m.capacity.desired > 0 else [
            Step(StepKind.RESIZE, m.name, capacity=target_cap)]
        steps = [*resize, _at(wait, m.name), Step(StepKind.ENABLE, m.name),
                 *_retire(spec, m.name, enabled, owned)]
        if m is owned[0]:
            reason = (f"drift: {m.name} was taken out of traffic outside the reconciler"
                      if not current and m.commit == commit else f"resume: {m.name} exists but is not in traffic")
            action = Action.REPLACE if len(owned) > 1 else Action.CREATE
            return change(action, steps, current, m.name, reason)
        return change(Action.ROLLBACK, steps, current, m.name,
                      f"the desired spec equals retained group {m.name}")

    current = enabled[0] if enabled else None
    name = next_name(spec.name, groups)
    cap = _target_capacity(spec, current, enabled) if current else spec.capacity
    steps = [Step(StepKind.CREATE, name, capacity=cap), _at(wait, name), Step(StepKind.ENABLE, name),
             *_retire(spec, name, enabled, owned)]
    return change(Action.REPLACE, steps, current, name, "immutable fields changed")


def _retire(spec: model.ClusterSpec, new: str, enabled_others: Iterable[ServerGroup],
            owned: list[ServerGroup]) -> list[Step]:
    """Steps after ``new`` serves: disable older groups, scale them down, destroy beyond retention."""
    steps: list[Step] = []
    strategy = spec.strategy
    to_disable = [g for g in enabled_others if g.name != new]
    if to_disable:
        if strategy.delay_before_disable_s > 0:
            steps.append(Step(StepKind.DELAY, new, seconds=strategy.delay_before_disable_s,
                              reason="delay before disable"))
        steps += [Step(StepKind.DISABLE, g.name) for g in to_disable]
    rest = [g for g in owned if g.name != new]  # newest first; all disabled once the above ran
    keep, drop = rest[: strategy.keep_disabled], rest[strategy.keep_disabled:]
    if strategy.scale_down:
        shrink = [g for g in keep if g.capacity != ZERO]
        if shrink and strategy.delay_before_scale_down_s > 0:
            steps.append(Step(StepKind.DELAY, new, seconds=strategy.delay_before_scale_down_s,
                              reason="delay before scale down"))
        steps += [Step(StepKind.RESIZE, g.name, capacity=ZERO, reason="scale down disabled group")
                  for g in shrink]
    steps += [Step(StepKind.DESTROY, g.name, reason=f"beyond keep_disabled={strategy.keep_disabled}")
              for g in drop]
    return steps


def _destroy(key: tuple[str, str, str, str], owned: list[ServerGroup], commit: str) -> model.Change:
    ordered = _newest_first(owned)
    steps = [Step(StepKind.DISABLE, g.name) for g in ordered if g.enabled]
    steps += [Step(StepKind.DESTROY, g.name, reason="cluster removed from Git") for g in reversed(ordered)]
    current = next((g for g in ordered if g.enabled), ordered[0])
    return model.Change(
        application=ordered[0].application, cluster=key[3], provider=key[0], account=key[1],
        region=key[2], action=Action.DESTROY, steps=tuple(steps), current=current,
        desired_server_group=None, desired=None, spec_hash="", wave=0,
        reason="cluster removed from Git and prune is on", commit=commit,
    )


def _target_capacity(spec: model.ClusterSpec, serving: ServerGroup | None,
                     enabled: list[ServerGroup]) -> Capacity:
    """Spec capacity; under autoscaling, the serving group's desired clamped to the spec's bounds."""
    if not spec.autoscaling:
        return spec.capacity
    source = enabled[0] if enabled else serving
    if source is None or source.capacity.desired == 0:
        return spec.capacity
    return spec.capacity.clamp(source.capacity.desired)


def _same_capacity(spec: model.ClusterSpec, live: Capacity, target: Capacity) -> bool:
    if spec.autoscaling:
        return live.min == target.min and live.max == target.max and target.min <= live.desired <= target.max
    return live == target


def _at(step: Step, name: str) -> Step:
    return Step(step.kind, name, step.capacity, step.seconds, step.healthy_percent, step.reason)


def _newest_first(groups: Iterable[ServerGroup]) -> list[ServerGroup]:
    return sorted(groups, key=lambda g: (g.created_at, g.version), reverse=True)


def next_name(cluster: str, groups: Iterable[ServerGroup]) -> str:
    """Frigga: last created + 1 (mod 1000), skipping taken slots."""
    groups = list(groups)
    taken = {g.version for g in groups}
    if not groups:
        return model.server_group_name(cluster, 0)
    last = _newest_first(groups)[0].version
    for i in range(1, 1001):
        v = (last + i) % 1000
        if v not in taken:
            return model.server_group_name(cluster, v)
    raise ValueError(f"cluster {cluster} has no free version slot (1000 groups)")

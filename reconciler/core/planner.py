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
* owned groups of a cluster gone from Git -> ``destroy`` (only with prune), recorded with what must
  serve first: an application's other clusters in the region (a rename or a move to another
  stack, account or provider) are in ``after``, so the old cluster goes only once they serve

A change that puts a spec into service in a later wave lists the earlier waves' regions in
``after``; those that do not serve the same spec hash yet are in ``waiting`` (docs/safety.md).

Why it is over 400 lines: ``plan_cluster`` keeps the decision table above in one function, so its cases
read in order, and pruning and the manual rollback (``rollback_to``) need the same ownership and step rules
beside it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from reconciler.core import memo, model, resource_plan, resources
from reconciler.core.model import Action, Capacity, ServerGroup, SkipKind, Step, StepKind
from reconciler.core.strategies import canary, retire, rolling

ZERO = Capacity(0, 0, 0)


@dataclass(frozen=True, slots=True)
class LiveState:
    """Server groups read from the providers; ``unreadable`` regions are never planned."""

    groups: tuple[ServerGroup, ...] = ()
    unreadable: Mapping[tuple[str, str, str], str] = field(default_factory=dict)
    resources: tuple[resources.LiveResource, ...] = ()
    resources_read: frozenset[tuple[str, str, str]] = frozenset()
    """(provider, account, region) whose load balancers and security groups were read (providers that have them)."""

    def resource_inputs(self, *, prune: bool = False, paused: frozenset[str] = frozenset(),
                        stalled: Collection[tuple[str, str]] = frozenset(),
                        leaving: Mapping[tuple[str, str, str, str], str] | None = None) -> resource_plan.Inputs:
        return resource_plan.Inputs(groups=self.groups, resources=self.resources, read=self.resources_read,
                                    unreadable=self.unreadable, prune=prune, paused=paused,
                                    stalled=frozenset(stalled), leaving=dict(leaving or {}))

    def fingerprint(self, autoscaled: Collection[tuple[str, str, str, str]] = ()) -> str:
        """Hash of what a saved plan depends on (membership, traffic, capacity, spec), not health.

        The desired size of groups in ``autoscaled`` clusters (provider, account, region, cluster)
        is left out: the autoscaler owns it, so its moves do not make a reviewed plan stale.
        """
        rows = sorted(
            (g.provider, g.account, g.region, g.name, g.enabled,
             None if (g.provider, g.account, g.region, g.cluster) in autoscaled else g.capacity.desired,
             g.capacity.min, g.capacity.max, g.spec_hash)
            for g in self.groups
            if g.managed
        )
        owned = sorted((r.provider, r.account, r.region, r.kind.value, r.name, r.spec_hash, list(r.settings),
                        list(r.rules)) for r in self.resources if r.managed)
        if owned:  # only then: fingerprints of fleets without resources stay as they were
            return hashlib.sha256(json.dumps([rows, owned]).encode()).hexdigest()[:16]
        return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Skip:
    key: str
    application: str
    cluster: str
    reason: str
    kind: SkipKind


@dataclass(frozen=True, slots=True)
class Outcome:
    plan: model.Plan
    skipped: tuple[Skip, ...] = ()
    drift: tuple[str, ...] = ()
    resource_skipped: tuple[resource_plan.ResourceSkip, ...] = ()


@dataclass(frozen=True, slots=True)
class Options:
    prune: bool = False
    stalled: Collection[tuple[str, str]] = frozenset()  # (change key, spec hash) pairs that kept failing
    paused: frozenset[str] = frozenset()  # application or cluster names
    base_commit: str = ""
    app_files: Mapping[str, str] = field(default_factory=dict)
    """Application -> the spec file that last defined it (from earlier passes or the base commit).
    An application missing from Git whose file is still there was renamed, not removed."""
    rolling_origins: Mapping[str, Capacity] = field(default_factory=dict)
    """Rolling deployments in progress: ``rolling.origin_key`` -> an old group's capacity when it began."""
    canaries: Mapping[str, canary.Progress] = field(default_factory=dict)
    """Canary deployments in progress, by ``canary.progress_key`` of the cluster key."""
    rolling_judgments: Mapping[str, rolling.Judgment] = field(default_factory=dict)
    """Rolling deployments' manual judgments, by ``rolling.judgment_key`` of the cluster key."""
    clusters: memo.PerKey[model.Change | None] | None = field(default=None, compare=False)
    """Each cluster's change of earlier passes with what it was made of (``plan_cluster`` is a pure function of
    them): a commit that changes one file plans that file's clusters only. None plans every cluster."""


Key = tuple[str, str, str, str]


def plan(desired: model.DesiredState, live: LiveState, options: Options | None = None) -> Outcome:
    opts = options or Options()
    by_key: dict[Key, list[ServerGroup]] = defaultdict(list)
    for g in live.groups:
        by_key[(g.provider, g.account, g.region, g.cluster)].append(g)

    changes: list[model.Change] = []
    skipped: list[Skip] = []
    drift: list[str] = []
    wanted: set[Key] = set()
    autoscaled: set[Key] = set()

    for spec in desired.clusters():
        for wave_no, wave in enumerate(spec.waves):
            for region in wave:
                key = (spec.provider, spec.account, region, spec.name)
                wanted.add(key)
                if spec.autoscaling:
                    autoscaled.add(key)
                skey = "/".join(key)
                if (spec.provider, spec.account, region) in live.unreadable:
                    why = live.unreadable[(spec.provider, spec.account, region)]
                    skipped.append(Skip(skey, spec.application, spec.name, f"live state unreadable: {why}",
                                        SkipKind.UNREADABLE))
                    continue
                if spec.image_pattern is not None and spec.resolved(region) is None:
                    skipped.append(Skip(skey, spec.application, spec.name, "image pattern not resolved here "
                                        "(see the spec problem)", SkipKind.IMAGE))
                    continue
                change = _planned(opts, key, spec.for_region(region), wave_no, by_key.get(key, []), desired.commit)
                if change is None:
                    continue
                if spec.application in opts.paused or spec.name in opts.paused:
                    skipped.append(Skip(skey, spec.application, spec.name, "paused", SkipKind.PAUSED))
                    continue
                if (skey, change.spec_hash) in opts.stalled and change.action is not Action.ROLLBACK:
                    skipped.append(Skip(skey, spec.application, spec.name,
                                        f"stalled: spec {change.spec_hash} kept failing; commit a fix",
                                        SkipKind.STALLED))
                    continue
                if change.reason.startswith("drift"):
                    drift.append(f"{skey}: {change.reason}")
                if wave_no > 0 and delivers(change):
                    change = _gate_on_earlier_waves(change, spec, wave_no, by_key)
                changes.append(change)

    if opts.clusters is not None:
        opts.clusters.sweep()  # clusters gone from Git are forgotten
    changes += _prune(desired, live, opts, by_key, wanted, skipped)
    changes.sort(key=lambda c: (c.application, c.cluster, c.provider, c.account, c.wave, c.region))
    res = resource_plan.plan_resources(desired, live.resource_inputs(
        prune=opts.prune, paused=opts.paused, stalled=opts.stalled, leaving=resource_plan.leaving(changes)))
    result = model.Plan(
        commit=desired.commit,
        changes=tuple(changes),
        problems=desired.problems,
        notices=desired.notices,
        base_commit=opts.base_commit,
        live_fingerprint=live.fingerprint(autoscaled),
        resource_changes=res.changes,
    )
    return Outcome(result, tuple(skipped), tuple(drift) + res.drift, res.skipped)


def _planned(opts: Options, key: Key, spec: model.ClusterSpec, wave: int, groups: list[ServerGroup],
             commit: str) -> model.Change | None:
    """``plan_cluster``, or its last result for the same inputs. The commit enters a change as its field
    and through which live groups were made by it, so a new commit reuses a change with its commit set."""
    if opts.clusters is None or not opts.clusters.keeps:
        return plan_cluster(spec, key[2], wave, groups, commit, origins=opts.rolling_origins, canaries=opts.canaries,
                            judgments=opts.rolling_judgments)
    inputs = (spec, wave, tuple(groups), tuple(g.commit == commit for g in groups), opts.rolling_origins,
              opts.canaries, opts.rolling_judgments)
    change = opts.clusters.get(key, inputs)
    if change is memo.MISSING:
        change = plan_cluster(spec, key[2], wave, groups, commit, origins=opts.rolling_origins, canaries=opts.canaries,
                              judgments=opts.rolling_judgments)
    elif change is None or change.commit == commit:
        return change
    else:
        change = model.replaced(change, "commit", commit)
    opts.clusters.put(key, inputs, change)
    return change


def delivers(change: model.Change) -> bool:
    """Does this change put its spec into service (a new group, or enabling one)? Those wait for waves."""
    return any(s.kind in (StepKind.CREATE, StepKind.ENABLE) for s in change.steps)


def serves(groups: Iterable[ServerGroup], *, healthy_percent: int = 1, spec_hash: str | None = None) -> bool:
    """Does some owned, enabled group (with ``spec_hash``, when given) have enough healthy instances?"""
    for g in groups:  # a loop, not any(): it runs for every later-wave change of a 10,000-cluster plan
        if g.managed and g.enabled and g.healthy > 0 and (spec_hash is None or g.spec_hash == spec_hash):
            desired = g.capacity.desired
            if desired == 0 or g.healthy * 100 >= healthy_percent * desired:
                return True
    return False


def _gate_on_earlier_waves(change: model.Change, spec: model.ClusterSpec, wave_no: int,
                           by_key: Mapping[Key, list[ServerGroup]]) -> model.Change:
    """Record the earlier waves' regions this change waits for: each must serve the same spec hash.

    Derived from live state, so it holds across passes, crashes and restarts: a stalled, held or
    unreadable region of an earlier wave holds every later one.
    """
    earlier = [r for w in spec.waves[:wave_no] for r in w]
    after = tuple(model.cluster_key(spec.provider, spec.account, r, spec.name) for r in earlier)
    waiting = tuple(  # by pattern, each region runs its own image: its own spec hash
        k for r, k in zip(earlier, after, strict=True)
        if not serves(by_key.get((spec.provider, spec.account, r, spec.name), []),
                      healthy_percent=spec.health.healthy_percent,
                      spec_hash=spec.for_region(r).launch.spec_hash() if spec.images else change.spec_hash)
    )
    gated: model.Change = model.replaced(model.replaced(change, "after", after), "waiting", waiting)
    return gated  # two positional copies: cheaper than one keyword replace, 10,000 times a fleet


def _prune(desired: model.DesiredState, live: LiveState, opts: Options, by_key: Mapping[Key, list[ServerGroup]],
           wanted: set[Key], skipped: list[Skip]) -> list[model.Change]:
    """Destroys for owned clusters that are not in Git, each with what must serve first."""
    out: list[model.Change] = []
    orphan_keys = sorted(k for k, groups in by_key.items() if k not in wanted and any(g.managed for g in groups))
    files_now = {a.source.file for a in desired.applications.values()} | set(desired.broken_files) \
        | set(desired.unread_files)
    unread_apps: dict[str, str] = {}
    for file, apps in sorted(desired.unread_files.items()):
        for a in apps:
            unread_apps.setdefault(a, file)
    specs_by_app: dict[str, list[model.ClusterSpec]] = defaultdict(list)
    for c in desired.clusters():
        specs_by_app[c.application].append(c)
    for key in orphan_keys:
        owned = [g for g in by_key[key] if g.managed]
        app = owned[0].application
        skey = "/".join(key)
        if key[:3] in live.unreadable:
            continue
        own_file = opts.app_files.get(app, "")
        if own_file in desired.broken_files:  # not gone from Git: its file is broken, so say that, not "prune"
            skipped.append(Skip(skey, app, key[3], f"kept: {own_file} has errors; fix it to reconcile {app}",
                                SkipKind.BROKEN_SPECS))
            continue
        if not opts.prune:
            skipped.append(Skip(skey, app, key[3], "not in Git; kept because prune is off", SkipKind.PRUNE_OFF))
            continue
        if desired.broken_files:
            skipped.append(Skip(skey, app, key[3],
                                f"not destroyed: {len(desired.broken_files)} spec file(s) have errors",
                                SkipKind.BROKEN_SPECS))
            continue
        holder = unread_apps.get(app) or unread_apps.get("*")
        if holder is not None:
            skipped.append(Skip(skey, app, key[3],
                                f"not destroyed: {holder} is not read as a spec (only .yaml and .yml are) and may "
                                f"define {app}; rename or remove it", SkipKind.UNREAD_FILE))
            continue
        if app in opts.paused or key[3] in opts.paused:
            skipped.append(Skip(skey, app, key[3], "paused", SkipKind.PAUSED))
            continue
        out.append(_destroy_orphan(key, owned, desired, opts, by_key, files_now, specs_by_app))
    return out


def files_read(files: Mapping[str, str], groups: Iterable[ServerGroup]) -> dict[str, str]:
    """What ``plan`` can read of ``Options.app_files``: ``_prune`` looks up only the application of managed
    live groups. The unchanged-pass memo compares this instead of every entry, so that a daemon's first pass,
    which records the file of every application, does not make the second decide anew while those
    applications have no live groups yet. (Finer is not exact: an application that resource checking holds
    leaves the desired state after the memo's check, and then whether its file is broken decides a message.)"""
    return {app: files.get(app, "") for app in {g.application for g in groups if g.managed}}


def _destroy_orphan(key: Key, owned: list[ServerGroup], desired: model.DesiredState, opts: Options,
                    by_key: Mapping[Key, list[ServerGroup]], files_now: set[str],
                    specs_by_app: Mapping[str, list[model.ClusterSpec]]) -> model.Change:
    region, cluster = key[2], key[3]
    app = owned[0].application
    if app in desired.applications:
        successors = [app]
    else:  # renamed inside its file? then the applications that file defines now carry its traffic
        file = opts.app_files.get(app, "")
        successors = sorted(a.name for a in desired.applications.values() if file and a.source.file == file)
    replacements = [c for a in successors for c in specs_by_app.get(a, []) if region in c.regions]
    serving = serves(owned)
    after = tuple(model.cluster_key(c.provider, c.account, region, c.name) for c in replacements)
    names = ", ".join(f"{c.name} ({c.provider}/{c.account})" for c in replacements)
    if replacements:
        removal = model.Removal.MOVED
        waiting = tuple(k for c, k in zip(replacements, after, strict=True) if serving and not serves(
            by_key.get((c.provider, c.account, region, c.name), []), healthy_percent=c.health.healthy_percent))
        reason = (f"{cluster} ({key[0]}/{key[1]}) is no longer in {app}'s spec; {successors[0]} runs {names} "
                  f"in {region} instead: destroyed only after that serves")
    elif successors:
        removal, waiting = model.Removal.REGION_REMOVED, ()
        reason = (f"LAST SERVING CAPACITY: {successors[0]} is still in Git but has no cluster in {region} any "
                  f"more; this destroys everything {app} serves there" if serving else
                  f"{successors[0]} has no cluster in {region} any more; nothing of {cluster} serves there")
    else:
        removal, waiting = model.Removal.APP_REMOVED, ()
        file = opts.app_files.get(app, "")
        gone = f" ({file} deleted)" if file and file not in files_now else ""
        reason = (f"LAST SERVING CAPACITY: application {app} was removed from Git{gone}; this destroys "
                  f"everything it serves in {region}" if serving else
                  f"application {app} was removed from Git{gone}; nothing of {cluster} serves in {region}")
    change = _destroy(key, owned, desired.commit)
    return dataclasses.replace(change, reason=reason, after=after, waiting=waiting, removal=removal)


def plan_cluster(
    spec: model.ClusterSpec, region: str, wave: int, groups: list[ServerGroup], commit: str,
    *, origins: Mapping[str, Capacity] | None = None, canaries: Mapping[str, canary.Progress] | None = None,
    judgments: Mapping[str, rolling.Judgment] | None = None,
) -> model.Change | None:
    """The change for one cluster in one region, or None when live already matches."""
    rolls = spec.strategy.type is model.StrategyType.ROLLING_RED_BLACK
    h = spec.launch.spec_hash()
    owned = _newest_first([g for g in groups if g.managed])
    enabled = [g for g in owned if g.enabled]

    def change(action: Action, steps: list[Step], current: ServerGroup | None, target: str,
               reason: str, restore: tuple[tuple[str, Capacity], ...] = ()) -> model.Change:
        return model.Change(
            application=spec.application, cluster=spec.name, provider=spec.provider,
            account=spec.account, region=region, action=action, steps=tuple(steps),
            current=current, desired_server_group=target, desired=spec, spec_hash=h,
            wave=wave, reason=reason, commit=commit, restore=restore,
        )

    def rolling_change(new_live: ServerGroup | None, target: str, reason: str) -> model.Change:
        olds = [g for g in enabled if g.name != target]
        ckey = model.cluster_key(spec.provider, spec.account, region, spec.name)
        restore = rolling.restore_of(ckey, target, olds, origins or {})
        steps = rolling.steps(spec, target, new_live, olds, owned, restore, wait,
                              (judgments or {}).get(rolling.judgment_key(ckey)))
        return change(Action.REPLACE, steps, olds[0], target, reason, restore)

    wait = Step(StepKind.WAIT_HEALTHY, "", seconds=spec.health.timeout_s,
                healthy_percent=spec.health.healthy_percent)

    if spec.strategy.canary is not None:
        ckey = model.cluster_key(spec.provider, spec.account, region, spec.name)
        planned = canary.plan(spec, owned, groups, h, (canaries or {}).get(canary.progress_key(ckey)), wait,
                              next_name, lambda serving: _target_capacity(spec, None, list(serving)), ckey,
                              origins, (judgments or {}).get(rolling.judgment_key(ckey)))
        if planned is not None:
            return change(*planned)

    if not owned:
        name = next_name(spec.name, groups)
        return change(Action.CREATE, [
            Step(StepKind.CREATE, name, capacity=spec.capacity), _at(wait, name),
            *retire.verify_steps(spec, name), Step(StepKind.ENABLE, name),
        ], None, name, "first deploy")

    matches = [g for g in owned if g.spec_hash == h]
    if matches and rolls and matches[0] is owned[0] and any(g.name != owned[0].name for g in enabled):
        m = matches[0]
        full = m.enabled and m.capacity == spec.capacity
        return rolling_change(m, m.name, f"finish the deployment of {m.name}" if full
                              else f"resume: rolling deployment of {m.name}")
    if matches:
        m = matches[0]
        target_cap = _target_capacity(spec, m, enabled)
        if m.enabled:
            others = [g for g in enabled if g.name != m.name]
            tail = retire.steps(spec, m.name, others, owned)
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
        steps = _back_in_service(spec, m, enabled, owned)
        if m is owned[0]:
            reason = (f"drift: {m.name} was taken out of traffic outside the reconciler"
                      if not current and m.commit == commit else f"resume: {m.name} exists but is not in traffic")
            action = Action.REPLACE if len(owned) > 1 else Action.CREATE
            return change(action, steps, current, m.name, reason)
        return change(Action.ROLLBACK, steps, current, m.name,
                      f"the desired spec equals retained group {m.name}")

    current = enabled[0] if enabled else None
    name = next_name(spec.name, groups)
    if rolls and current is not None:
        return rolling_change(None, name, "immutable fields changed")
    cap = _target_capacity(spec, current, enabled) if current else spec.capacity
    steps = [Step(StepKind.CREATE, name, capacity=cap), _at(wait, name),
             *(retire.verify_steps(spec, name) if current is None else []), Step(StepKind.ENABLE, name),
             *retire.steps(spec, name, enabled, owned)]
    return change(Action.REPLACE, steps, current, name, "immutable fields changed")


def rollback_to(spec: model.ClusterSpec, region: str, target: ServerGroup, groups: list[ServerGroup],
                commit: str, *, reason: str) -> model.Change:
    """The change that brings ``target``, a retained group of ``spec``'s cluster, back into traffic now.

    A manual rollback names its group, so nothing is derived from a spec hash: the steps are those of a
    revert in Git (resize back, wait healthy, enable, retire the others), the change's ``spec_hash`` is
    the target's own and its ``desired`` is the cluster as it will serve afterwards (the target's launch
    settings, the spec's capacity, health and strategy).
    """
    owned = _newest_first([g for g in groups if g.managed])
    enabled = [g for g in owned if g.enabled]
    return model.Change(
        application=spec.application, cluster=spec.name, provider=spec.provider, account=spec.account,
        region=region, action=Action.ROLLBACK, steps=tuple(_back_in_service(spec, target, enabled, owned)),
        current=enabled[0] if enabled else None, desired_server_group=target.name,
        desired=dataclasses.replace(spec, launch=target.launch), spec_hash=target.spec_hash, wave=0,
        reason=reason, commit=commit,
    )


def _back_in_service(spec: model.ClusterSpec, m: ServerGroup, enabled: list[ServerGroup],
                     owned: list[ServerGroup]) -> list[Step]:
    """An existing group out of traffic back in: resize if needed, wait healthy, enable, retire the others."""
    target_cap = _target_capacity(spec, m, enabled)
    resize = [] if _same_capacity(spec, m.capacity, target_cap) and m.capacity.desired > 0 else [
        Step(StepKind.RESIZE, m.name, capacity=target_cap)]
    alone = not [g for g in enabled if g.name != m.name]  # nothing else serves: hooks before enabling
    wait = Step(StepKind.WAIT_HEALTHY, m.name, seconds=spec.health.timeout_s,
                healthy_percent=spec.health.healthy_percent)
    return [*resize, wait, *(retire.verify_steps(spec, m.name) if alone else []),
            Step(StepKind.ENABLE, m.name), *retire.steps(spec, m.name, enabled, owned)]


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

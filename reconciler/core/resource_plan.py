"""Diff declared load balancers and security groups against live ones. Pure: values in, values out.

Per (provider, account, region, kind, name):

* declared, not live                      -> ``create`` (before any cluster naming it is created)
* declared, live and ours, fields differ  -> ``update`` in place; ``drift`` when the live spec hash is the
                                             desired one (someone edited it by hand)
* declared, live but not ours             -> skipped: never touched (clusters may still name it)
* ours, no longer declared                -> ``destroy`` only with prune, and only while nothing uses it:
                                             no server group (ours or not) and no other security group's
                                             rule names it, and no desired cluster names it

Convergent like the cluster planner: a resource kept because a cluster being destroyed still uses it is
destroyed on the first pass after the cluster is gone. Names a cluster uses that are neither declared nor
live are spec problems (``hold_unknown_references``): the application is held whole.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from reconciler.core import errors, model
from reconciler.core.model import SkipKind
from reconciler.core.resources import (
    FieldDiff,
    Kind,
    LiveResource,
    Placement,
    ResourceAction,
    ResourceChange,
    ResourceSpec,
    Rule,
    places_of,
    serves,
    users_index,
)

RKey = tuple[str, str, str, Kind, str]  # provider, account, region, kind, name


@dataclass(frozen=True, slots=True)
class ResourceSkip:
    key: str
    application: str
    name: str
    kind: SkipKind
    reason: str


@dataclass(frozen=True, slots=True)
class ResourceOutcome:
    changes: tuple[ResourceChange, ...] = ()
    skipped: tuple[ResourceSkip, ...] = ()
    drift: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Inputs:
    """What the resource diff needs besides the specs (mirrors ``planner.Options``)."""

    groups: tuple[model.ServerGroup, ...] = ()
    resources: tuple[LiveResource, ...] = ()
    read: frozenset[Placement] = frozenset()
    """Placements whose resources were read: only there is anything planned or checked."""
    unreadable: Mapping[Placement, str] = field(default_factory=dict)
    prune: bool = False
    paused: frozenset[str] = frozenset()
    stalled: frozenset[tuple[str, str]] = frozenset()
    leaving: Mapping[tuple[str, str, str, str], str] = field(default_factory=dict)
    """(provider, account, region, server group) -> the key of the cluster change of this plan that destroys it:
    a resource only those groups use is destroyed after them (``ResourceChange.after``)."""


def leaving(changes: Iterable[model.Change]) -> dict[tuple[str, str, str, str], str]:
    """The groups a plan's changes destroy, by the change that does."""
    return {(c.provider, c.account, c.region, s.server_group): c.key for c in changes for s in c.steps
            if s.kind is model.StepKind.DESTROY}


def declared(desired: model.DesiredState) -> dict[RKey, ResourceSpec]:
    """Every declared resource by where it lives (the first declaration wins; see ``plan_resources``)."""
    out: dict[RKey, ResourceSpec] = {}
    for app in desired.applications.values():
        for spec in app.resources:
            for prov, acc, region in spec.placements:
                out.setdefault((prov, acc, region, spec.kind, spec.name), spec)
    return out


def _key(k: RKey) -> str:
    return model.cluster_key(k[0], k[1], k[2], f"{k[3].value}:{k[4]}")


def plan_resources(desired: model.DesiredState, inputs: Inputs) -> ResourceOutcome:
    wanted = declared(desired)
    live = {(r.provider, r.account, r.region, r.kind, r.name): r for r in inputs.resources}
    named = _named_by_clusters(desired)
    changes: list[ResourceChange] = []
    skipped: list[ResourceSkip] = []
    drift: list[str] = []
    twice = _declared_twice(desired)
    users = users_index(inputs.groups, inputs.resources)
    staying = users_index(tuple(g for g in inputs.groups if (g.provider, g.account, g.region, g.name)
                                not in inputs.leaving), inputs.resources) if inputs.leaving else users
    for k, spec in sorted(wanted.items(), key=lambda kv: _key(kv[0])):
        place: Placement = (k[0], k[1], k[2])
        if place not in inputs.read:
            continue
        skey = _key(k)
        if k in twice:
            skipped.append(ResourceSkip(skey, spec.application, spec.name, SkipKind.CONFLICT,
                                        f"{spec.kind.label} {spec.name} is declared by {' and '.join(twice[k])}; "
                                        "keep one declaration"))
            continue
        current = live.get(k)
        if current is not None and not current.managed:
            skipped.append(ResourceSkip(skey, spec.application, spec.name, SkipKind.UNOWNED,
                                        f"{spec.kind.label} {spec.name} exists and is not managed by reconciler; "
                                        "left untouched (clusters may use it as it is)"))
            continue
        if current is not None and current.application and current.application != spec.application:
            skipped.append(ResourceSkip(skey, spec.application, spec.name, SkipKind.CONFLICT,
                                        f"{spec.kind.label} {spec.name} belongs to application "
                                        f"{current.application}; left untouched"))
            continue
        change = _diff(spec, current, place, users.get((place, spec.kind, spec.name), ()), desired.commit)
        if change is None:
            continue
        if spec.application in inputs.paused:
            skipped.append(ResourceSkip(skey, spec.application, spec.name, SkipKind.PAUSED, "paused"))
            continue
        if (skey, change.spec_hash) in inputs.stalled:
            skipped.append(ResourceSkip(skey, spec.application, spec.name, SkipKind.STALLED,
                                        f"stalled: spec {change.spec_hash} kept failing; commit a fix"))
            continue
        if change.reason.startswith("drift"):
            drift.append(f"{skey}: {change.reason}")
        changes.append(change)
    for k, current in sorted(live.items(), key=lambda kv: _key(kv[0])):
        if k in wanted or not current.managed or current.placement in inputs.unreadable:
            continue
        rk = (current.placement, current.kind, current.name)
        after = _freed_by(current, users.get(rk, ()), staying.get(rk, ()), inputs)
        skip = _why_kept(k, current, desired, inputs, named, () if after else users.get(rk, ()))
        if skip is not None:
            skipped.append(skip)
            continue
        reason = (f"{current.kind.label} {current.name} is no longer declared and nothing uses it" if not after
                  else f"{current.kind.label} {current.name} is no longer declared; destroyed once "
                       f"{', '.join(after)} destroyed the groups using it")
        changes.append(ResourceChange(
            kind=current.kind, name=current.name, application=current.application, provider=k[0], account=k[1],
            region=k[2], action=ResourceAction.DESTROY,
            fields=tuple(FieldDiff(f, v, None) for f, v in current.settings),
            rules_removed=current.rules, reason=reason, commit=desired.commit, after=after,
            used_by=users.get(rk, ()) if after else ()))
    return ResourceOutcome(tuple(changes), tuple(skipped), tuple(drift))


def _diff(spec: ResourceSpec, current: LiveResource | None, place: Placement, users: tuple[str, ...],
          commit: str) -> ResourceChange | None:
    h = spec.spec_hash()
    base = {"kind": spec.kind, "name": spec.name, "application": spec.application, "provider": place[0],
            "account": place[1], "region": place[2], "desired": spec, "spec_hash": h, "commit": commit}
    if current is None:
        return ResourceChange(**base, action=ResourceAction.CREATE,  # type: ignore[arg-type]
                              fields=tuple(FieldDiff(f, None, v) for f, v in spec.settings),
                              rules_added=spec.rule_lines(), reason=f"{spec.kind.label} {spec.name} is declared")
    old, new = dict(current.settings), dict(spec.settings)
    fields = tuple(FieldDiff(f, old.get(f), new.get(f)) for f in sorted(set(old) | set(new))
                   if old.get(f) != new.get(f))
    added = tuple(sorted(set(spec.rule_lines()) - set(current.rules)))
    removed = tuple(sorted(set(current.rules) - set(spec.rule_lines())))
    if not fields and not added and not removed:
        return None
    keep = [Rule.parse(line) for line in spec.rule_lines()]
    drifted = current.spec_hash == h  # a rule added by hand is taken out again without asking
    narrows = tuple(line for line in removed
                    if users and not drifted and not any(r.covers(Rule.parse(line)) for r in keep))
    what = ", ".join([f.field for f in fields] + (["ingress"] if added or removed else []))
    reason = (f"drift: {spec.kind.label} {spec.name} was changed outside the reconciler ({what})"
              if drifted else f"{what} changed")
    return ResourceChange(**base, action=ResourceAction.UPDATE, fields=fields,  # type: ignore[arg-type]
                          rules_added=added, rules_removed=removed, used_by=users, narrows=narrows, reason=reason)


def _freed_by(current: LiveResource, users: tuple[str, ...], staying: tuple[str, ...], inputs: Inputs
              ) -> tuple[str, ...]:
    """The cluster changes of this plan whose group destroys leave the resource unused (``()``: none do, or
    something else still uses it)."""
    if not users or staying:
        return ()
    return tuple(sorted({key for (prov, acc, region, name), key in inputs.leaving.items()
                         if name in users and serves(current.placement, prov, acc, region)}))


def _why_kept(k: RKey, current: LiveResource, desired: model.DesiredState, inputs: Inputs,
              named: Mapping[RKey, list[str]], users: tuple[str, ...]) -> ResourceSkip | None:
    skey, app, name = _key(k), current.application, current.name
    label = f"{current.kind.label} {name}"
    if not inputs.prune:
        return ResourceSkip(skey, app, name, SkipKind.PRUNE_OFF, f"{label} is no longer declared; kept because "
                            "prune is off")
    if desired.broken_files:
        return ResourceSkip(skey, app, name, SkipKind.BROKEN_SPECS, f"{label} not destroyed: "
                            f"{len(desired.broken_files)} spec file(s) have errors")
    if app in inputs.paused:
        return ResourceSkip(skey, app, name, SkipKind.PAUSED, "paused")
    if users:
        return ResourceSkip(skey, app, name, SkipKind.IN_USE, f"{label} is no longer declared but is used by "
                            f"{', '.join(users)}; destroyed once nothing uses it")
    if k in named:
        return ResourceSkip(skey, app, name, SkipKind.IN_USE, f"{label} is no longer declared but cluster "
                            f"{', '.join(named[k])} names it; destroyed once no cluster does")
    return None


def _named_by_clusters(desired: model.DesiredState) -> dict[RKey, list[str]]:
    out: dict[RKey, list[str]] = defaultdict(list)
    for c in desired.clusters():
        for place in {p for region in c.regions for p in places_of(c.provider, c.account, region)}:
            for kind, names in ((Kind.LOAD_BALANCER, c.launch.load_balancers),
                                (Kind.SECURITY_GROUP, c.launch.security_groups)):
                for n in names:
                    out[(*place, kind, n)].append(c.name)
    for app in desired.applications.values():
        for spec in app.resources:
            for rule in spec.rules:
                if rule.group:
                    for prov, acc, region in spec.placements:
                        out[(prov, acc, region, Kind.SECURITY_GROUP, rule.group)].append(
                            f"(security group {spec.name}'s ingress)")
    return out


def _declared_twice(desired: model.DesiredState) -> dict[RKey, list[str]]:
    by: dict[RKey, list[str]] = defaultdict(list)
    for app in desired.applications.values():
        for spec in app.resources:
            for prov, acc, region in spec.placements:
                by[(prov, acc, region, spec.kind, spec.name)].append(app.name)
    return {k: sorted(v) for k, v in by.items() if len(v) > 1}


def hold_unknown_references(desired: model.DesiredState, inputs: Inputs) -> model.DesiredState:
    """A cluster (or a rule) naming a resource neither declared nor live where it runs is a spec problem,
    named ``file:line: clusters[0].load_balancers``: its application is held whole, as for any broken file.

    Checked only where resources were read (a provider that does not report them, or an unreadable region,
    proves nothing).
    """
    wanted = declared(desired)
    live = {(r.provider, r.account, r.region, r.kind, n) for r in inputs.resources for n in (r.name, *r.aliases)}
    problems: list[errors.SpecProblem] = []
    for app in desired.applications.values():
        for i, c in enumerate(app.clusters):
            for kind, names in ((Kind.LOAD_BALANCER, c.launch.load_balancers),
                                (Kind.SECURITY_GROUP, c.launch.security_groups)):
                path = f"clusters[{i}].{kind.spec_field}"
                missing = _missing(names, kind, [(c.provider, c.account, r) for r in c.regions], wanted, live,
                                   inputs.read)
                problems += [errors.SpecProblem(c.source.file, c.source.line_of(path), path, m) for m in missing]
        for spec in app.resources:
            for j, rule in enumerate(spec.rules):
                if rule.group:
                    path = f"{spec.path}.ingress[{j}].group"
                    missing = _missing((rule.group,), Kind.SECURITY_GROUP, list(spec.placements), wanted, live,
                                       inputs.read)
                    problems += [errors.SpecProblem(spec.source.file, spec.source.line_of(path), path, m)
                                 for m in missing]
    if not problems:
        return desired
    files = {p.file for p in problems}
    return dataclasses.replace(
        desired,
        applications={n: a for n, a in desired.applications.items() if a.source.file not in files},
        problems=tuple(desired.problems) + tuple(problems),
        broken_files=desired.broken_files | files,
    )


def _missing(names: Iterable[str], kind: Kind, places: list[Placement], wanted: Mapping[RKey, ResourceSpec],
             live: set[RKey], read: frozenset[Placement]) -> list[str]:
    out = []
    for n in names:
        gone = [p for p in places if all(q in read for q in places_of(*p)) and not any(
            (*q, kind, n) in wanted or (*q, kind, n) in live for q in places_of(*p))]
        if gone:
            where = ", ".join("/".join(p) for p in gone)
            out.append(f"no {kind.label} named {n!r} is declared ({kind.spec_field}:) or exists in {where}")
    return out

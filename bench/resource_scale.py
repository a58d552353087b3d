"""Plan N applications that each declare a balancer and a security group; print times and ratios.

    .venv/bin/python bench/resource_scale.py [--apps 2000] [--regions 3]

Live state is everything applied (two groups per cluster and region, both naming the resources), with one
application's health check changed, one rule added by hand and one application removed (its resources
kept: still used by its groups). Times the cluster planner alone and with the resource diff and the
unknown-name check, so the share the resources add is visible as a ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reconciler.core import model, planner, resource_plan
from reconciler.core.resources import Kind, LiveResource, ResourceSpec, Rule


def build(apps: int, regions: tuple[str, ...]) -> tuple[model.DesiredState, planner.LiveState]:
    out: dict[str, model.Application] = {}
    groups: list[model.ServerGroup] = []
    live: list[LiveResource] = []
    for i in range(apps):
        name = f"app{i}"
        launch = model.LaunchSpec("img-1", "small", security_groups=(f"{name}-sg",), load_balancers=(f"{name}-lb",))
        cluster = model.ClusterSpec(name, "local", "default", regions, launch, model.Capacity(1, 2, 4))
        places = tuple(("local", "default", r) for r in regions)
        lb = ResourceSpec(Kind.LOAD_BALANCER, f"{name}-lb", name, places, (("health_check.path", "/health"),
                                                                             ("port", "80")))
        sg = ResourceSpec(Kind.SECURITY_GROUP, f"{name}-sg", name, places, (("description", "d"),),
                          (Rule("tcp", "443", cidr="0.0.0.0/0"), Rule("tcp", "8080", group=f"{name}-sg")))
        if i != apps - 1:  # the last one was removed from Git
            out[name] = model.Application(name, "o", model.Criticality.NORMAL, (cluster,),
                                          model.SourceRef(f"apps/{name}.yaml"), resources=(lb, sg))
        for r in regions:
            for v in range(2):
                cap = model.Capacity(1, 2, 4) if v else model.Capacity(0, 0, 0)  # v000: retained, scaled down
                groups.append(model.ServerGroup(
                    f"{name}-v00{v}", "local", "default", r, name, name, True, launch, cap,
                    v == 1, cap.desired, cap.desired, spec_hash=launch.spec_hash(), created_at=float(v)))
            for spec in (lb, sg):
                settings = (("health_check.path", "/old"), ("port", "80")) if i == 0 and spec is lb else spec.settings
                extra = ("tcp 22 from 0.0.0.0/0",) if i == 1 and spec is sg else ()
                rules = tuple(sorted(x.line() for x in spec.rules)) + extra
                live.append(LiveResource(spec.kind, spec.name, "local", "default", r, True, name, settings,
                                         rules, spec.spec_hash()))
    read = frozenset(("local", "default", r) for r in regions)
    return model.DesiredState("c1", out), planner.LiveState(tuple(groups), resources=tuple(live),
                                                             resources_read=read)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--apps", type=int, default=2000)
    parser.add_argument("--regions", type=int, default=3)
    args = parser.parse_args()
    regions = tuple(f"r{i}" for i in range(args.regions))
    desired, live = build(args.apps, regions)
    without = planner.LiveState(live.groups)
    t0 = time.perf_counter()
    base = planner.plan(desired, without, planner.Options(prune=True))
    clusters_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    held = resource_plan.hold_unknown_references(desired, live.resource_inputs())
    outcome = planner.plan(held, live, planner.Options(prune=True))
    full_s = time.perf_counter() - t0
    res = outcome.plan.resource_changes
    print(f"{args.apps} applications x {args.regions} regions: {len(live.groups)} groups, "
          f"{len(live.resources)} live resources")
    print(f"{'pass':<36}{'wall s':>8}{'changes':>9}")
    print(f"{'clusters only':<36}{clusters_s:>8.2f}{len(base.plan.changes):>9}")
    print(f"{'clusters + resources + name check':<36}{full_s:>8.2f}{len(outcome.plan.changes) + len(res):>9}")
    print(f"resource changes: {len(res)} ({sum(1 for c in res if c.reason.startswith('drift'))} drift), "
          f"kept in use: {sum(1 for s in outcome.resource_skipped if s.kind is model.SkipKind.IN_USE)}, "
          f"spec problems: {len(held.problems)}")
    print(f"ratio with/without resources: {full_s / max(clusters_s, 1e-9):.2f}x")


if __name__ == "__main__":
    main()

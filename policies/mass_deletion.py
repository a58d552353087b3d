"""Mass-deletion guard: a commit that would destroy too many clusters (an empty or broken tree) is denied.

Counted per (provider, account, region, cluster), the unit a destroy change
removes, against the managed clusters live now; load balancers and security
groups count the same way, each one unit beside the clusters. A cluster that was renamed or
moved (``Removal.MOVED``) is not counted: its application keeps clusters in the
region and the destroy waits until they serve, so it deletes no capacity (an
empty or broken tree cannot produce one). Any destroy while a spec file is
broken is denied too: a file that does not parse looks exactly like a file that
was deleted.
"""

from __future__ import annotations

from collections.abc import Iterator

from policies.base import AnyChange, Judgement, Policy, PolicyContext, deny
from reconciler.core import model
from reconciler.core.resources import ResourceAction

NAME = "mass-deletion"


def evaluate(plan: model.Plan, ctx: PolicyContext) -> Iterator[Judgement]:
    destroys: list[AnyChange] = [c for c in plan.changes
                                 if c.action is model.Action.DESTROY and c.removal is not model.Removal.MOVED]
    resources = [r for r in plan.resource_changes if r.action is ResourceAction.DESTROY]
    destroys += resources
    if not destroys:
        return
    max_share = float(ctx.global_settings()["mass_deletion"]["max_share"])
    live = {(g.provider, g.account, g.region, g.cluster) for g in ctx.live if g.managed}
    live |= {(r.provider, r.account, r.region, f"{r.kind.value}:{r.name}") for r in ctx.resources if r.managed}
    doomed = {(c.provider, c.account, c.region, c.cluster) for c in destroys if isinstance(c, model.Change)}
    doomed |= {(r.provider, r.account, r.region, f"{r.kind.value}:{r.name}") for r in resources}
    total = len(live | doomed)
    share = len(doomed) / total
    if ctx.desired is not None and ctx.desired.broken_files:
        broken = sorted(ctx.desired.broken_files)
        message = (f"would destroy {_what(doomed)} while {len(broken)} spec file(s) have errors "
                   f"({', '.join(broken[:3])}{', ...' if len(broken) > 3 else ''}); fix the specs first")
    elif share > max_share:
        counted = f"{len(doomed)} of {total} clusters" if not resources else f"{_what(doomed)} of {total}"
        message = (f"would destroy {counted} ({share:.0%} > {max_share:.0%}); "
                   "an empty or broken tree? Raise mass_deletion.max_share in policies.yaml if intended")
    else:
        return
    for change in destroys:
        yield deny(NAME, change, message)


def _what(doomed: set[tuple[str, str, str, str]]) -> str:
    """``3 cluster(s)``, or ``2 cluster(s) and 1 resource(s)`` once balancers or security groups are in it."""
    resources = sum(1 for k in doomed if ":" in k[3])
    clusters = len(doomed) - resources
    return f"{clusters} cluster(s)" + (f" and {resources} resource(s)" if resources else "")


POLICY = Policy(NAME, evaluate)

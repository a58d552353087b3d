"""Judging cluster by cluster: a commit that changes one file judges that file's clusters again, no others.

Most rules judge a change by what it does to its own cluster (``Policy.per_cluster``): their verdicts are
kept per cluster (provider, account, name: every region of it, since ``region-waves`` reports a layout once
per cluster) with what they were made of, and a cluster whose changes (but for the commit they carry), live
groups, application criticality and the plan-wide settings those rules read (the policy file, the freeze
switch, the clock's window verdicts) are the same gets its verdicts again. The rules that read the plan as a
whole (blast radius, mass deletion, signed commits, approvals, the resource guard) judge the whole plan each
time; they read the changes, never the other rules' verdicts, so each change's verdicts are the reused ones
and the new ones, in the order of the rules. The judged plan is the one ``base.judge`` makes, verdict for
verdict (``tests/policies/test_per_cluster.py`` compares them).
"""

from __future__ import annotations

import dataclasses
import operator
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from policies import registry
from policies.base import Policy, PolicyContext
from reconciler.core import memo, model

Verdicts = tuple[tuple[tuple[int, model.PolicyVerdict], ...], ...]
"""Per change of a cluster, in plan order: (the rule's position in the list, its verdict)."""

Memo = memo.PerKey[Verdicts]

_SHAPE = operator.attrgetter(*(f.name for f in dataclasses.fields(model.Change)
                               if f.name not in ("commit", "verdicts", "_id", "_content_id")))
"""What a change is but for its commit (each new commit is in every change) and verdicts (none yet)."""


def judge(plan: model.Plan, ctx: PolicyContext, *, clusters: Memo, clock: tuple[Any, ...],
          policies: Sequence[Policy] | None = None) -> model.Plan:
    """``base.judge(plan, ctx, policies)``, with the per-cluster rules' verdicts of unchanged clusters reused.
    ``policies`` defaults to ``registry.default_policies()``.

    ``clock`` is what the clock decides now for these rules (``windows.clock_view``): the only input of theirs
    that moves with time alone. With ``clusters`` that keeps nothing (a process of one pass), the inputs are not
    even built.
    """
    policies = registry.default_policies() if policies is None else policies
    local = [(i, p) for i, p in enumerate(policies) if p.per_cluster]
    found: dict[str, list[tuple[int, model.PolicyVerdict]]] = defaultdict(list)
    plan_wide: list[model.PolicyVerdict] = []
    for i, policy in enumerate(policies):
        if policy.per_cluster:
            continue
        for j in policy.evaluate(plan, ctx):
            if j.change_id is None:
                plan_wide.append(j.verdict)
            else:
                found[j.change_id].append((i, j.verdict))

    live: dict[tuple[str, str, str, str], list[model.ServerGroup]] = defaultdict(list)
    for g in ctx.live:
        live[(g.provider, g.account, g.region, g.cluster)].append(g)
    groups: dict[tuple[str, str, str], list[model.Change]] = defaultdict(list)
    for c in plan.changes:
        groups[(c.provider, c.account, c.cluster)].append(c)
    quoting = [p.names_change for _, p in local if p.names_change is not None]
    shared = (ctx.policy_file, ctx.freeze_switch, clock)
    for key, changes in groups.items():
        own = [tuple(live.get((c.provider, c.account, c.region, c.cluster), ())) for c in changes]
        if not clusters.keeps:
            verdicts = _judge_cluster(changes, [g for gs in own for g in gs], ctx, local)
        else:
            inputs = (shared, tuple(_SHAPE(c) for c in changes), tuple(own),
                      tuple(_criticality(ctx, c.application) for c in changes),
                      tuple(c.change_id if any(q(c) for q in quoting) else "" for c in changes))
            verdicts = clusters.get(key, inputs)
            if verdicts is memo.MISSING:
                verdicts = _judge_cluster(changes, [g for gs in own for g in gs], ctx, local)
                clusters.put(key, inputs, verdicts)
        for c, mine in zip(changes, verdicts, strict=True):
            found[c.change_id].extend(mine)
    clusters.sweep()

    def attach(change: Any) -> Any:
        got = found.get(change.change_id)
        if not got:
            return change
        got.sort(key=operator.itemgetter(0))  # stable: one rule's verdicts keep their order
        return model.with_verdicts(change, change.verdicts + tuple(v for _, v in got))

    return dataclasses.replace(plan, changes=tuple(attach(c) for c in plan.changes),
                               resource_changes=tuple(attach(r) for r in plan.resource_changes),
                               plan_verdicts=plan.plan_verdicts + tuple(plan_wide))


def _criticality(ctx: PolicyContext, application: str) -> str | None:
    """What ``PolicyContext.for_change`` resolves a change's settings with, besides the policy file."""
    app = ctx.desired.applications.get(application) if ctx.desired is not None else None
    return app.criticality.value if app is not None else None


def _judge_cluster(changes: list[model.Change], live: list[model.ServerGroup], ctx: PolicyContext,
                   local: Sequence[tuple[int, Policy]]) -> Verdicts:
    """The per-cluster rules over one cluster's changes alone: a plan of them (no commit: these rules do not
    read it), with the live groups of their regions."""
    sub = model.Plan(commit="", changes=tuple(changes))
    sub_ctx = model.replaced(ctx, "live", live)  # once a cluster: positional, not keyword by keyword
    at: dict[str, int] = {c.change_id: n for n, c in enumerate(changes)}
    out: list[list[tuple[int, model.PolicyVerdict]]] = [[] for _ in changes]
    for i, policy in local:
        for j in policy.evaluate(sub, sub_ctx):
            if j.change_id is None or j.change_id not in at:
                raise ValueError(f"policy {policy.name} is per cluster but judged something other than "
                                 "a change of the cluster")
            out[at[j.change_id]].append((i, j.verdict))
    return tuple(tuple(v) for v in out)

"""Judging per cluster: a new commit that changes one cluster judges that cluster again, and the judged plan
is the one every rule judging the whole plan makes, verdict for verdict."""

from __future__ import annotations

from policies import base, per_cluster, registry
from reconciler.core import memo, model, planner
from specs import policy_file
from tests import builders

POLICIES = """
defaults:
  protected_accounts: [prod*]
  blast_radius: {max_clusters: 3}
applications:
  pay: {require_approval: always}
"""


def _specs(image_b: str = "b-1") -> list[model.ClusterSpec]:
    return [builders.spec("pay", regions=("r1", "r2"), image="pay-2"),
            builders.spec("shop", account="prod-eu", regions=("r1", "r2"), image=image_b),
            builders.spec("blog", regions=("r1",), image="blog-2",
                          capacity=model.Capacity(1, 1, 2))]  # below the serving group: capacity guard


def _live() -> tuple[model.ServerGroup, ...]:
    _, shop, _ = _specs()
    old, blog = builders.spec("pay", image="pay-1"), builders.spec("blog", image="blog-1")
    gone = builders.spec("pay", stack="old", regions=("r3",))  # pay has no cluster left in r3: approval, by id
    return (builders.group(old, "r1"), builders.group(old, "r2"), builders.group(shop, "r1"),
            builders.group(blog, "r1", capacity=model.Capacity(1, 3, 4)), builders.group(gone, "r3"))


def _judged(specs: list[model.ClusterSpec], commit: str, clusters: memo.PerKey[model.Change | None],
            verdicts: per_cluster.Memo, *, freeze: base.Freeze | None = None) -> tuple[model.Plan, model.Plan]:
    """(per cluster with the memos, every rule over the whole plan planned afresh)."""
    live = _live()
    d = builders.desired(*specs, commit=commit)
    pol, problems = policy_file.load_policy_file(POLICIES, file="apps/policies.yaml")
    assert not problems
    ctx = base.PolicyContext(now=0.0, live=live, desired=d, policy_file=pol, freeze_switch=freeze, prune=True)
    state = planner.LiveState(live)
    memoized = planner.plan(d, state, planner.Options(prune=True, clusters=clusters)).plan
    fresh = planner.plan(d, state, planner.Options(prune=True)).plan
    return (per_cluster.judge(memoized, ctx, clusters=verdicts, clock=(), policies=registry.default_policies()),
            base.judge(fresh, ctx, registry.default_policies()))


def _same(a: model.Plan, b: model.Plan) -> None:
    assert a == b and a.plan_id == b.plan_id
    assert [c.change_id for c in a.changes] == [c.change_id for c in b.changes]


def test_a_new_commit_judges_only_the_clusters_it_changed_and_the_same_verdicts() -> None:
    clusters: memo.PerKey[model.Change | None] = memo.PerKey()
    verdicts: per_cluster.Memo = memo.PerKey()
    got, want = _judged(_specs(), "c1", clusters, verdicts)
    _same(got, want)
    assert (verdicts.misses, verdicts.hits) == (4, 0)  # pay, shop, blog, pay-old (destroyed in r3)
    kinds = {(c.cluster, c.region): {v.policy for v in c.verdicts} for c in got.changes}
    assert {"protected-account", "blast-radius", "criticality"} <= kinds[("shop-main", "r2")] | kinds[
        ("pay-main", "r1")]
    assert "capacity-guard" in kinds[("blog-main", "r1")]
    destroy = next(c for c in got.changes if c.region == "r3")
    assert destroy.change_id in " ".join(v.message for v in destroy.verdicts)  # the approval names it

    got, want = _judged(_specs(), "c2", clusters, verdicts)  # a commit that changes nothing of the clusters
    _same(got, want)
    assert (verdicts.misses, verdicts.hits) == (5, 3), "only the destroy, whose verdict quotes its (new) id"
    assert destroy.change_id not in " ".join(v.message for c in got.changes for v in c.verdicts)

    got, want = _judged(_specs(image_b="b-2"), "c3", clusters, verdicts)  # one cluster changed
    _same(got, want)
    assert (verdicts.misses, verdicts.hits) == (7, 5), "shop's two regions are one cluster: judged once"

    got, want = _judged(_specs(image_b="b-2"), "c3", clusters, verdicts, freeze=base.Freeze("ops", "incident"))
    _same(got, want)  # the freeze switch is read by every cluster: all judged again
    assert (verdicts.misses, verdicts.hits) == (11, 5)
    assert all(v.verdict is model.Verdict.DENY for c in got.changes for v in c.verdicts if v.policy == "freeze")

"""The resource diff, pure: values in, values out."""

from __future__ import annotations

import dataclasses

from policies import base as policy_base
from policies import mass_deletion, resource_guard
from reconciler.core import model, planner, resource_plan
from reconciler.core.model import SkipKind
from reconciler.core.resources import Kind, LiveResource, ResourceAction, ResourceSpec, Rule
from reconciler.runtime import resources as resources_rt

PLACE = ("local", "default", "r1")
HTTPS = Rule("tcp", "443", cidr="0.0.0.0/0")
ADMIN = Rule("tcp", "8443", cidr="10.0.0.0/8")


def sg(name: str = "web", rules: tuple[Rule, ...] = (HTTPS,), app: str = "shop") -> ResourceSpec:
    return ResourceSpec(Kind.SECURITY_GROUP, name, app, (PLACE,), (("description", "d"),), rules)


def live(spec: ResourceSpec, *, managed: bool = True, rules: tuple[Rule, ...] | None = None,
         app: str | None = None) -> LiveResource:
    return LiveResource(spec.kind, spec.name, *PLACE, managed=managed, application=app or spec.application,
                        settings=spec.settings, rules=tuple(sorted(r.line() for r in (rules or spec.rules))),
                        spec_hash=spec.spec_hash() if managed else "")


def group(name: str, sgs: tuple[str, ...], *, managed: bool = True) -> model.ServerGroup:
    return model.ServerGroup(name, *PLACE, model.cluster_of(name), "shop", managed,
                             model.LaunchSpec("img", "small", security_groups=sgs), model.Capacity(1, 1, 1),
                             True, 1, 1)


def desired(*specs: ResourceSpec, apps: tuple[str, ...] = ("shop",)) -> model.DesiredState:
    out = {a: model.Application(a, "o", model.Criticality.NORMAL, (), model.SourceRef(f"apps/{a}.yaml"),
                                resources=tuple(s for s in specs if s.application == a)) for a in apps}
    return model.DesiredState("c1", out)


def plan(d: model.DesiredState, *resources: LiveResource, groups: tuple[model.ServerGroup, ...] = (),
         prune: bool = True) -> resource_plan.ResourceOutcome:
    return resource_plan.plan_resources(d, resource_plan.Inputs(groups=groups, resources=resources,
                                                                read=frozenset({PLACE}), prune=prune))


def test_a_declared_resource_is_created_and_a_matching_one_is_left_alone() -> None:
    [change] = plan(desired(sg())).changes
    assert change.action is ResourceAction.CREATE and change.rules_added == ("tcp 443 from 0.0.0.0/0",)
    assert plan(desired(sg()), live(sg())).changes == ()


def test_a_spec_change_is_an_update_and_a_hand_edit_is_drift() -> None:
    [change] = plan(desired(sg(rules=(HTTPS, ADMIN))), live(sg())).changes
    assert change.action is ResourceAction.UPDATE and change.reason == "ingress changed"
    hand = plan(desired(sg()), live(sg(), rules=(HTTPS, ADMIN)))
    assert hand.changes[0].reason.startswith("drift:") and hand.drift


def test_removing_a_rule_in_use_narrows_unless_a_wider_rule_covers_it() -> None:
    users = (group("shop-v000", ("web",)),)
    [narrow] = plan(desired(sg(rules=(HTTPS,))), live(sg(rules=(HTTPS, ADMIN))), groups=users).changes
    assert narrow.narrows == ("tcp 8443 from 10.0.0.0/8",) and narrow.used_by == ("shop-v000",)
    wide = Rule("tcp", "8000-9000", cidr="10.0.0.0/8")
    [covered] = plan(desired(sg(rules=(HTTPS, wide))), live(sg(rules=(HTTPS, ADMIN))), groups=users).changes
    assert covered.narrows == ()
    [unused] = plan(desired(sg(rules=(HTTPS,))), live(sg(rules=(HTTPS, ADMIN)))).changes
    assert unused.narrows == (), "nothing uses it: nothing to cut"
    judged = list(resource_guard.evaluate(model.Plan("c1", (), resource_changes=(narrow,)),
                                          policy_base.PolicyContext(now=0)))
    assert [j.verdict.verdict for j in judged] == [model.Verdict.APPROVE]


def test_a_resource_in_use_by_any_group_or_rule_is_kept() -> None:
    old = live(sg())
    foreign = plan(desired(), old, groups=(group("legacy-v000", ("web",), managed=False),))
    assert foreign.changes == () and foreign.skipped[0].kind is SkipKind.IN_USE
    referrer = live(sg("api", rules=(Rule("tcp", "80", group="web"),)))
    by_rule = plan(desired(sg("api", rules=(Rule("tcp", "80", group="web"),))), old, referrer)
    assert by_rule.changes == () and "security group api" in by_rule.skipped[0].reason
    [gone] = plan(desired(), old).changes
    assert gone.action is ResourceAction.DESTROY
    assert plan(desired(), old, prune=False).skipped[0].kind is SkipKind.PRUNE_OFF


def test_unowned_twice_declared_and_other_applications_resources_are_never_touched() -> None:
    assert plan(desired(sg()), live(sg(), managed=False)).skipped[0].kind is SkipKind.UNOWNED
    assert plan(desired(), live(sg(), managed=False)).changes == ()
    twice = plan(desired(sg(), sg(app="blog"), apps=("shop", "blog")))
    assert twice.changes == () and twice.skipped[0].kind is SkipKind.CONFLICT
    other = plan(desired(sg()), live(sg(), app="blog"))
    assert other.changes == () and other.skipped[0].kind is SkipKind.CONFLICT


def test_a_name_neither_declared_nor_live_holds_the_application_whole() -> None:
    cluster = model.ClusterSpec("shop", "local", "default", ("r1",), model.LaunchSpec(
        "img", "small", security_groups=("wbe",)), model.Capacity(1, 1, 1), source=model.SourceRef(
        "apps/shop.yaml", 5, fields=(("clusters[0].security_groups", 12),)))
    app = model.Application("shop", "o", model.Criticality.NORMAL, (cluster,), model.SourceRef("apps/shop.yaml"))
    d = model.DesiredState("c1", {"shop": app})
    held = resource_plan.hold_unknown_references(d, resource_plan.Inputs(read=frozenset({PLACE})))
    assert held.applications == {} and held.broken_files == {"apps/shop.yaml"}
    assert [str(p) for p in held.problems] == [
        "apps/shop.yaml:12: clusters[0].security_groups: no security group named 'wbe' is declared "
        "(security_groups:) or exists in local/default/r1"]
    assert resource_plan.hold_unknown_references(d, resource_plan.Inputs()) == d, "not read: nothing known"
    with_live = resource_plan.Inputs(read=frozenset({PLACE}), resources=(live(sg("wbe")),))
    assert resource_plan.hold_unknown_references(d, with_live) == d


def test_the_mass_deletion_guard_counts_resources_beside_clusters() -> None:
    resources = tuple(live(sg(f"sg{i}")) for i in range(3))
    out = plan(desired(), *resources)
    p = model.Plan("c1", (), resource_changes=out.changes)
    ctx = policy_base.PolicyContext(now=0, resources=resources, live=(group("shop-v000", ()),))
    [first, *_] = judged = list(mass_deletion.evaluate(p, ctx))
    assert len(judged) == 3 and first.verdict.verdict is model.Verdict.DENY
    assert "would destroy 0 cluster(s) and 3 resource(s) of 4 (75% > 50%)" in first.verdict.message


def test_plan_ids_and_fingerprints_without_resources_are_unchanged() -> None:
    p = model.Plan("c1", ())
    assert dataclasses.replace(p, resource_changes=()).plan_id == model.Plan("c1", ()).plan_id
    with_one = model.Plan("c1", (), resource_changes=plan(desired(sg())).changes)
    assert with_one.plan_id != p.plan_id
    assert planner.LiveState().fingerprint() == planner.LiveState(resources=(live(sg(), managed=False),)).fingerprint()
    assert planner.LiveState().fingerprint() != planner.LiveState(resources=(live(sg()),)).fingerprint()


def test_narrowed_ingress_follows_policies_yaml_and_a_freeze_holds_resource_changes() -> None:
    from specs import policy_file

    users = (group("shop-v000", ("web",)),)
    [narrow] = plan(desired(sg(rules=(HTTPS,))), live(sg(rules=(HTTPS, ADMIN))), groups=users).changes
    p = model.Plan("c1", (), resource_changes=(narrow,))
    relaxed = policy_file.PolicySettings(applications={"shop": {"resources": {"narrowed_ingress": "warn"}}})
    judged = list(resource_guard.evaluate(p, policy_base.PolicyContext(now=0, policy_file=relaxed)))
    assert [j.verdict.verdict for j in judged] == [model.Verdict.WARN]
    frozen = policy_base.PolicyContext(now=0, freeze_switch=policy_base.Freeze("ops", "sale"))
    assert model.Verdict.DENY in [j.verdict.verdict for j in resource_guard.evaluate(p, frozen)]


def test_a_group_naming_a_security_group_by_its_id_uses_it() -> None:
    old = dataclasses.replace(live(sg()), aliases=("sg-0123",))
    out = plan(desired(), old, groups=(group("legacy-v000", ("sg-0123",), managed=False),))
    assert out.changes == () and "legacy-v000" in out.skipped[0].reason
    cluster = model.ClusterSpec("shop", "local", "default", ("r1",), model.LaunchSpec(
        "img", "small", security_groups=("sg-0123",)), model.Capacity(1, 1, 1), source=model.SourceRef("a"))
    app = model.Application("shop", "o", model.Criticality.NORMAL, (cluster,), model.SourceRef("a"))
    d = model.DesiredState("c1", {"shop": app})
    assert resource_plan.hold_unknown_references(d, resource_plan.Inputs(read=frozenset({PLACE}),
                                                                         resources=(old,))) == d


def test_a_resource_freed_by_the_plans_group_destroys_is_destroyed_after_them() -> None:
    old = live(sg())
    users = (group("shop-v000", ("web",)), group("legacy-v000", ("web",), managed=False))
    leaving = {(*PLACE, "shop-v000"): "local/default/r1/shop"}
    inputs = resource_plan.Inputs(groups=users, resources=(old,), read=frozenset({PLACE}), prune=True,
                                  leaving=leaving)
    kept = resource_plan.plan_resources(desired(), inputs)
    assert kept.changes == () and kept.skipped[0].kind is SkipKind.IN_USE, "another group still uses it"
    inputs = dataclasses.replace(inputs, groups=users[:1])
    [freed] = resource_plan.plan_resources(desired(), inputs).changes
    assert freed.action is ResourceAction.DESTROY and freed.after == ("local/default/r1/shop",)
    assert freed.used_by == ("shop-v000",) and "destroyed once local/default/r1/shop destroyed" in freed.reason
    assert freed.content()["after"] == ["local/default/r1/shop"]
    alone = resource_plan.plan_resources(desired(), dataclasses.replace(inputs, groups=(), leaving={})).changes
    assert alone[0].after == () and "after" not in alone[0].content(), "ids of plain destroys are unchanged"


def test_a_global_resource_serves_every_region_of_its_account() -> None:
    where = ("gcp", "prod", "global")
    fw = LiveResource(Kind.SECURITY_GROUP, "web", *where, managed=True, application="shop", rules=(HTTPS.line(),))
    groups = tuple(dataclasses.replace(group("shop-v000", ("web",)), provider="gcp", account="prod", region=r)
                   for r in ("europe-west1", "us-central1"))
    inputs = resource_plan.Inputs(groups=groups, resources=(fw,), read=frozenset({where}), prune=True)
    kept = resource_plan.plan_resources(desired(), inputs)
    assert kept.skipped[0].kind is SkipKind.IN_USE and "shop-v000" in kept.skipped[0].reason
    one_leaves = {("gcp", "prod", "europe-west1", "shop-v000"): "gcp/prod/europe-west1/shop"}
    still = resource_plan.plan_resources(desired(), dataclasses.replace(inputs, leaving=one_leaves))
    assert still.changes == (), "the same name in another region still uses it"
    both = {**one_leaves, ("gcp", "prod", "us-central1", "shop-v000"): "gcp/prod/us-central1/shop"}
    [freed] = resource_plan.plan_resources(desired(), dataclasses.replace(inputs, leaving=both)).changes
    assert freed.region == "global" and freed.after == ("gcp/prod/europe-west1/shop", "gcp/prod/us-central1/shop")


def test_a_freed_destroy_is_held_while_a_cluster_change_it_waits_for_does_not_run() -> None:
    inputs = resource_plan.Inputs(groups=(group("shop-v000", ("web",)),), resources=(live(sg()),),
                                  read=frozenset({PLACE}), prune=True,
                                  leaving={(*PLACE, "shop-v000"): "local/default/r1/shop"})
    [freed] = resource_plan.plan_resources(desired(), inputs).changes
    destroy = model.Change(application="shop", cluster="shop", provider=PLACE[0], account=PLACE[1], region=PLACE[2],
                           action=model.Action.DESTROY, reason="gone from Git", current=None, desired=None,
                           steps=(), commit="c1")
    assert destroy.key == "local/default/r1/shop"
    run, held = resources_rt.hold_freed([freed], [destroy])
    assert (run, held) == ([freed], []), "it runs beside the destroy it waits for"
    run, held = resources_rt.hold_freed([freed], [])
    assert run == [] and held[0][1].kind is model.Hold.FREED
    assert held[0][1].message == "waits for local/default/r1/shop to destroy the groups using it"

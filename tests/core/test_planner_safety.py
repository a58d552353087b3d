"""The planner's safety rules as pure values: waves wait on live state, destroys wait on replacements."""

from __future__ import annotations

import dataclasses
from typing import Any

from reconciler.core import model, planner, selection
from reconciler.core.model import Action, Capacity, Removal
from tests import builders

W = (("r1",), ("r2", "r3"))


def spec(app: str = "app", *, stack: str = "", image: str = "img-1", regions: tuple[str, ...] = ("r1",),
         provider: str = "local", account: str = "default", waves: tuple[tuple[str, ...], ...] = (),
         autoscaling: bool = False, file: str = "") -> model.ClusterSpec:
    """Cluster ``app`` (no stack) from ``apps/APP.yaml`` line 3, capacity 1..6."""
    return builders.spec(app, stack=stack, image=image, regions=regions, provider=provider, account=account,
                         autoscaling=autoscaling, rollout=model.Rollout(waves=waves),
                         source=model.SourceRef(file or f"apps/{app}.yaml", 3))


def group(s: model.ClusterSpec, region: str, version: int = 0, *, enabled: bool = True, healthy: int | None = None,
          desired: int = 2) -> model.ServerGroup:
    return builders.group(s, region, version, enabled=enabled, capacity=Capacity(1, desired, 6), healthy=healthy)


def desired(*specs: model.ClusterSpec, **kw: Any) -> model.DesiredState:
    return builders.desired(*specs, **kw)


def plan(d: model.DesiredState, *groups: model.ServerGroup, **opts: Any) -> planner.Outcome:
    return builders.outcome(d, *groups, **opts)


def by_region(out: planner.Outcome) -> dict[str, model.Change]:
    return {c.region: c for c in out.plan.changes}


# ---------------------------------------------------------------------------- waves


def test_a_later_wave_waits_for_every_earlier_region_to_serve_the_same_spec() -> None:
    old, new = spec(regions=("r1", "r2", "r3"), waves=W), spec(image="img-2", regions=("r1", "r2", "r3"), waves=W)
    live = [group(old, r) for r in ("r1", "r2", "r3")]
    changes = by_region(plan(desired(new), *live))
    assert changes["r1"].after == () and changes["r1"].waiting == ()
    assert changes["r2"].after == ("local/default/r1/app",) == changes["r2"].waiting
    assert changes["r3"].waiting == ("local/default/r1/app",)

    done = [group(old, "r1", 0, enabled=False), group(new, "r1", 1), group(old, "r2"), group(old, "r3")]
    changes = by_region(plan(desired(new), *done))
    assert changes["r2"].after == ("local/default/r1/app",) and changes["r2"].waiting == ()


def test_a_new_group_that_is_enabled_but_unhealthy_in_the_first_wave_does_not_count() -> None:
    two = (("r1",), ("r2",))
    old, new = spec(regions=("r1", "r2"), waves=two), spec(image="img-2", regions=("r1", "r2"), waves=two)
    live = [group(old, "r1", 0), group(new, "r1", 1, healthy=0), group(old, "r2")]
    assert by_region(plan(desired(new), *live))["r2"].waiting == ("local/default/r1/app",)


def test_capacity_only_changes_in_later_waves_do_not_wait() -> None:
    s = spec(regions=("r1", "r2", "r3"), waves=W)
    bigger = dataclasses.replace(s, capacity=Capacity(1, 3, 6))
    changes = by_region(plan(desired(bigger), *(group(s, r) for r in ("r1", "r2", "r3"))))
    assert {c.action for c in changes.values()} == {Action.RESIZE}
    assert all(c.waiting == () for c in changes.values())


def test_stalled_and_backoff_belong_to_one_spec_hash() -> None:
    old, bad, good = (spec(image=i) for i in ("img-1", "img-bad", "img-2"))
    stalled = {("local/default/r1/app", bad.launch.spec_hash())}
    out = plan(desired(bad), group(old, "r1"), stalled=stalled)
    assert out.plan.changes == () and [s.kind for s in out.skipped] == [model.SkipKind.STALLED]
    out = plan(desired(good), group(old, "r1"), stalled=stalled)
    assert [c.action for c in out.plan.changes] == [Action.REPLACE], "a fix-forward commit is planned at once"


# ---------------------------------------------------------------------------- destroys


def test_a_renamed_cluster_is_destroyed_only_after_its_replacement_serves() -> None:
    old, new = spec(), spec(stack="web")
    out = plan(desired(new), group(old, "r1"), prune=True)
    destroy = next(c for c in out.plan.changes if c.action is Action.DESTROY)
    assert destroy.removal is Removal.MOVED
    assert destroy.after == destroy.waiting == ("local/default/r1/app-web",)

    out = plan(desired(new), group(old, "r1"), group(new, "r1"), prune=True)
    (destroy,) = out.plan.changes
    assert destroy.after == ("local/default/r1/app-web",) and destroy.waiting == ()


def test_moves_to_another_account_or_provider_are_moves_too() -> None:
    old = spec()
    for new in (spec(account="second"), spec(provider="othercloud", account="other")):
        destroy = next(c for c in plan(desired(new), group(old, "r1"), prune=True).plan.changes
                       if c.action is Action.DESTROY)
        assert destroy.removal is Removal.MOVED and destroy.waiting == (f"{new.provider}/{new.account}/r1/app",)


def test_a_cluster_that_serves_nothing_is_destroyed_without_waiting() -> None:
    old, new = spec(), spec(stack="web")
    (destroy, _create) = sorted(plan(desired(new), group(old, "r1", healthy=0), prune=True).plan.changes,
                                key=lambda c: c.action.value, reverse=True)
    assert destroy.action is Action.DESTROY and destroy.after and destroy.waiting == ()


def test_a_removed_file_and_a_removed_region_are_told_apart() -> None:
    app, other = spec(regions=("r1", "r2")), spec("other")
    gone = plan(desired(other), group(app, "r1"), group(other, "r1"), prune=True,
                app_files={"app": "apps/app.yaml"})
    (destroy,) = [c for c in gone.plan.changes if c.application == "app"]
    assert destroy.removal is Removal.APP_REMOVED and destroy.after == ()
    assert destroy.reason.startswith("LAST SERVING CAPACITY: application app was removed from Git "
                                     "(apps/app.yaml deleted)")

    shrunk = plan(desired(spec(regions=("r1",))), group(app, "r1"), group(app, "r2"), prune=True)
    (destroy,) = shrunk.plan.changes
    assert destroy.region == "r2" and destroy.removal is Removal.REGION_REMOVED
    assert destroy.reason.startswith("LAST SERVING CAPACITY: app is still in Git")


def test_an_application_renamed_inside_its_file_waits_for_its_new_name() -> None:
    old, new = spec("blog"), spec("weblog", file="apps/blog.yaml")
    (destroy,) = [c for c in plan(desired(new), group(old, "r1"), prune=True,
                                  app_files={"blog": "apps/blog.yaml"}).plan.changes if c.action is Action.DESTROY]
    assert destroy.removal is Removal.MOVED and destroy.waiting == ("local/default/r1/weblog",)


def test_a_file_that_is_not_read_holds_pruning_of_what_it_may_define() -> None:
    app, other = spec(), spec("other")
    out = plan(desired(other, unread_files={"apps/app.yaml.bak": ("app",)}), group(app, "r1"), group(other, "r1"),
               prune=True)
    assert out.plan.changes == ()
    (skip,) = out.skipped
    assert skip.kind is model.SkipKind.UNREAD_FILE and "apps/app.yaml.bak" in skip.reason
    out = plan(desired(other, unread_files={"apps/x.j2": ("*",)}), group(app, "r1"), group(other, "r1"),
               prune=True)
    assert out.plan.changes == () and "apps/x.j2" in out.skipped[0].reason


def test_the_fingerprint_and_change_ids_ignore_autoscaler_owned_desired_capacity() -> None:
    old, new = spec(autoscaling=True), spec(image="img-2", autoscaling=True)
    a = plan(desired(new), group(old, "r1", desired=2)).plan
    b = plan(desired(new), group(old, "r1", desired=5)).plan
    assert a.live_fingerprint == b.live_fingerprint and a.plan_id == b.plan_id
    assert a.changes[0].steps[0].capacity != b.changes[0].steps[0].capacity, "steps still use the live size"
    fixed_a = plan(desired(spec(image="img-2")), group(spec(), "r1", desired=2)).plan
    fixed_b = plan(desired(spec(image="img-2")), group(spec(), "r1", desired=5)).plan
    assert fixed_a.live_fingerprint != fixed_b.live_fingerprint


# ---------------------------------------------------------------------------- selection


def _select(p: model.Plan, *, same_run: bool = True, approved: bool = True,
            skipped: tuple[planner.Skip, ...] = ()) -> tuple[list[str], dict[str, model.Held]]:
    runnable, held = selection.select(p, lambda c: approved, running=set(), backing_off={}, skipped=skipped,
                                   same_run=same_run)
    return [c.key for c in runnable], {c.key: h for c, h in held}


def test_later_waves_run_in_the_same_execution_as_the_first_or_wait() -> None:
    old, new = spec(regions=("r1", "r2", "r3"), waves=W), spec(image="img-2", regions=("r1", "r2", "r3"), waves=W)
    p = plan(desired(new), *(group(old, r) for r in ("r1", "r2", "r3"))).plan
    runnable, held = _select(p)
    assert len(runnable) == 3 and held == {}

    without_first = dataclasses.replace(p, changes=tuple(c for c in p.changes if c.region != "r1"))
    skip = planner.Skip("local/default/r1/app", "app", "app", "stalled: spec kept failing", model.SkipKind.STALLED)
    runnable, held = _select(without_first, skipped=(skip,))
    assert runnable == [] and {h.kind for h in held.values()} == {model.Hold.WAVE}
    assert "r1: stalled: spec kept failing" in held["local/default/r2/app"].message


def test_a_destroy_waits_for_a_later_pass_in_the_daemon_and_for_a_held_replacement_always() -> None:
    old, new = spec(), spec(stack="web")
    p = plan(desired(new), group(old, "r1"), prune=True).plan
    assert len(_select(p)[0]) == 2, "a foreground run orders the destroy after the create"
    runnable, held = _select(p, same_run=False)
    assert runnable == ["local/default/r1/app-web"]
    assert held["local/default/r1/app"].kind is model.Hold.REPLACEMENT
    deny = model.PolicyVerdict("test", model.Verdict.DENY, "no")
    denied = dataclasses.replace(p, changes=tuple(
        dataclasses.replace(c, verdicts=(deny,)) if c.action is Action.CREATE else c for c in p.changes))
    runnable, held = _select(denied)
    assert runnable == [] and "app-web in r1 (denied: no)" in held["local/default/r1/app"].message


def test_complete_drops_a_later_wave_whose_earlier_wave_left_the_run() -> None:
    old, new = spec(regions=("r1", "r2", "r3"), waves=W), spec(image="img-2", regions=("r1", "r2", "r3"), waves=W)
    changes = by_region(plan(desired(new), *(group(old, r) for r in ("r1", "r2", "r3"))))
    every = [changes["r1"], changes["r2"], changes["r3"]]
    assert selection.complete(every, same_run=False) == every
    assert selection.complete([changes["r2"], changes["r3"]], same_run=False) == [], \
        "r1 (not serving the spec yet) is held elsewhere: its later wave does not run without it"
    done = [group(old, "r1", 0, enabled=False), group(new, "r1", 1), group(old, "r2"), group(old, "r3")]
    later = by_region(plan(desired(new), *done))
    assert selection.complete([later["r2"], later["r3"]], same_run=False) == [later["r2"], later["r3"]], \
        "r1 serves the spec: nothing to wait for"

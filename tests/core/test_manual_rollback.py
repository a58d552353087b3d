"""``reconciler rollback CLUSTER`` is planned for the retained group it names, with the steps a revert in Git runs."""

from __future__ import annotations

import dataclasses

from reconciler.core import model, planner
from reconciler.core.model import Action, Capacity
from reconciler.runtime import operations
from tests import builders

OLD = builders.spec(image="img-1", user_data="#!/bin/sh\necho old\n")
NEW = builders.spec(image="img-2", user_data="#!/bin/sh\necho new\n")
ZERO = Capacity(0, 0, 0)


def _live(retained: model.ServerGroup | None = None) -> list[model.ServerGroup]:
    kept = retained or builders.group(OLD, version=0, enabled=False, capacity=ZERO)
    return [kept, builders.group(NEW, version=1)]


def test_the_steps_are_those_of_a_revert_in_git() -> None:
    live = _live()
    revert = builders.outcome(builders.desired(OLD), *live).plan.changes[0]
    manual = planner.rollback_to(NEW, "r1", live[0], live, "c2", reason="by hand")
    assert revert.action is manual.action is Action.ROLLBACK
    assert builders.kinds(manual) == builders.kinds(revert) == [
        ("resize", "app-main-v000"), ("wait_healthy", "app-main-v000"), ("enable", "app-main-v000"),
        ("disable", "app-main-v001"), ("resize", "app-main-v001")]
    assert manual.steps == revert.steps
    assert (manual.current, manual.desired_server_group, manual.spec_hash) == (live[1], "app-main-v000",
                                                                               live[0].spec_hash)
    assert manual.desired is not None and manual.desired.launch == live[0].launch
    assert manual.desired.capacity == NEW.capacity and manual.reason == "by hand"


def test_a_retained_group_whose_cloud_forgot_a_field_is_still_the_one_brought_back() -> None:
    """A cloud that does not return user data reads back launch settings whose hash is not the group's:
    planning a spec made of them would ask for a new group instead of the retained one."""
    forgetful = dataclasses.replace(builders.group(OLD, version=0, enabled=False, capacity=ZERO),
                                    launch=dataclasses.replace(OLD.launch, user_data=""))
    assert forgetful.launch.spec_hash() != forgetful.spec_hash
    live = _live(forgetful)
    (change,) = operations.rollback_changes(NEW, planner.LiveState(tuple(live)), region=None, commit="c2",
                                            by="alice")
    assert change.action is Action.ROLLBACK and change.desired_server_group == "app-main-v000"
    assert "create" not in [kind for kind, _ in builders.kinds(change)]
    assert change.spec_hash == OLD.launch.spec_hash()
    assert change.reason == "manual rollback to app-main-v000 by alice; Git disagrees until the deploy is reverted"


def test_groups_created_in_the_same_second_are_ordered_by_version() -> None:
    """Creation times are coarse (AWS reports seconds): two groups of one second are still older and newer."""
    live = [builders.group(OLD, version=0, enabled=False, capacity=ZERO, created_at=5.0),
            builders.group(NEW, version=1, created_at=5.0)]
    (change,) = operations.rollback_changes(NEW, planner.LiveState(tuple(live)), region="r1", commit="c2", by="bob")
    assert change.desired_server_group == "app-main-v000" and change.current == live[1]

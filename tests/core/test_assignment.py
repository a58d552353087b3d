"""Rendezvous shares with bounded loads: the same answer everywhere, even, and stable."""

from __future__ import annotations

from reconciler.core import assignment

UNITS = [f"local/default/app{i:03d}-main" for i in range(60)]


def test_every_unit_has_one_owner_and_no_member_gets_more_than_its_share() -> None:
    table = assignment.assign(UNITS, ["a", "b", "c"])
    assert sorted(table) == sorted(UNITS)
    loads = {m: sum(1 for o in table.values() if o == m) for m in "abc"}
    assert loads == {"a": 20, "b": 20, "c": 20}


def test_the_split_depends_only_on_the_inputs_not_their_order() -> None:
    assert assignment.assign(UNITS, ["a", "b", "c"]) == assignment.assign(reversed(UNITS), ["c", "a", "b"])


def test_a_member_leaving_moves_its_units_and_few_others() -> None:
    before = assignment.assign(UNITS, ["a", "b", "c"])
    after = assignment.assign(UNITS, ["a", "c"])
    moved_from_others = [u for u in UNITS if before[u] != "b" and after[u] != before[u]]
    assert all(after[u] in ("a", "c") for u in UNITS)
    assert len(moved_from_others) <= 6, moved_from_others


def test_the_regions_of_one_cluster_are_one_unit_and_unknown_clusters_still_have_an_owner() -> None:
    assert assignment.unit_of("local/default/us-east-1/app-main") == assignment.unit_of(
        "local/default/eu-west-1/app-main") == "local/default/app-main"
    owner = assignment.owner("aws/prod/us-east-1/gone-main", {}, ["a", "b"])
    assert owner == assignment.owner("aws/prod/eu-west-1/gone-main", {}, ["b", "a"]) and owner in ("a", "b")
    assert assignment.owner("aws/prod/us-east-1/x", {}, []) is None

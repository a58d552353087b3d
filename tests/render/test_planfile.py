"""Saved plans come back as the exact same plan, and edited or damaged files are refused by key."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from reconciler import planfile, render
from reconciler.core import errors, jsontext, model
from tests.render import factory


@pytest.mark.parametrize("name", [*sorted(factory.SCENARIOS), "large"])
def test_a_saved_plan_loads_back_equal(name: str) -> None:
    plan = factory.large(5) if name == "large" else factory.SCENARIOS[name]()
    loaded = planfile.load_plan(planfile.dump_plan(plan), file="plan.json")
    assert loaded == plan and loaded.plan_id == plan.plan_id
    assert planfile.dump_plan(loaded) == planfile.dump_plan(plan)


def test_the_saved_plan_is_the_json_contract_plus_what_apply_needs() -> None:
    plan = factory.image_change()
    doc = json.loads(planfile.dump_plan(plan))
    contract = render.render_json(plan)
    assert {k: doc[k] for k in contract} == contract
    assert doc["format_version"] == planfile.FORMAT_VERSION and doc["digest"].startswith("sha256:")
    change = doc["plan"]["changes"][0]
    assert change["desired"]["strategy"]["delay_before_disable_s"] == 30
    assert change["desired"]["source"] == {"file": "apps/checkout.yaml", "line": 3, "fields": []}
    assert change["current"]["extra"] == [["launch-template", "lt-004"]]


def test_ints_stay_ints_so_the_plan_id_does_not_move() -> None:
    s = factory.spec()
    s = model.ClusterSpec(**{**{f: getattr(s, f) for f in s.__dataclass_fields__},
                             "health": model.HealthSpec(90, 300)})
    plan = factory.plan(factory.create(s, "us-east-1"))
    loaded = planfile.load_plan(planfile.dump_plan(plan), file="plan.json")
    assert loaded.plan_id == plan.plan_id
    assert loaded.changes[0].steps[1].seconds == 300 and isinstance(loaded.changes[0].steps[1].seconds, int)


def _tampered(edit: Any, *, redigest: bool) -> str:
    doc = json.loads(planfile.dump_plan(factory.image_change()))
    edit(doc)
    if redigest:
        doc["digest"] = planfile._digest({k: v for k, v in doc.items() if k != "digest"})
    return json.dumps(doc)


def _refusal(text: str) -> str:
    with pytest.raises(errors.ReconcilerError) as info:
        planfile.load_plan(text, file="ci/plan.json")
    assert str(info.value).startswith("ci/plan.json")
    return str(info.value)


def _set_capacity(doc: dict[str, Any]) -> None:
    doc["plan"]["changes"][0]["steps"][0]["capacity"]["desired"] = 30


def test_any_edit_is_refused_by_the_digest() -> None:
    assert "digest: the saved plan was edited or damaged" in _refusal(_tampered(_set_capacity, redigest=False))


def test_an_edit_with_a_recomputed_digest_is_refused_by_the_plan_id() -> None:
    message = _refusal(_tampered(_set_capacity, redigest=True))
    assert "plan_id:" in message and "does not match the plan's content" in message


def test_top_level_fields_must_agree_with_the_plan() -> None:
    def move_commit(doc: dict[str, Any]) -> None:
        doc["live_fingerprint"] = "0" * 16

    assert "live_fingerprint: does not match" in _refusal(_tampered(move_commit, redigest=True))


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d["plan"]["changes"][0].pop("region"), "plan.changes[0].region: missing"),
        (lambda d: d["plan"]["changes"][0].update(colour="red"), "plan.changes[0].colour: unknown key"),
        (lambda d: d["plan"]["changes"][1].update(action="explode"),
         "plan.changes[1].action: 'explode' is not one of create, replace, resize, destroy, rollback"),
        (lambda d: d["plan"]["changes"][0]["desired"]["capacity"].update(min="2"),
         "plan.changes[0].desired.capacity.min: expected int, got str"),
        (lambda d: d["plan"]["changes"][0]["current"].update(enabled=1),
         "plan.changes[0].current.enabled: expected bool, got int"),
        (lambda d: d["plan"]["changes"][0]["desired"]["launch"].update(tags=[["a", "b", "c"]]),
         "plan.changes[0].desired.launch.tags[0]: expected 2 items, got 3"),
        (lambda d: d["plan"].update(changes={}), "plan.changes: expected a list, got dict"),
        (lambda d: d.update(plan=[]), "plan: expected an object, got list"),
    ],
)
def test_malformed_content_names_the_key(edit: Any, expected: str) -> None:
    assert _refusal(_tampered(edit, redigest=True)) == f"ci/plan.json: {expected}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{not json", "ci/plan.json:1: not a saved plan (invalid JSON"),
        ("[1, 2]", "not a saved plan (expected a JSON object)"),
        ('{"plan_id": "x"}', "not a saved plan (no 'format_version')"),
        ("[" * 100_000, "not a saved plan"),
    ],
)
def test_files_that_are_not_saved_plans_are_refused(text: str, expected: str) -> None:
    assert expected in _refusal(text)


def test_a_plan_from_another_format_version_is_refused() -> None:
    text = _tampered(lambda d: d.update(format_version=99), redigest=True)
    assert "format_version: saved plan format 99 is not supported" in _refusal(text)


def _private_fields(root: type) -> dict[type, tuple[str, ...]]:
    """Every dataclass reachable from ``root``'s field types with fields no constructor takes."""
    import dataclasses
    import enum
    import typing

    found: dict[type, tuple[str, ...]] = {}
    seen: set[Any] = set()

    def walk(hint: Any) -> None:
        if hint in seen or hint in (str, int, float, bool, type(None)) or isinstance(hint, typing.NewType):
            return
        seen.add(hint)
        assert hint is not Any, f"an Any among the field types of {root.__name__}: the C encoder cannot be checked"
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            private = tuple(f.name for f in dataclasses.fields(hint) if not f.init)
            if private:
                found[hint] = private
            for h in typing.get_type_hints(hint).values():
                walk(h)
        elif typing.get_args(hint):
            for h in typing.get_args(hint):
                if h is not Ellipsis:
                    walk(h)
        else:
            assert isinstance(hint, type) and issubclass(hint, enum.Enum), hint

    walk(root)
    return found


def test_the_c_encoder_of_changes_drops_exactly_the_private_fields() -> None:
    from reconciler.core.resources import ResourceChange

    assert {**_private_fields(model.Change), **_private_fields(ResourceChange)} == planfile.PRIVATE_FIELDS
    for name in [*sorted(factory.SCENARIOS), "large"]:
        plan = factory.large() if name == "large" else factory.SCENARIOS[name]()
        for change in plan.changes:
            assert json.dumps(planfile._change_builtins(change), sort_keys=True) == json.dumps(
                planfile._encode(change), sort_keys=True)


@pytest.mark.parametrize("name", [*sorted(factory.SCENARIOS), "odd text"])
def test_the_plan_json_written_with_the_saved_plan_builds_each_change_once(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``plan --format json --out``: one pass writes both documents, each byte what each writes alone, and
    each change's contract view is built once (it was built for each document)."""
    if name == "odd text":  # what the two documents escape differently: DEL, non-ASCII, beyond the BMP
        plan = factory.plan(factory.create(factory.spec(tags=(("team", "caf\u00e9 \x7f \U0001f600"),)), "eu-\u00e9"))
    else:
        plan = factory.SCENARIOS[name]()
    built: list[model.Change] = []
    contract_view = render.json._change_json

    def counted(c: model.Change) -> dict[str, Any]:
        built.append(c)
        return contract_view(c)

    monkeypatch.setattr(render.json, "_change_json", counted)
    alone_saved = planfile.dump_plan(plan).encode()
    alone_shown: list[str] = []
    jsontext.write_pretty(render.render_json(plan, lazy=True), alone_shown.append, allow_nan=True)
    assert len(built) == 2 * len(plan.changes)
    built.clear()
    saved, shown = io.BytesIO(), io.StringIO()
    planfile.write_plan(saved, plan, show=(render.render_json(plan, lazy=True), shown.write))
    assert saved.getvalue() == alone_saved and shown.getvalue() == "".join(alone_shown)
    assert built == list(plan.changes)

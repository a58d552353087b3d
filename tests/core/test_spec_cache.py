"""The validated-spec cache beside the state: a second CLI run on a commit parses nothing and plans the same bytes."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from pathlib import Path

import pytest

from reconciler.core import errors, jsontext, model
from reconciler.state import speccache
from specs import limits as limits_mod
from tests.conftest import Env, app_spec

VARIED = {
    "apps/values.yaml": "image: shop\nteam: zurich-ops\nmotto: Grüße, 東京\n",
    "apps/checkout.yaml": app_spec("checkout", image="{{ values.image }}-1.0", extra=r"""
        user_data: "#!/bin/sh\necho ünïcödé\t\u2028 {{ values.motto }} > /tmp/x\n"
        tags: {team: "{{ values.team }}", db_password: hunter2, cost-center: "cc 42"}
        load_balancers: [checkout-public]
        security_groups: [sg-1, sg-2]
        strategy: {keep_disabled: 2, scale_down: false, delay_before_disable: 1m}
        rollout: {waves: [[eu-west-1], [us-east-1]], pause: 1s}
    """) + "load_balancers:\n  - {name: checkout-public, health_check: {path: /ready}}\n"
           "security_groups:\n  - {name: sg-1, ingress: [{protocol: tcp, ports: 443, cidr: 0.0.0.0/0}]}\n"
           "  - {name: sg-2}\n",
    "apps/search.yaml": app_spec("search", regions=("us-east-1",), criticality="critical", desired=3,
                                 timeout="90s", extra="autoscaling: true\ndetail: edge\n"),
    "apps/team/billing.yml": app_spec("billing", stack="api") + "  - stack: worker\n    provider: local\n"
    "    account: default\n    regions: [eu-west-1]\n    image: billing-w\n    instance_type: m5.large\n"
    "    capacity: {min: 0, desired: 1, max: 2}\n",
    "apps/broken.yaml": app_spec("broken").replace("capacity: {min: 1", "capacity: {min: many"),
    "apps/README.md": "application: docs\n",
}


def _parsed(caplog: pytest.LogCaptureFixture) -> list[tuple[int, int]]:
    """(files parsed, read from the spec cache) of each load the CLI logged."""
    found = [re.search(r"specs: (\d+) file\(s\) parsed, (\d+) read from the spec cache", r.getMessage())
             for r in caplog.records]
    caplog.clear()
    return [(int(m.group(1)), int(m.group(2))) for m in found if m]


def test_a_second_plan_on_the_same_commit_parses_nothing_and_prints_the_same_bytes(
        env: Env, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="specs.loader")
    for path, text in VARIED.items():
        env.repo.write(path, text)
    env.repo.commit("a varied tree")
    runs = []
    out = tmp_path / "plan.json"
    for _ in range(2):  # --no-cache: evaluated each time (from parsed specs, then from the cached ones)
        res = env.cli("plan", "--format", "json", "--out", str(out), "--no-cache")
        assert res.code == 1, res.err  # broken.yaml is a spec problem; the others are planned
        runs.append((res.out, res.err, out.read_bytes(), _parsed(caplog)))
    (out1, err1, saved1, counts1), (out2, err2, saved2, counts2) = runs
    assert counts1 == [(4, 0)] and counts2 == [(0, 4)]  # checkout, search, billing, broken
    assert (out2, err2, saved2) == (out1, err1, saved1)
    doc = json.loads(out1)
    assert len(doc["changes"]) == 6 and len(doc["resource_changes"]) == 6
    assert "broken.yaml" in err1 and "hunter2" not in out1
    assert (env.state_dir / speccache.FILE_NAME).is_file()
    # the saved plan from cached specs applies like any other
    assert env.cli("apply", "--plan", str(out), "--yes").code == 0


def test_a_changed_file_is_parsed_alone(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="specs.loader")
    for i in range(5):
        env.repo.write(f"apps/app{i}.yaml", app_spec(f"app{i}"))
    env.repo.commit("five")
    assert env.cli("plan").code == 2
    env.repo.write("apps/app3.yaml", app_spec("app3", image="app3-2.0")).commit("one changed")
    _parsed(caplog)
    assert env.cli("plan").code == 2
    assert _parsed(caplog) == [(1, 4)]


def _result(name: str = "a") -> tuple[model.Application, tuple[errors.SpecProblem, ...]]:
    spec = model.ClusterSpec(application=name, provider="local", account="default", regions=("r1", "r2"),
                             launch=model.LaunchSpec("img", "m5.large", tags=(("k", "v"),)),
                             capacity=model.Capacity(1, 2, 3), health=model.HealthSpec(90, 60.0),
                             source=model.SourceRef(f"apps/{name}.yaml", 5, (("clusters[0].provider", 7),)))
    return model.Application(name, "o@example.com", model.Criticality.CRITICAL, (spec,),
                             model.SourceRef(f"apps/{name}.yaml", 1)), ()


def test_entries_round_trip_exactly_and_other_code_or_limits_never_read_them(tmp_path: Path) -> None:
    path = tmp_path / speccache.FILE_NAME
    store = speccache.SpecStore(path)
    store.use(limits_mod.SpecLimits())
    app, none = _result()
    problem = (None, (errors.SpecProblem("apps/b.yaml", 3, "capacity.min", "must be an integer"),))
    store.put_many({("apps/a.yaml", "blob1", "v1"): (app, none), ("apps/b.yaml", "blob2", "v1"): problem})
    got = store.get_many([("apps/a.yaml", "blob1", "v1"), ("apps/b.yaml", "blob2", "v1"), ("apps/a.yaml", "x", "")])
    assert got == {("apps/a.yaml", "blob1", "v1"): (app, ()), ("apps/b.yaml", "blob2", "v1"): problem}
    decoded = got[("apps/a.yaml", "blob1", "v1")][0]
    assert decoded is not None and decoded.clusters[0].source.fields == app.clusters[0].source.fields
    assert type(decoded.clusters[0].health.timeout_s) is float and decoded.criticality is model.Criticality.CRITICAL
    store.use(limits_mod.SpecLimits(render_timeout_s=1.0))  # other limits: other results
    assert store.get_many([("apps/a.yaml", "blob1", "v1")]) == {}
    store.close()

    with sqlite3.connect(path) as db:  # as if another release had written the file
        db.execute("UPDATE meta SET value = 'another release' WHERE name = 'code_version'")
    again = speccache.SpecStore(path)
    again.use(limits_mod.SpecLimits())
    assert again.get_many([("apps/a.yaml", "blob1", "v1")]) == {}
    again.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM specs").fetchone() == (0,)


def test_a_damaged_or_unusable_cache_costs_a_parse_never_a_plan(
        env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    env.repo.write("apps/checkout.yaml", app_spec()).commit("v1")
    first = env.cli("plan", "--format", "json")
    with sqlite3.connect(env.state_dir / speccache.FILE_NAME) as db:
        db.execute("UPDATE specs SET value = x'c1ffee'")
    _parsed(caplog)
    damaged = env.cli("plan", "--format", "json")
    assert damaged.out == first.out and _parsed(caplog) == [(1, 0)]
    (env.state_dir / speccache.FILE_NAME).unlink()
    (env.state_dir / speccache.FILE_NAME).mkdir()  # not a database at all
    unusable = env.cli("plan", "--format", "json")
    assert unusable.code == 2 and unusable.out == first.out
    assert any("spec cache" in r.getMessage() and "cannot be used" in r.getMessage() for r in caplog.records)


def test_pretty_json_is_what_indent_2_writes() -> None:
    doc = {"b": [1, 2.5, {}, [], 1e16, -0.0, 10**20], "a": {"z": "é\u2028\x7f\n\"\\ \U0001F600\x00", "y": None},
           "c": True, "": {"nested": [{"k": "v"}]}}
    for ascii_only in (True, False):
        assert jsontext.pretty(doc, ensure_ascii=ascii_only) == json.dumps(
            doc, indent=2, sort_keys=True, ensure_ascii=ascii_only)
    odd = {"x": [float("nan"), float("inf")]}  # what json.dumps writes by default, though it is not JSON
    assert jsontext.pretty(odd) == json.dumps(odd, indent=2, sort_keys=True)


def test_equal_texts_of_decoded_entries_are_one_object_each(tmp_path: Path) -> None:
    """MessagePack has no references: without sharing, every cluster's provider, regions and tags came back as
    objects of their own (410,000 strings of 42,000 texts at 10,000 clusters)."""
    store = speccache.SpecStore(tmp_path / speccache.FILE_NAME)
    store.use(limits_mod.SpecLimits())
    made = {(f"apps/a{i}.yaml", f"blob{i}", "v1"): _result(f"a{i}") for i in range(20)}
    store.put_many(made)
    got = store.get_many(list(made))
    store.close()
    assert got == made  # the same values
    specs = [c for app, _ in got.values() if app is not None for c in app.clusters]
    assert len(specs) == 20
    for where in (lambda c: c.provider, lambda c: c.account, lambda c: c.regions, lambda c: c.regions[1],
                  lambda c: c.launch.instance_type, lambda c: c.launch.tags, lambda c: c.launch.tags[0][1],
                  lambda c: c.source.fields, lambda c: c.source.fields[0][0]):
        assert len({id(where(c)) for c in specs}) == 1
    assert len({id(c.application) for c in specs}) == 20  # texts that differ stay apart
    assert len({id(c.launch.image) for c in specs}) == 20  # images and user data are not shared at all

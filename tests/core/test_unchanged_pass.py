"""A daemon pass whose inputs did not change plans and judges nothing again; any changed input decides anew."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from reconciler.config import settings as config_mod
from reconciler.core import clock as clock_mod
from reconciler.core import model
from reconciler.runtime import engine as engine_mod
from tests.conftest import Env, app_spec, write_config

WINDOWS = """
defaults:
  windows:
    timezone: UTC
    allow: [{days: [mon, tue, wed, thu, fri], from: "09:00", to: "17:00"}]
"""


def _engine(env: Env, clock: clock_mod.FakeClock) -> engine_mod.Engine:
    return engine_mod.Engine(config_mod.load_config(str(env.config)), clock=clock, background=True)


def test_an_unchanged_pass_reuses_its_decisions_and_each_input_invalidates_them(env: Env) -> None:
    for i in range(3):
        env.repo.write(f"apps/app{i}.yaml", app_spec(f"app{i}"))
    env.repo.write("apps/policies.yaml", WINDOWS).commit("three apps, weekday windows")
    clock = clock_mod.FakeClock(datetime(2026, 11, 28, 10, 0, tzinfo=UTC).timestamp())  # a Saturday: closed
    eng = _engine(env, clock)

    def decided() -> bool:
        """One pass; did it plan and judge anew?"""
        misses = eng.pipeline.evaluations.misses
        eng.reconcile()
        return eng.pipeline.evaluations.misses > misses

    try:
        assert decided() and eng.status()["plan_id"]
        # the first pass recorded which file defines each application; planning reads that only for the
        # applications of managed live groups (none yet), so the second pass decides nothing anew
        assert not decided()
        plan_id = eng.status()["plan_id"]
        clock.advance(60)  # still closed, nothing else moved: the same decisions, made by nobody
        assert not decided() and not decided()
        status = eng.status()
        assert status["plan_id"] == plan_id and status["updated_at"] == clock.now() and len(status["changes"]) == 6
        assert {h["kind"] for h in status["held"]} == {model.Hold.DENIED.value}

        eng.pause("app1", by="ops", reason="look first")  # a pause is an input
        assert decided() and not decided()
        eng.resume("app1", by="ops")
        assert decided() and not decided()

        env.repo.write("apps/app2.yaml", app_spec("app2", image="app2-2.0")).commit("one file")
        assert decided()  # a new commit: decided anew, with the new spec
        assert not decided()

        clock.t = datetime(2026, 11, 30, 9, 30, tzinfo=UTC).timestamp()  # Monday: the window opened by itself
        misses = eng.pipeline.evaluations.misses
        opened = eng.reconcile()
        assert eng.pipeline.evaluations.misses == misses + 1, "the clock's verdicts are an input"
        assert opened.dispatched == 6
        eng.wait(timeout=60)  # the status refresh after the rollouts decided anew on the new live state
        assert eng.pipeline.evaluations.misses > misses + 1 and len(eng.status()["server_groups"]) == 6
        assert not decided(), "an unchanged pass after the rollouts decides nothing again"
        assert eng.status()["changes"] == []
    finally:
        eng.close()


def test_an_approval_and_its_expiry_are_inputs(env: Env) -> None:
    env.repo.write("apps/pay.yaml", app_spec("pay", regions=("us-east-1",)))
    env.repo.write("apps/policies.yaml", "defaults: {require_approval: always}\n").commit("approvals required")
    clock = clock_mod.FakeClock()
    eng = _engine(env, clock)
    try:
        eng.reconcile()
        eng.reconcile()  # the first pass recorded the application's file: not an input of this plan
        eng.reconcile()
        assert (eng.pipeline.evaluations.misses, eng.pipeline.evaluations.hits) == (1, 2)
        assert [h["kind"] for h in eng.status()["held"]] == [model.Hold.APPROVAL.value]
        eng.freeze(by="ops", reason="approve, but run nothing yet")
        eng.reconcile()
        assert eng.pipeline.evaluations.misses == 2
        eng.approve(eng.status()["changes"][0]["change_id"], by="lead")
        eng.reconcile()
        assert eng.pipeline.evaluations.misses == 3
        assert [h["kind"] for h in eng.status()["held"]] == [model.Hold.DENIED.value]  # approved, but frozen
        eng.reconcile()
        assert eng.pipeline.evaluations.misses == 3
        clock.advance(eng.config.approval_ttl_s + 1)  # the approval expired: decided anew
        eng.reconcile()
        assert eng.pipeline.evaluations.misses == 4
    finally:
        eng.close()


def _timeless(status: dict[str, object]) -> str:
    """The document without the pass's time and reason (the only values an unchanged pass changes)."""
    doc = json.loads(json.dumps(status))
    doc.pop("updated_at"), doc.pop("reason")
    for app in doc["applications"].values():
        for c in app["conditions"]:
            c.pop("at")
    return json.dumps(doc, sort_keys=True)


def test_an_unchanged_pass_writes_no_status_document_and_status_still_shows_it(env: Env) -> None:
    for i in range(3):
        env.repo.write(f"apps/app{i}.yaml", app_spec(f"app{i}"))
    env.repo.write("apps/policies.yaml", WINDOWS).commit("three apps, weekday windows")
    clock = clock_mod.FakeClock(datetime(2026, 11, 28, 10, 0, tzinfo=UTC).timestamp())  # closed: nothing runs
    eng = _engine(env, clock)
    try:
        eng.reconcile()
        eng.reconcile()
        before, built = eng.status(), eng.pipeline.status.built
        for reason in ("poll", "webhook"):
            clock.advance(60)
            eng.reconcile(reason=reason)
            assert eng.pipeline.status.built == built, "the same evaluation: no document built or written"
            shown = eng.status()
            assert (shown["updated_at"], shown["reason"]) == (clock.now(), reason)
            conditions = [c for app in shown["applications"].values() for c in app["conditions"]]
            assert len(conditions) == 3 and {c["at"] for c in conditions} == {clock.now()}
            assert _timeless(shown) == _timeless(before)

        other = _engine(env, clock)  # `reconciler status` from another process writes a document of its own
        try:
            clock.advance(1)
            other.refresh_status()
        finally:
            other.close()
        clock.advance(60)
        eng.reconcile()
        assert eng.pipeline.status.built == built + 1, "not its own document any more: written whole again"
        assert eng.status()["updated_at"] == clock.now()

        eng.pause("app1", by="ops", reason="look first")  # a new evaluation: a new document
        eng.reconcile()
        assert eng.pipeline.status.built == built + 2
        assert _timeless(eng.status()) != _timeless(before)
    finally:
        eng.close()


def test_images_found_by_pattern_keep_an_unchanged_pass_unchanged_until_a_new_one_is_baked(env: Env) -> None:
    """Patterns are resolved through the provider every pass; the same answer is the same application."""
    def configure(*names: str) -> None:
        write_config(env.config, env.repo.path, env.state_dir, providers={"local": {"accounts": {"default": {
            "boot_seconds": 0, "images": [{"name": n, "created": i} for i, n in enumerate(names)]}}}})

    configure("web-1-a")
    env.repo.write("apps/web.yaml", app_spec("web", image="x").replace(
        'image: "x"', 'image: {name: "web-1-*", newest: true}')).commit("web by pattern")
    clock = clock_mod.FakeClock()
    eng = _engine(env, clock)
    try:
        eng.reconcile()
        eng.wait(timeout=60)
        eng.reconcile()
        misses, hits = eng.pipeline.evaluations.misses, eng.pipeline.evaluations.hits
        eng.reconcile()
        assert (eng.pipeline.evaluations.misses, eng.pipeline.evaluations.hits) == (misses, hits + 1)
        assert {g["image"] for g in env.groups()} == {"web-1-a"}

        configure("web-1-a", "web-1-b")  # a newer bake: found on the next pass, decided anew
        eng.apply_config(config_mod.load_config(str(env.config)))
        first = eng.reconcile()
        assert first.dispatched == 2 and eng.pipeline.evaluations.misses > misses
        eng.wait(timeout=60)
        assert {g["image"] for g in env.groups() if g["enabled"]} == {"web-1-b"}
    finally:
        eng.close()

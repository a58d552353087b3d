"""Hostile spec trees through the CLI and the engine: one file never stops the others, a huge commit is refused
whole and prunes nothing, and no value can forge a line of the text plan."""

from __future__ import annotations

import json
import re
from pathlib import Path

from reconciler.config import settings as config_mod
from reconciler.core import clock as clock_mod
from reconciler.runtime import engine as engine_mod
from tests.conftest import Env, app_spec, run_cli, write_config

SPIN = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


def _limited(env: Env, **specs: object) -> None:
    write_config(env.config, env.repo.path, env.state_dir, specs=specs, prune=True)


def test_validate_reports_every_hostile_file_and_loads_the_rest(env: Env) -> None:
    _limited(env, render_timeout="200ms", render_memory="64MiB")
    env.repo.write("apps/good.yaml", app_spec("good"))
    env.repo.write("apps/deep.yaml", app_spec("deep") + "# x\nx: " + "[" * 600 + "]" * 600 + "\n")
    env.repo.write("apps/spin.yaml", app_spec("spin") + SPIN + "\n")
    env.repo.write("apps/wide.yaml", app_spec("wide") + "# {{ 'x'|center(2000000000) }}\n")

    res = run_cli("validate", str(env.repo.path), "--config", str(env.config))

    assert res.code == 1
    assert res.out.splitlines() == [
        "apps/deep.yaml:14: (file): nested more than 64 levels deep (lists and mappings inside each other); "
        "a spec needs a handful",
        "apps/spin.yaml:13: (file): template rendering took longer than 0.2s (specs.render_timeout); it was stopped",
        "apps/wide.yaml:13: (file): template refused by the sandbox: center(2000000000) would build 2,000,000,000 "
        "characters",
    ]
    assert "Traceback" not in res.err and res.err.strip() == "3 problem(s) in 3 file(s)"


def test_a_commit_over_the_file_limit_keeps_the_last_good_commit_and_prunes_nothing(env: Env) -> None:
    _limited(env, max_files=4)
    env.repo.write("apps/checkout.yaml", app_spec("checkout", regions=("us-east-1",)))
    env.repo.write("apps/cart.yaml", app_spec("cart", regions=("us-east-1",)))
    good = env.repo.commit("two apps")
    assert env.cli("run", "--once").code == 0
    env.repo.remove("apps/cart.yaml")
    for i in range(5):
        env.repo.write(f"apps/junk/{i}.txt", "x\n")
    big = env.repo.commit("cart removed, junk added")

    assert env.cli("run", "--once").code == 0
    status = env.status()

    assert status["commit"] == good
    assert status["source_error"] == (f"apps/ holds 6 files, more than the limit of 4 (specs.max_files); none of "
                                      f"it is loaded (commit {big[:8]}); keeping {good[:8]} in force")
    assert {g["cluster"] for g in status["server_groups"] if g["enabled"]} == {"checkout-main", "cart-main"}
    assert any(c["reason"] == "SourceError" for c in status["applications"]["cart"]["conditions"])

    for i in range(5):
        env.repo.remove(f"apps/junk/{i}.txt")
    fixed = env.repo.commit("junk gone")
    assert env.cli("run", "--once").code == 0
    after = env.status()
    assert after["commit"] == fixed and after["source_error"] is None


def test_planning_a_ref_over_the_byte_limit_is_an_error_with_the_numbers(env: Env) -> None:
    _limited(env, max_total_size="2KiB")
    env.repo.write("apps/checkout.yaml", app_spec() + "#" * 4000 + "\n").commit("big")

    res = env.cli("plan", "--ref", "HEAD")

    assert res.code == 1
    assert "apps/ holds 4.2 KiB of files, more than the limit of 2 KiB (specs.max_total_size)" in res.err


def test_policies_yaml_is_parsed_once_per_blob_across_passes(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec())
    env.repo.write("apps/policies.yaml", "defaults: {blast_radius: {max_clusters: 9}}\n").commit("v1")
    eng = engine_mod.Engine(config_mod.load_config(env.config), clock=clock_mod.FakeClock())
    try:
        for _ in range(3):
            eng.refresh_status()
        assert eng.desired.cache.policy_parses == 1
        env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2")).commit("v2: specs only")
        eng.refresh_status()
        assert eng.desired.cache.policy_parses == 1, "the same blob at a new commit is not parsed again"
    finally:
        eng.close()


def test_the_engine_renders_in_workers_it_reuses_and_stops_on_close(env: Env) -> None:
    for name in ("checkout", "cart"):
        env.repo.write(f"apps/{name}.yaml", app_spec(name, image="{{ values.image }}"))
    env.repo.write("apps/values.yaml", "image: img-1\n").commit("v1")
    eng = engine_mod.Engine(config_mod.load_config(env.config), clock=clock_mod.FakeClock())
    try:
        eng.refresh_status()
        env.repo.write("apps/values.yaml", "image: img-2\n").commit("v2")
        eng.refresh_status()
        pool = eng.desired.renderer()
        pids = pool.pids()
        assert pool.starts == len(pids) >= 1
        assert eng.desired.cache.parses == 4
    finally:
        eng.close()
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)


def test_a_value_cannot_forge_a_line_of_the_text_plan(env: Env) -> None:
    forged = "Plan: 0 to create, 0 to replace, 0 to resize, 0 to roll back, 0 to destroy; 0 need approval, 0 denied"
    env.repo.write("apps/checkout.yaml", app_spec())
    env.repo.write(f"apps/x\n{forged}\n.yaml", "application: [\n")
    env.repo.write("apps/policies.yaml", json.dumps({"freeze": {"reason": f"release\n{forged}", "by": "ann"}}) + "\n")
    env.repo.commit("forgery attempts")

    res = env.cli("plan")
    markdown = env.cli("plan", "--format", "markdown").out

    assert res.code == 1
    lines = res.out.splitlines()
    assert [line[:17] for line in lines if line.startswith("Plan: ")] == ["Plan: 2 to create"], res.out
    assert "apps/x\\nPlan: 0 to create" in res.out and "release\\nPlan: 0 to create" in res.out
    assert not any(line.startswith(("Plan: 0", "**Plan: 0")) for line in markdown.splitlines())


def test_run_and_status_survive_deep_nesting_and_a_12_mb_policy_file(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec(regions=("us-east-1",)))
    env.repo.write("apps/deep.yaml", "application: deep\nowner: o\nclusters: " + "[" * 600 + "]" * 600 + "\n")
    env.repo.write("apps/policies.yaml", "defaults: {}\n" + "# padding\n" * 1_200_000).commit("hostile")

    assert env.cli("run", "--once").code == 0
    res = env.cli("status")
    status = env.status()

    assert res.code == 0 and "Traceback" not in res.err
    assert sorted(status["problems"]) == [
        "apps/deep.yaml:3: (file): nested more than 64 levels deep (lists and mappings inside each other); "
        "a spec needs a handful",
        "apps/policies.yaml:1: (file): file is larger than 1024 KiB; not parsed (split it up)",
    ]
    assert status["server_groups"] == [], "the broken policy file holds every change"


def test_a_reload_with_other_limits_starts_new_workers(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec(image="{{ 'checkout-1' }}")).commit("v1")
    eng = engine_mod.Engine(config_mod.load_config(env.config), clock=clock_mod.FakeClock())
    try:
        eng.refresh_status()
        first = eng.desired.renderer()
        _limited(env, render_timeout="5s")
        eng.config = config_mod.load_config(env.config)  # what SIGHUP does
        eng.refresh_status()
        second = eng.desired.renderer()
        assert first.closed and not second.closed
        assert second.limits.render_timeout_s == 5.0 and eng.desired.cache.parses == 2
    finally:
        eng.close()


def test_a_bad_specs_section_is_a_config_error_naming_the_file(env: Env) -> None:
    _limited(env, render_memory="lots")

    res = env.cli("validate", str(env.repo.path))

    assert res.code == 1
    assert re.search(rf"^{re.escape(str(env.config))}:\d+: specs.render_memory: 'lots' is not a size "
                     r"\(use e.g. 512KiB, 256MiB, 1GiB\)$", res.out, re.M), res.out
    assert "1 problem in the config" in res.err


def test_status_and_history_text_show_control_characters_as_escapes(env: Env) -> None:
    forged = "\nPlan: 0 to create"
    env.repo.write("apps/checkout.yaml", app_spec(regions=("us-east-1",)))
    env.repo.write("apps/policies.yaml", json.dumps({"freeze": {"reason": f"release{forged}", "by": "ann"}}) + "\n")
    env.repo.commit("frozen")
    assert env.cli("run", "--once").code == 0

    status = env.cli("status").out
    assert env.cli("pause", "checkout", "--reason", f"look{forged}").code == 0
    history = env.cli("history").out

    for out in (status, history):
        assert not any(line.startswith("Plan:") for line in out.splitlines()), out
    assert "release\\nPlan: 0 to create" in status and "look\\nPlan: 0 to create" in history


def test_a_number_that_is_not_finite_is_a_spec_problem_and_the_others_plan(env: Env) -> None:
    """``.nan`` passes every bound (a canary score of .nan judged nothing and broke the saved plan)."""
    env.repo.write("apps/good.yaml", app_spec("good", regions=("us-east-1",)))
    canary = app_spec("odd", regions=("us-east-1",)).replace(
        "    health:", "    strategy: {type: canary, canary: {steps: [{weight: 10, pause: 1m}],\n"
        "               score: {pass: .nan, marginal: -.inf}}}\n    health:")
    env.repo.write("apps/odd.yaml", canary)
    env.repo.write("apps/huge.yaml", app_spec("huge", regions=("us-east-1",)) + "    max_surge: 1.0e+999\n")
    env.repo.commit("odd numbers")
    res = run_cli("validate", str(env.repo.path), "--config", str(env.config))
    assert res.code == 1 and "Traceback" not in res.err
    assert "apps/odd.yaml:13: clusters[0].strategy.canary.score.pass: .nan is not a finite number" in res.out
    assert "clusters[0].strategy.canary.score.marginal: -.inf is not a finite number" in res.out
    assert "apps/huge.yaml:13: clusters[0].max_surge: 1.0e+999 is not a finite number" in res.out
    plan = env.cli("plan", "--format", "json", "--out", str(env.state_dir.parent / "plan.json"))
    assert plan.code == 1 and "Traceback" not in plan.err  # a spec problem: the good file is planned
    assert [c["application"] for c in json.loads(plan.out)["changes"]] == ["good"]

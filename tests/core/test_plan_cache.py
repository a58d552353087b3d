"""``plan``'s persisted answers: a second plan of the same inputs decides nothing and prints the same bytes.

Every CLI run here is real (a pygit2 repository, the local provider, SQLite); ``planner.plan`` is only
counted (wrapped, still called).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.core import memo, model, planner
from reconciler.state import plancache
from tests import builders
from tests.conftest import CliResult, Env, app_spec
from tests.core.test_spec_cache import VARIED


@pytest.fixture
def plans(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times the planner ran (one item per call)."""
    calls: list[int] = []
    real = planner.plan

    def counted(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(planner, "plan", counted)
    return calls


def _run(env: Env, out: Path | None, *args: str) -> tuple[int, str, str, bytes | None]:
    extra = ("--out", str(out)) if out is not None else ()
    res: CliResult = env.cli("plan", *args, *extra)
    return res.code, res.out, res.err, out.read_bytes() if out is not None else None


def _entries(env: Env) -> list[Path]:
    root = env.state_dir / plancache.DIR_NAME
    return sorted(p for p in root.iterdir() if not p.name.startswith("tmp-")) if root.is_dir() else []


def test_a_second_plan_of_the_same_inputs_decides_nothing_and_prints_the_same_bytes(
        env: Env, tmp_path: Path, plans: list[int]) -> None:
    for path, text in VARIED.items():
        env.repo.write(path, text)
    env.repo.commit("a varied tree")
    for fmt in ("json", "text", "markdown"):
        out = tmp_path / f"plan-{fmt}.json"
        first = _run(env, out, "--format", fmt)
        assert first[0] == 1 and "broken.yaml" in first[1] + first[2]  # a spec problem; the others planned
        del plans[:]
        second = _run(env, out, "--format", fmt)
        assert plans == [] and second == first  # stdout, stderr, the saved plan, the exit code
        fresh = _run(env, out, "--format", fmt, "--no-cache")
        assert plans == [1] and fresh == first
    assert len(_entries(env)) == plancache.KEEP  # the newest two of the three formats


def test_the_saved_plan_of_a_reused_answer_applies(env: Env, tmp_path: Path, plans: list[int]) -> None:
    env.repo.write("apps/app.yaml", app_spec("app")).commit("one")
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    assert _run(env, first)[0] == 2 and _run(env, second)[0] == 2 and plans == [1]
    assert env.cli("apply", "--plan", str(second), "--yes").code == 0
    del plans[:]
    assert env.cli("plan").code == 0 and plans == [1]  # applied: live state changed, planned anew
    assert env.cli("apply", "--plan", str(first), "--yes").code == 1  # live state moved: refused as ever


def _pause(env: Env) -> None:
    assert env.cli("pause", "app0").code == 0


def _freeze(env: Env) -> None:
    assert env.cli("freeze", "--reason", "audit").code == 0


def _commit(env: Env) -> None:
    env.repo.write("apps/app1.yaml", app_spec("app1", image="app1-2.0")).commit("app1 2.0")


def _policy(env: Env) -> None:
    env.repo.write("apps/policies.yaml", "defaults:\n  blast_radius: {max_clusters: 1}\n").commit("policy")


def _prune(env: Env) -> None:
    cfg = yaml.safe_load(env.config.read_text())
    env.config.write_text(yaml.safe_dump({**cfg, "prune": True}))


def _live(env: Env) -> None:
    assert env.cli("apply", "--yes").code == 0


@pytest.mark.parametrize("change", [_pause, _freeze, _commit, _policy, _prune, _live],
                         ids=lambda f: f.__name__.strip("_"))
def test_any_changed_input_decides_anew_and_prints_what_a_fresh_plan_prints(
        env: Env, tmp_path: Path, plans: list[int], change: Callable[[Env], None]) -> None:
    for i in range(3):
        env.repo.write(f"apps/app{i}.yaml", app_spec(f"app{i}"))
    env.repo.commit("three")
    out = tmp_path / "plan.json"
    before = _run(env, out, "--format", "json")
    change(env)
    del plans[:]
    after = _run(env, out, "--format", "json")
    assert plans == [1], "a changed input was answered from an earlier run"
    assert after == _run(env, out, "--format", "json", "--no-cache")
    assert after != before or change is _prune  # (nothing live to prune yet: a new decision, the same plan)


def test_other_output_options_are_other_answers(env: Env, tmp_path: Path, plans: list[int]) -> None:
    env.repo.write("apps/app.yaml", app_spec("app")).commit("one")
    runs = [_run(env, None, "--format", "json"), _run(env, tmp_path / "p.json", "--format", "json"),
            _run(env, None, "--format", "markdown", "--max-comment-chars", "2000"),
            _run(env, None, "--format", "markdown", "--max-comment-chars", "65536")]
    assert len(plans) == 4  # none of them answered by another
    assert runs[0][1] == runs[1][1] and runs[2][1] == runs[3][1]  # the same text, each made by its own run


def test_a_changed_or_damaged_entry_is_not_used(env: Env, tmp_path: Path, plans: list[int]) -> None:
    env.repo.write("apps/app.yaml", app_spec("app")).commit("one")
    out = tmp_path / "plan.json"
    first = _run(env, out, "--format", "json")
    [entry] = _entries(env)
    assert os.path.samefile(out, entry / "plan")  # kept as a second name of --out: no copy
    with open(out, "ab") as f:  # the user's file (the same file) changed in place
        f.write(b" ")
    del plans[:]
    assert _run(env, out, "--format", "json") == first and plans == [1]
    [entry] = _entries(env)
    (entry / "stdout").write_bytes(b"{}")  # a damaged copy of stdout
    assert _run(env, out, "--format", "json") == first and plans == [1, 1]
    [entry] = _entries(env)
    (entry / "meta.json").write_text("{not json")
    assert _run(env, out, "--format", "json") == first and plans == [1, 1, 1]


def test_an_unwritable_cache_costs_an_evaluation_never_a_plan(env: Env, tmp_path: Path, plans: list[int]) -> None:
    env.repo.write("apps/app.yaml", app_spec("app")).commit("one")
    env.state_dir.mkdir(parents=True, exist_ok=True)
    (env.state_dir / plancache.DIR_NAME).write_text("not a directory")
    out = tmp_path / "plan.json"
    first = _run(env, out, "--format", "json")
    assert first[0] == 2 and _run(env, out, "--format", "json") == first and plans == [1, 1]


def test_no_cache_neither_reads_nor_keeps(env: Env, plans: list[int]) -> None:
    env.repo.write("apps/app.yaml", app_spec("app")).commit("one")
    assert env.cli("plan", "--no-cache").code == 2 and _entries(env) == []
    assert env.cli("plan").code == 2 and len(_entries(env)) == 1
    assert env.cli("plan", "--no-cache").code == 2 and plans == [1, 1, 1]


def test_other_code_never_reads_an_entry(env: Env, plans: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    env.repo.write("apps/app.yaml", app_spec("app")).commit("one")
    assert env.cli("plan").code == 2
    monkeypatch.setattr(plancache, "code_version", lambda: "another release")
    assert env.cli("plan").code == 2 and plans == [1, 1]


# ---------------------------------------------------------------------------- the digest


@settings(max_examples=60, deadline=None)
@given(builders.applications(), builders.applications())
def test_different_models_never_share_a_digest(a: model.Application, b: model.Application) -> None:
    da, db = memo.digest(memo.Inputs((a,), ())), memo.digest(memo.Inputs((b,), ()))
    assert da is not None and (da == db) == (a == b)


@settings(max_examples=60, deadline=None)
@given(builders.applications(), st.data())
def test_a_changed_live_group_changes_the_digest(app: model.Application, data: st.DataObject) -> None:
    spec = app.clusters[0]
    group = builders.group(spec, spec.regions[0])
    field = data.draw(st.sampled_from(["enabled", "healthy", "instances", "commit", "created_at", "managed"]))
    changed: dict[str, Any] = {
        "enabled": not group.enabled, "healthy": group.healthy + 1, "instances": group.instances + 1,
        "commit": group.commit + "x", "created_at": group.created_at + 0.5, "managed": not group.managed}
    other = dataclasses.replace(group, **{field: changed[field]})
    assert memo.digest(memo.Inputs((app,), ((group,),))) != memo.digest(memo.Inputs((app,), ((other,),)))


_IN_ANOTHER_PROCESS = textwrap.dedent("""
    from reconciler.core import memo
    names = frozenset(f"app-{i}" for i in range(50))
    inputs = memo.Inputs((), (names, {"b": 1, "a": names}, {("x", "y"): 1, ("a", "b"): 2}, {3, 1, 2}))
    print(memo.digest(inputs))
""")


def test_the_digest_is_the_same_in_every_process() -> None:
    """String hashing differs between processes, and with it the order of sets: the digest does not."""
    digests = {subprocess.run([sys.executable, "-c", _IN_ANOTHER_PROCESS], env={**os.environ, "PYTHONHASHSEED": seed},
                              capture_output=True, text=True, check=True).stdout for seed in ("1", "2", "3")}
    assert len(digests) == 1 and len(next(iter(digests)).strip()) == 40


def test_a_value_without_an_encoding_has_no_digest() -> None:
    assert memo.digest(memo.Inputs((), (object(),))) is None
    assert memo.digest(memo.Inputs((), ((1, "a"),))) is not None


def test_the_options_and_config_are_part_of_the_key() -> None:
    base = plancache.key("d" * 40, {"prune": False}, {"format": "json"})
    assert base is not None and len({base, plancache.key("d" * 40, {"prune": True}, {"format": "json"}),
                                     plancache.key("d" * 40, {"prune": False}, {"format": "text"}),
                                     plancache.key("e" * 40, {"prune": False}, {"format": "json"})}) == 4
    assert json.dumps(base)  # a file name


def test_policy_settings_are_named_by_their_layers_not_by_what_they_resolved_so_far() -> None:
    from specs import policy_file

    used, fresh = policy_file.PolicySettings(defaults={"freeze": None}), policy_file.PolicySettings(
        defaults={"freeze": None})
    used.for_cluster("app", "app-main", "normal")  # its memo of resolved layers grows
    assert memo.digest(memo.Inputs((), (used,))) == memo.digest(memo.Inputs((), (fresh,)))
    other = policy_file.PolicySettings(defaults={"freeze": {"reason": "audit"}})
    assert memo.digest(memo.Inputs((), (other,))) != memo.digest(memo.Inputs((), (fresh,)))

"""The Git source: mirrored with pygit2, parse counts cached by blob, bad remotes keep the last good commit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.config import settings as config_mod
from reconciler.core import clock as clock_mod
from reconciler.core import errors
from reconciler.runtime import engine as engine_mod
from reconciler.source import git as gitsource
from tests.conftest import Env, app_spec, write_config


def _engine(env: Env) -> engine_mod.Engine:
    return engine_mod.Engine(config_mod.load_config(env.config), clock=clock_mod.FakeClock())


def test_an_unchanged_commit_parses_nothing_and_one_changed_file_parses_one(env: Env) -> None:
    for name in ("checkout", "cart", "search"):
        env.repo.write(f"apps/{name}.yaml", app_spec(name))
    env.repo.commit("three apps")
    eng = _engine(env)
    try:
        eng.reconcile()
        assert eng.desired.cache.parses == 3
        eng.reconcile()
        assert eng.desired.cache.parses == 3, "a pass on the same commit parses nothing"
        assert eng.desired.git.fetches == 2
        env.repo.write("apps/cart.yaml", app_spec("cart", image="cart-2")).commit("bump cart")
        eng.reconcile()
        assert eng.desired.cache.parses == 4, "one changed file is parsed once"
        env.repo.write("apps/values.yaml", "x: 1\n").commit("values change everything")
        eng.reconcile()
        assert eng.desired.cache.parses == 7
    finally:
        eng.close()


def test_specs_are_read_from_the_object_database_without_a_checkout(env: Env, tmp_path: Path) -> None:
    env.repo.write("apps/checkout.yaml", app_spec()).commit("one")
    src = gitsource.GitSource(str(env.repo.path), "main", mirror_root=tmp_path / "state")
    res = src.fetch()
    assert res.head == env.repo.head() and not res.force_pushed
    files, refusals = src.tree_files(res.head, "apps")
    assert [f.path for f in files] == ["apps/checkout.yaml"] and refusals == []
    assert not any(p.name == "apps" for p in src.mirror_path.iterdir()), "bare mirror, no work tree"


def test_a_missing_branch_and_an_unreachable_remote_are_clear_errors(tmp_path: Path) -> None:
    src = gitsource.GitSource(str(tmp_path / "nowhere"), "main", mirror_root=tmp_path / "state")
    with pytest.raises(errors.SourceError, match="does not exist"):
        src.fetch()
    src = gitsource.GitSource("https://127.0.0.1:9/none.git", "main", mirror_root=tmp_path / "state")
    with pytest.raises(errors.SourceError, match=r"cannot fetch https://127\.0\.0\.1:9/none\.git"):
        src.fetch()


def test_the_last_good_commit_stays_in_force_when_the_remote_breaks(env: Env, tmp_path: Path) -> None:
    env.repo.write("apps/checkout.yaml", app_spec()).commit("v1")
    assert env.cli("run", "--once").code == 0
    good = env.repo.head()
    moved = tmp_path / "moved"
    env.repo.path.rename(moved)
    res = env.cli("status", "--format", "json")
    status = json.loads(res.out)
    assert status["commit"] == good and "does not exist" in status["source_error"]
    moved.rename(env.repo.path)
    write_config(env.config, env.repo.path, env.state_dir, repo={"url": str(env.repo.path), "branch": "nope"})
    eng = _engine(env)
    try:
        commit, err = eng.desired.fetch()
        assert commit == good and err is not None and "branch 'nope' not found" in err and "main" in err
    finally:
        eng.close()


def test_a_force_push_keeps_the_last_good_commit_unless_allowed(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec()).commit("v1")
    first = env.repo.head()
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2")).commit("v2")
    eng = _engine(env)
    try:
        eng.reconcile()
        good = env.repo.head()
        env.repo.reset_hard(first)
        env.repo.write("apps/checkout.yaml", app_spec(image="checkout-3")).commit("rewritten")
        commit, err = eng.desired.fetch()
        assert commit == good and err is not None and "force-pushed" in err
    finally:
        eng.close()
    write_config(env.config, env.repo.path, env.state_dir,
                 repo={"url": str(env.repo.path), "branch": "main", "path": "apps", "allow_force_push": True})
    eng = _engine(env)
    try:
        commit, err = eng.desired.fetch()
        assert commit == env.repo.head() and err is None
    finally:
        eng.close()


def test_symlinks_in_the_spec_tree_are_refused(env: Env) -> None:
    env.repo.write("apps/checkout.yaml", app_spec())
    (env.repo.path / "apps" / "evil.yaml").symlink_to("/etc/passwd")
    env.repo.commit("symlink")
    res = env.cli("plan")
    assert res.code == 1
    assert "apps/evil.yaml" in res.out + res.err and "symbolic link" in res.out + res.err


def test_the_mirror_resolves_head_to_the_tracked_branch_and_refuses_unknown_refs(env: Env, tmp_path: Path) -> None:
    env.repo.write("apps/checkout.yaml", app_spec()).commit("one")
    first = env.repo.head()
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2")).commit("two")
    src = gitsource.GitSource(str(env.repo.path), "main", mirror_root=tmp_path / "state")
    src.fetch()
    assert src.resolve("HEAD") == src.resolve("main") == src.resolve("origin/main") == env.repo.head()
    assert src.resolve("main~1") == src.resolve(first[:10]) == first
    with pytest.raises(errors.SourceError, match="cannot resolve 'nope' to a commit"):
        src.resolve("nope")

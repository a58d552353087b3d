"""The core promise through the CLI: no typo, rename, stalled wave or PR preview takes a service down.

Each test reproduces a week-one mistake on the local provider with ``prune: true`` and asserts on
live state (status JSON), not on messages only. docs/safety.md lists which test checks which rule.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pygit2
import pytest

from reconciler import planfile
from tests import othercloud
from tests.conftest import Env, app_spec, run_cli, write_config

ONE = ("us-east-1",)
THREE = ("us-east-1", "eu-west-1", "ap-south-1")
WAVES = "rollout: {waves: [[us-east-1], [eu-west-1, ap-south-1]]}\n"


def blog(*, image: str = "blog-1", stack: str = "", regions: tuple[str, ...] = ONE, provider: str = "local",
         account: str = "default", extra: str = "") -> str:
    return app_spec("blog", image=image, stack=stack, regions=regions, provider=provider, account=account,
                    extra=extra, timeout="300ms")


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def serving(env: Env, region: str | None = None) -> list[str]:
    """Server groups that take traffic with healthy instances, as status JSON shows them."""
    return sorted(g["server_group"] for g in env.groups(region) if g["enabled"] and g["healthy"] > 0)


def images(env: Env, region: str) -> set[str]:
    return {g["image"] for g in env.groups(region) if g["application"] == "blog"}


def pruning(env: Env, **overrides: Any) -> None:
    write_config(env.config, env.repo.path, env.state_dir, prune=True, **overrides)


# ---------------------------------------------------------------------------- 1. names that do not exist


def test_a_typo_in_the_provider_is_a_spec_problem_and_nothing_is_destroyed(env: Env) -> None:
    pruning(env)
    env.repo.write("apps/blog.yaml", blog()).write("apps/shop.yaml", app_spec("shop", regions=ONE)).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    typo = blog(provider="nosuchcloud")
    env.repo.write("apps/blog.yaml", typo).commit("typo")
    expected = (f"apps/blog.yaml:{line_of(typo, 'provider:')}: clusters[0].provider: unknown provider "
                "'nosuchcloud' (installed: aws, azure, cloudfoundry, gcp, local)")

    val = env.cli("validate", str(env.repo.path))
    assert val.code == 1 and expected in val.out
    plan = env.cli("plan", "--format", "json")
    assert plan.code == 1 and expected in plan.err, "problems reach stderr as file:line: field: message"
    assert json.loads(plan.out)["changes"] == []
    env.cli("apply", "--yes")
    assert serving(env) == ["blog-v000", "shop-main-v000"], "the application is held whole"


def test_an_unconfigured_account_is_a_problem_with_the_config_and_holds_the_application(env: Env) -> None:
    pruning(env)
    env.repo.write("apps/blog.yaml", blog()).write("apps/shop.yaml", app_spec("shop", regions=ONE)).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    typo = blog(account="defualt", image="blog-2")
    env.repo.write("apps/blog.yaml", typo).commit("typo")

    assert run_cli("validate", str(env.repo.path)).code == 0, "without a config only providers are known"
    val = env.cli("validate", str(env.repo.path))
    assert val.code == 1
    assert (f"apps/blog.yaml:{line_of(typo, 'account:')}: clusters[0].account: account 'defualt' is not "
            "configured for provider local (configured: default;") in val.out
    env.cli("apply", "--yes")
    assert serving(env) == ["blog-v000", "shop-main-v000"] and images(env, "us-east-1") == {"blog-1"}


def test_a_region_the_account_does_not_allow_holds_every_region_of_the_application(env: Env) -> None:
    pruning(env, providers={"local": {"accounts": {"default": {"regions": ["us-east-1"]}}}})
    env.repo.write("apps/blog.yaml", blog()).write("apps/shop.yaml", app_spec("shop", regions=ONE)).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    env.repo.write("apps/blog.yaml", blog(image="blog-2", regions=("us-east-1", "eu-west-1"))).commit("grow")

    res = env.cli("apply", "--yes")
    assert ("clusters[0].regions[1]: region 'eu-west-1' is not allowed by account local/default "
            "(allowed: us-east-1;") in res.out
    assert images(env, "us-east-1") == {"blog-1"} and serving(env) == ["blog-v000", "shop-main-v000"]


# ---------------------------------------------------------------------------- 2. renames and moves


def test_a_renamed_cluster_that_never_becomes_healthy_leaves_the_old_one_serving(env: Env) -> None:
    pruning(env)
    env.repo.write("apps/blog.yaml", blog()).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    env.repo.write("apps/blog.yaml", blog(stack="web", image="blog-2-bad")).commit("rename, bad image")

    doc = json.loads(env.cli("plan", "--format", "json").out)
    destroy = next(c for c in doc["changes"] if c["action"] == "destroy")
    assert destroy["cluster"] == "blog" and destroy["removal"] == "moved"
    assert destroy["after"] == destroy["waiting"] == ["local/default/us-east-1/blog-web"]
    text = env.cli("plan").out
    assert "after: blog-web (local/default) serve(s) in us-east-1; not yet: blog-web" in text

    res = env.cli("apply", "--yes")
    assert res.code == 1
    assert "no group of blog-web serves in us-east-1; blog is served by blog-v000" in res.err
    assert "previous group keeps serving" not in res.out + res.err
    assert "not started: blog-web does not serve in us-east-1 yet" in res.err
    assert serving(env) == ["blog-v000"], "the old cluster keeps serving"

    env.repo.write("apps/blog.yaml", blog(stack="web", image="blog-2")).commit("fix forward")
    res = env.cli("apply", "--yes")
    assert res.code == 0, res.out + res.err
    assert [g["server_group"] for g in env.groups()] == ["blog-web-v000"], "destroyed once the new one serves"


def test_a_move_to_another_account_destroys_the_old_cluster_after_the_new_one_serves(env: Env) -> None:
    pruning(env, providers={"local": {"accounts": {"default": {}, "second": {}}}})
    env.repo.write("apps/blog.yaml", blog()).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    env.repo.write("apps/blog.yaml", blog(account="second")).commit("move")

    res = env.cli("apply", "--yes")
    assert res.code == 0, res.out + res.err
    assert [(g["account"], g["server_group"]) for g in env.groups()] == [("second", "blog-v000")]
    history = json.loads(env.cli("history", "--format", "json").out)["events"]
    done = [(e["kind"], e["message"]) for e in reversed(history) if e["kind"] == "execution_succeeded"]
    assert [m.split(":")[0] for _, m in done[-2:]] == ["create done", "destroy done"], "created first"


def test_a_move_to_another_provider_that_fails_keeps_the_old_provider_serving(env: Env, tmp_path: Path) -> None:
    pruning(env, providers={"local": {"accounts": {"default": {}}},
                            othercloud.NAME: {"accounts": {"other": {"unhealthy_images": ["*-bad"]}}}})
    with othercloud.registered(tmp_path / "plugins"):
        env.repo.write("apps/blog.yaml", blog()).commit("v1")
        assert env.cli("apply", "--yes").code == 0
        env.repo.write("apps/blog.yaml", blog(provider=othercloud.NAME, account="other", image="blog-2-bad"))
        env.repo.commit("move to another cloud, bad image")
        assert env.cli("apply", "--yes").code == 1
        assert [(g["provider"], g["server_group"]) for g in env.groups() if g["enabled"]] == [("local", "blog-v000")]

        env.repo.write("apps/blog.yaml", blog(provider=othercloud.NAME, account="other", image="blog-2"))
        env.repo.commit("fix forward")
        assert env.cli("apply", "--yes").code == 0
        assert [(g["provider"], g["server_group"]) for g in env.groups()] == [(othercloud.NAME, "blog-v000")]


def test_dropping_a_region_of_a_present_application_needs_an_approval(env: Env) -> None:
    pruning(env)
    env.repo.write("apps/blog.yaml", blog(regions=("us-east-1", "eu-west-1"))).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    env.repo.write("apps/blog.yaml", blog(regions=ONE)).commit("drop eu-west-1")

    doc = json.loads(env.cli("plan", "--format", "json").out)
    (destroy,) = doc["changes"]
    assert destroy["verdict"] == "approve" and destroy["removal"] == "region_removed" and destroy["last_capacity"]
    assert "LAST SERVING CAPACITY" in destroy["reason"]
    assert env.cli("apply", "--yes").code == 1
    assert serving(env, "eu-west-1") == ["blog-v000"], "held for approval"

    assert env.cli("approve", destroy["change_id"]).code == 0
    assert env.cli("apply", "--yes").code == 0
    assert env.groups("eu-west-1") == []


def test_removing_the_file_destroys_the_last_capacity_and_the_plan_says_so(env: Env) -> None:
    pruning(env)
    env.repo.write("apps/blog.yaml", blog()).write("apps/shop.yaml", app_spec("shop", regions=ONE)).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    env.repo.remove("apps/blog.yaml").commit("retire blog")

    text = env.cli("plan").out
    assert "!! 1 change destroys an application's LAST serving capacity in a region: blog in us-east-1" in text
    assert "LAST SERVING CAPACITY: application blog was removed from Git (apps/blog.yaml deleted)" in text
    markdown = env.cli("plan", "--format", "markdown").out
    assert "🛑 **1 change destroys an application's LAST serving capacity in a region**: blog in us-east-1" \
        in markdown
    assert env.cli("apply", "--yes").code == 0
    assert serving(env) == ["shop-main-v000"]


# ---------------------------------------------------------------------------- 3. waves remembered


def test_a_stalled_first_wave_holds_the_later_waves_on_every_pass(env: Env) -> None:
    write_config(env.config, env.repo.path, env.state_dir, execution={
        "poll_health": "20ms", "retry_backoff": "0s", "step_backoff": "10ms", "max_attempts": 2})
    env.repo.write("apps/blog.yaml", blog(regions=THREE, extra=WAVES)).commit("v1")
    assert env.cli("run", "--once").code == 0
    assert len(serving(env)) == 3
    env.repo.write("apps/blog.yaml", blog(regions=THREE, extra=WAVES, image="blog-2-bad")).commit("bad")

    for _ in range(3):  # failure 1, failure 2 (stalled), then stalled
        assert env.cli("run", "--once").code == 0
        for region in ("eu-west-1", "ap-south-1"):
            assert images(env, region) == {"blog-1"}, "a later wave never receives the failing spec"
    status = env.status()
    held = {h["key"]: h for h in status["held"]}
    for region in ("eu-west-1", "ap-south-1"):
        entry = held[f"local/default/{region}/blog"]
        assert entry["kind"] == "wave" and entry["waiting"] == ["local/default/us-east-1/blog"]
        assert "waiting for wave 1 to succeed" in entry["why"] and "us-east-1: stalled" in entry["why"]

    env.repo.write("apps/blog.yaml", blog(regions=THREE, extra=WAVES, image="blog-3")).commit("fix forward")
    assert env.cli("run", "--once").code == 0
    assert all(images(env, r) >= {"blog-3"} for r in THREE) and len(serving(env)) == 3


def test_an_approval_for_a_later_wave_alone_does_not_skip_the_first(env: Env) -> None:
    env.repo.write("apps/policies.yaml", "applications: {blog: {require_approval: always}}\n")
    env.repo.write("apps/blog.yaml", blog(regions=("us-east-1", "eu-west-1"))).commit("v1")
    for change in json.loads(env.cli("plan", "--format", "json").out)["changes"]:
        assert env.cli("approve", change["change_id"]).code == 0
    assert env.cli("apply", "--yes").code == 0
    env.repo.write("apps/blog.yaml", blog(regions=("us-east-1", "eu-west-1"), image="blog-2")).commit("v2")

    doc = json.loads(env.cli("plan", "--format", "json").out)
    second = next(c for c in doc["changes"] if c["region"] == "eu-west-1")
    assert env.cli("approve", second["change_id"]).code == 0
    assert env.cli("apply", "--yes").code == 1
    assert images(env, "eu-west-1") == {"blog-1"}, "wave 2 waits for wave 1, approved or not"
    held = {h["key"]: h for h in env.status()["held"]}
    assert held["local/default/eu-west-1/blog"]["kind"] == "wave"
    assert "us-east-1: waiting for approval" in held["local/default/eu-west-1/blog"]["why"]


# ---------------------------------------------------------------------------- 4. backoff belongs to one spec


def test_a_fix_forward_commit_runs_on_the_next_pass_despite_the_backoff(env: Env) -> None:
    write_config(env.config, env.repo.path, env.state_dir, execution={
        "poll_health": "20ms", "retry_backoff": "1h", "step_backoff": "10ms"})
    env.repo.write("apps/blog.yaml", blog()).commit("v1")
    assert env.cli("run", "--once").code == 0
    env.repo.write("apps/blog.yaml", blog(image="blog-2-bad")).commit("bad")
    assert env.cli("run", "--once").code == 0
    assert "retrying after failure 1/3" in env.cli("plan").out, "the failing spec itself backs off"

    env.repo.write("apps/blog.yaml", blog(image="blog-3")).commit("fix forward")
    assert env.cli("run", "--once").code == 0
    (group,) = [g for g in env.groups() if g["enabled"]]
    assert group["image"] == "blog-3" and group["healthy"] == 2


# ---------------------------------------------------------------------------- 5. refs as git resolves them


def _commit(repo: pygit2.Repository, branch: str, rel: str, text: str, message: str) -> str:
    path = Path(repo.workdir) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    repo.index.add_all()
    repo.index.write()
    sig = pygit2.Signature("Dev", "dev@example.com", 1_700_000_100, 0)
    ref = f"refs/heads/{branch}"
    parent = repo.references[ref].target if ref in repo.references else repo.head.target
    return str(repo.create_commit(ref, sig, sig, message, repo.index.write_tree(), [parent]))


def test_the_documented_pr_preview_works_in_a_real_clone(env: Env, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    env.repo.write("apps/blog.yaml", blog()).commit("v1")
    upstream = str(pygit2.clone_repository(str(env.repo.path), str(tmp_path / "remote.git"), bare=True).path)
    work = pygit2.clone_repository(upstream, str(tmp_path / "work"))
    assert "refs/remotes/origin/HEAD" in work.references, "the trap: a clone has origin/HEAD"
    origin_main = str(work.references["refs/remotes/origin/main"].target)
    local_main = _commit(work, "main", "apps/blog.yaml", blog(image="blog-2"), "unpushed")
    work.branches.local.create("feature", work[local_main].peel(pygit2.Commit))
    work.checkout("refs/heads/feature")
    head = _commit(work, "feature", "apps/blog.yaml", blog(image="blog-3"), "the pull request")
    monkeypatch.chdir(work.workdir)
    monkeypatch.setenv("RECONCILER_STATE_DIR", str(tmp_path / "ci-state"))
    monkeypatch.delenv("RECONCILER_CONFIG", raising=False)

    res = run_cli("plan", "--repo", ".", "--base", "origin/main", "--ref", "HEAD", "--format", "json")
    assert res.code == 2, res.err
    doc = json.loads(res.out)
    assert (doc["base_commit"], doc["commit"]) == (origin_main, head)
    (change,) = doc["changes"]
    assert change["current"]["image"] == "blog-1" and change["desired"]["image"] == "blog-3"
    assert json.loads(run_cli("plan", "--base", "main", "--ref", "HEAD", "--format", "json").out)[
        "base_commit"] == local_main, "a bare name is the local branch"
    assert run_cli("plan", "--repo", ".", "--base", "HEAD", "--ref", "HEAD").code == 0
    missing = run_cli("plan", "--repo", ".", "--base", "origin/nope", "--ref", "HEAD")
    assert missing.code == 1 and "cannot resolve 'origin/nope'" in missing.err


# ---------------------------------------------------------------------------- 6-9


def test_plan_out_always_writes_the_saved_plan_whatever_the_format(env: Env, tmp_path: Path) -> None:
    env.repo.write("apps/blog.yaml", blog()).commit("v1")
    saved = tmp_path / "plan.bin"
    res = env.cli("plan", "--out", str(saved))
    assert res.code == 2 and "create blog" in res.out, "text still goes to stdout"
    planfile.load_plan(saved.read_text(encoding="utf-8"), file=str(saved))
    md = env.cli("plan", "--format", "markdown", "--out", str(saved))
    assert md.out.startswith("<!-- reconciler-plan -->")
    assert env.cli("apply", "--plan", str(saved), "--yes").code == 0
    assert serving(env) == ["blog-v000"]


def test_validate_checks_policies_and_the_config(env: Env, tmp_path: Path) -> None:
    env.repo.write("apps/blog.yaml", blog()).write("apps/policies.yaml", "defaults: {mass_deletion: 0.5}\n")
    res = env.cli("validate", str(env.repo.path))
    assert res.code == 1 and res.out.startswith("apps/policies.yaml:1: defaults.mass_deletion:")
    env.repo.write("apps/policies.yaml", "defaults: {mass_deletion: {max_share: 0.5}}\n")
    assert env.cli("validate", str(env.repo.path)).code == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("prune: sometimes\n", encoding="utf-8")
    res = run_cli("validate", str(env.repo.path), "--config", str(bad))
    assert res.code == 1 and "prune: expected true or false" in res.out


def test_spec_suffixes_ignore_case_and_other_files_hold_pruning(env: Env) -> None:
    pruning(env)
    env.repo.write("apps/blog.YAML", blog()).write("apps/shop.yml", app_spec("shop", regions=ONE)).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    assert serving(env) == ["blog-v000", "shop-main-v000"]
    (env.repo.path / "apps" / "blog.YAML").rename(env.repo.path / "apps" / "blog.yaml.bak")
    env.repo.commit("oops: a backup name")

    val = env.cli("validate", str(env.repo.path))
    assert val.code == 0 and "notice: apps/blog.yaml.bak:1: (file): not read: only .yaml and .yml files are " \
        "specs; pruning is held for blog while it is here" in val.err
    plan = env.cli("plan", "--format", "json")
    doc = json.loads(plan.out)
    assert doc["changes"] == [] and doc["notices"][0]["file"] == "apps/blog.yaml.bak"
    assert [s["kind"] for s in doc["skipped"]] == ["unread_file"]
    assert "notice: apps/blog.yaml.bak:1:" in plan.err
    assert env.cli("run", "--once").code == 0
    status = env.status()
    assert serving(env) == ["blog-v000", "shop-main-v000"], "nothing destroyed"
    assert status["notices"] and status["applications"]["blog"]["conditions"][0]["reason"] == "SpecNotRead"


def test_a_saved_plan_survives_the_autoscaler_moving_desired_capacity(env: Env, tmp_path: Path) -> None:
    from providers.local import LocalProvider
    from reconciler.config import settings as config_mod
    from reconciler.core import model
    from tests.conftest import provider_context

    env.repo.write("apps/blog.yaml", blog(extra="autoscaling: true\n")).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    env.repo.write("apps/blog.yaml", blog(image="blog-2", extra="autoscaling: true\n")).commit("v2")
    saved = tmp_path / "plan.json"
    assert env.cli("plan", "--out", str(saved)).code == 2
    cfg = config_mod.load_config(env.config)
    LocalProvider("default", provider_context(cfg.state_url, cfg.state_dir)).tamper(
        "us-east-1", "blog-v000", capacity=model.Capacity(1, 5, 6))

    res = env.cli("apply", "--plan", str(saved), "--yes")
    assert res.code == 0, res.out + res.err
    (group,) = [g for g in env.groups() if g["enabled"]]
    assert group["server_group"] == "blog-v001" and group["capacity"]["desired"] == 5, "started at the live size"


def test_plan_json_sends_spec_problems_to_stderr_with_file_and_line(env: Env) -> None:
    broken = blog().replace("min: 1", "min: 9")
    env.repo.write("apps/blog.yaml", broken).commit("broken")
    line = line_of(broken, "capacity:")
    res = env.cli("plan", "--format", "json")
    assert res.code == 1
    assert f"apps/blog.yaml:{line}: clusters[0].capacity: needs min <= desired <= max" in res.err
    assert json.loads(res.out)["problems"][0]["line"] == line

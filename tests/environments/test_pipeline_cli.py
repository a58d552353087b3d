"""The pipeline through the CLI: `status APP`, `approve APP --env ENV --version V`, the Markdown plan's path."""

from __future__ import annotations

import json

from tests.conftest import Env
from tests.environments.test_promotion_flow import pipeline_spec


def commit(env: Env, version: str, **spec: str) -> None:
    env.repo.write("apps/values.yaml", f'checkout:\n  version: "{version}"\n')
    env.repo.write("apps/checkout.yaml", pipeline_spec(soak="0s", **spec))
    env.repo.commit(f"checkout {version}")


def test_status_shows_the_pipeline_and_approve_lets_the_version_into_prod(env: Env) -> None:
    commit(env, "1.0")
    for _ in range(3):
        env.cli("apply", "--yes")

    out = env.cli("status", "checkout")
    assert out.code == 0, out.err
    assert "pipeline of checkout (version 1.0):" in out.out
    assert "test         1.0              deployed" in out.out
    assert "held by env_approval: waiting for approval of version 1.0 for prod" in out.out
    assert "next: reconciler approve checkout --env prod --version 1.0" in out.out

    doc = json.loads(env.cli("status", "checkout", "--format", "json").out)
    assert list(doc["applications"]) == ["checkout"]
    prod = doc["pipelines"]["checkout"]["environments"][2]
    assert prod["hold"]["kind"] == "env_approval" and prod["state"] == "waiting"

    res = env.cli("approve", "checkout", "--env", "prod", "--version", "1.0", "--comment", "release 12")
    assert res.code == 0, res.err
    assert "checkout/prod/1.0 approved by" in res.out
    assert env.cli("apply", "--yes").code == 0
    assert {g["image"] for g in env.groups() if g["cluster"] == "checkout-prod"} == {"checkout-1.0"}
    assert "prod         1.0              deployed" in env.cli("status", "checkout").out


def test_decisions_on_environments_refuse_half_an_address(env: Env) -> None:
    commit(env, "1.0")
    env.cli("apply", "--yes")
    res = env.cli("approve", "checkout", "--env", "prod")
    assert res.code == 1 and "needs --version VERSION too" in res.err
    res = env.cli("reject", "checkout", "--env", "test", "--version", "1.0")
    assert res.code == 1 and "environment test does not ask for approvals" in res.err
    res = env.cli("status", "chekout")
    assert res.code == 1 and "no application named 'chekout' in the status; did you mean checkout?" in res.err


def test_the_markdown_plan_shows_the_path_of_the_change(env: Env) -> None:
    commit(env, "1.0")
    env.repo.write("apps/values.yaml", 'checkout:\n  version: "1.1"\n')
    env.repo.commit("checkout 1.1")

    res = env.cli("plan", "--base", "HEAD~1", "--ref", "HEAD", "--format", "markdown")

    assert res.code == 2, res.err
    assert "**Delivery path of `checkout`**:" in res.out
    assert "1. `test` runs `1.1` at once" in res.out
    assert "2. `staging` runs `1.1` after `test` run it healthy" in res.out
    assert ("3. `prod` runs `1.1` after `staging` run it healthy, once approved within 2h "
            "(`reconciler approve checkout --env prod --version 1.1`)") in res.out


def test_apply_env_runs_only_that_environment(env: Env) -> None:
    commit(env, "1.0", approval="")
    assert env.cli("apply", "--yes", "--env", "test").code == 0
    assert {g["cluster"] for g in env.groups()} == {"checkout-test"}
    res = env.cli("apply", "--yes", "--env", "prod")
    assert res.code == 1  # held: staging does not run 1.0 yet
    assert "waiting for staging to run version 1.0 healthy" in res.out
    assert {g["cluster"] for g in env.groups()} == {"checkout-test"}
    assert env.cli("apply", "--yes", "--env", "staging").code == 0
    assert env.cli("apply", "--yes", "--env", "prod").code == 0
    assert {g["cluster"] for g in env.groups()} == {"checkout-test", "checkout-staging", "checkout-prod"}
    res = env.cli("apply", "--yes", "--env", "prdo")
    assert res.code == 1 and "--env: no environment named 'prdo' in the desired state (environments: prod, " \
        "staging, test)" in res.err

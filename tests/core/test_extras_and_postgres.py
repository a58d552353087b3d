"""A cloud whose extra is not installed fails clearly for its clusters only; the store runs on PostgreSQL."""

from __future__ import annotations

import sys

import pytest

from providers import base
from reconciler.core import errors
from tests.conftest import Env, app_spec, write_config


@pytest.mark.parametrize(("provider", "sdk"), [("aws", "boto3"), ("gcp", "google.cloud.compute_v1")])
def test_a_missing_extra_names_the_pip_extra(provider: str, sdk: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, sdk, None)  # as if the package were not installed
    parent, _, leaf = sdk.rpartition(".")
    if parent in sys.modules:  # `from google.cloud import compute_v1` reads the parent's attribute first
        monkeypatch.delattr(sys.modules[parent], leaf, raising=False)
    for name in [m for m in sys.modules if m == f"providers.{provider}" or m.startswith(f"providers.{provider}.")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(errors.ProviderMissing, match=rf"pip install 'reconciler\[{provider}\]'"):
        base.load_provider_class(provider)


def test_without_the_extra_other_applications_still_deploy(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)
    monkeypatch.delitem(sys.modules, "providers.aws", raising=False)
    write_config(env.config, env.repo.path, env.state_dir, providers={"aws": {"accounts": {"prod": {}}}})
    env.repo.write("apps/checkout.yaml", app_spec(regions=("us-east-1",)))
    env.repo.write("apps/cart.yaml", app_spec("cart", regions=("us-east-1",), provider="aws", account="prod"))
    env.repo.commit("mixed")
    res = env.cli("apply", "--yes")
    assert "pip install 'reconciler[aws]'" in res.out
    assert [g["server_group"] for g in env.groups()] == ["checkout-main-v000"]


def test_an_unknown_provider_lists_the_installed_ones() -> None:
    with pytest.raises(errors.ProviderMissing, match="installed: aws, azure, cloudfoundry, gcp, local"):
        base.load_provider_class("openstack")


def test_the_whole_apply_runs_on_postgresql(env: Env, postgres_url: str) -> None:
    write_config(env.config, env.repo.path, env.state_dir, state=postgres_url)
    env.repo.write("apps/checkout.yaml", app_spec(regions=("us-east-1",))).commit("v1")
    assert env.cli("apply", "--yes").code == 0
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=("us-east-1",))).commit("v2")
    assert env.cli("apply", "--yes").code == 0
    serving = [g["server_group"] for g in env.groups() if g["enabled"]]
    assert serving == ["checkout-main-v001"]
    assert not (env.state_dir / "state.db").exists(), "nothing went to SQLite"

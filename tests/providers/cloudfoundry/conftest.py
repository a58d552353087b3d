"""The Cloud Controller double on 127.0.0.1 and CloudFoundryProviders loaded only through the entry point."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from providers import base
from providers.base import ProviderContext
from reconciler.core import clock as clock_mod
from tests.conftest import provider_context
from tests.providers.cloudfoundry.fake_cc import CloudControllerDouble

SPACE = "production"

MakeCf = Callable[..., Any]


@pytest.fixture
def cc() -> Iterator[CloudControllerDouble]:
    fake = CloudControllerDouble().start()
    yield fake
    fake.stop()


@pytest.fixture
def creds(tmp_path: Path) -> Path:
    path = tmp_path / "cf-credentials.yaml"
    path.write_text("username: deployer\npassword: s3cret\n", encoding="utf-8")
    return path


def account(cc: CloudControllerDouble, creds: Path, **overrides: Any) -> dict[str, Any]:
    return {"api_url": cc.base, "org": "payments", "space": SPACE, "credentials_file": str(creds), "rate_limit": 0,
            **overrides}


@pytest.fixture
def ctx(tmp_path: Path) -> ProviderContext:
    return provider_context(f"sqlite:///{tmp_path / 's.db'}", tmp_path, clock_mod.FakeClock())


@pytest.fixture
def make_cf(cc: CloudControllerDouble, creds: Path, ctx: ProviderContext) -> Iterator[MakeCf]:
    """Providers made as the engine makes them: the class comes from the ``cloudfoundry`` entry point."""
    made: list[Any] = []

    def make(**overrides: Any) -> Any:
        provider = base.make_provider("cloudfoundry", "test", account(cc, creds, **overrides), ctx)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()


@pytest.fixture
def cf(make_cf: MakeCf) -> Any:
    return make_cf()

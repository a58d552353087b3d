"""The Compute double on 127.0.0.1 and GcpProviders built with the real client pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from providers.base import ProviderContext
from providers.gcp import GcpProvider
from reconciler.core import clock as clock_mod
from tests.conftest import provider_context
from tests.providers.gcp.fake_compute import ComputeDouble

REGIONS = ("europe-west1", "us-central1")

MakeGcp = Callable[..., GcpProvider]


@pytest.fixture
def compute() -> Iterator[ComputeDouble]:
    fake = ComputeDouble().start()
    yield fake
    fake.stop()


@pytest.fixture
def ctx(tmp_path: Path) -> ProviderContext:
    return provider_context(f"sqlite:///{tmp_path / 's.db'}", tmp_path, clock_mod.FakeClock())


@pytest.fixture
def make_gcp(compute: ComputeDouble, ctx: ProviderContext) -> Iterator[MakeGcp]:
    """Providers for account "test" against the double; keyword arguments override config keys."""
    made: list[GcpProvider] = []

    def make(**overrides: Any) -> GcpProvider:
        config = {"project": "test-project", "endpoint": compute.base, "regions": list(REGIONS), "rate_limit": 0,
                  **overrides}
        provider = GcpProvider.from_config("test", config, ctx)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()


@pytest.fixture
def gcp(make_gcp: MakeGcp) -> GcpProvider:
    return make_gcp()

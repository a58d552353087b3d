"""The Compute double on 127.0.0.1 and a GcpProvider built with the real client pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from providers.base import ProviderContext
from providers.gcp import GcpProvider
from reconciler import clock as clock_mod
from tests.providers.gcp.fake_compute import ComputeDouble

REGIONS = ("europe-west1", "us-central1")


@pytest.fixture
def compute() -> Iterator[ComputeDouble]:
    fake = ComputeDouble().start()
    yield fake
    fake.stop()


@pytest.fixture
def gcp(compute: ComputeDouble, tmp_path: Path) -> Iterator[GcpProvider]:
    ctx = ProviderContext(state_url=f"sqlite:///{tmp_path / 's.db'}", state_dir=tmp_path, clock=clock_mod.FakeClock())
    provider = GcpProvider.from_config("test", {"project": "test-project", "endpoint": compute.base,
                                                "regions": list(REGIONS), "rate_limit": 0}, ctx)
    yield provider
    provider.close()

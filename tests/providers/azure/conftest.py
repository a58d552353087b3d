"""The ARM double on 127.0.0.1 (TLS) and AzureProviders built with the real SDK and a real managed identity."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from providers.azure import AzureProvider
from providers.base import ProviderContext
from reconciler.core import clock as clock_mod
from tests.conftest import provider_context
from tests.providers.azure.fake_arm import IDENTITY_HEADER, ArmDouble

REGIONS = ("westeurope", "northeurope")
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ1aWxkIHRlc3Qga2V5IGZvciByZWNvbmNpbGVy ops@example.com"

MakeAzure = Callable[..., AzureProvider]


@pytest.fixture
def arm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ArmDouble]:
    """The double, and the environment a managed identity sees on App Service (its token endpoint)."""
    fake = ArmDouble(tmp_path).start()
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{fake.base}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER)
    for var in ("MSI_ENDPOINT", "MSI_SECRET", "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT",
                "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    yield fake
    fake.stop()


def account(arm: ArmDouble, **overrides: Any) -> dict[str, Any]:
    """An account config pointing at the double (what a user writes, plus endpoint and CA for the test)."""
    return {"subscription": arm.subscription, "resource_group": arm.group, "subnet": "apps-vnet/apps",
            "ssh_public_key": SSH_KEY, "regions": list(REGIONS), "endpoint": arm.base, "ca_bundle": str(arm.ca_file),
            "rate_limit": 0, **overrides}


@pytest.fixture
def ctx(tmp_path: Path) -> ProviderContext:
    return provider_context(f"sqlite:///{tmp_path / 's.db'}", tmp_path, clock_mod.FakeClock())


@pytest.fixture
def make_azure(arm: ArmDouble, ctx: ProviderContext) -> Iterator[MakeAzure]:
    made: list[AzureProvider] = []

    def make(**overrides: Any) -> AzureProvider:
        provider = AzureProvider.from_config("test", account(arm, **overrides), ctx)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()


@pytest.fixture
def azure(make_azure: MakeAzure) -> AzureProvider:
    return make_azure()

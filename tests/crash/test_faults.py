"""Injected provider faults (throttling, unavailability): passes converge, nothing is duplicated."""

from __future__ import annotations

from reconciler.runtime import metrics
from tests.conftest import Env, app_spec, write_config


def test_passes_converge_under_injected_faults_without_duplicates(env: Env) -> None:
    faults = {"rate": 0.3, "seed": 7, "calls": ["create", "enable", "disable", "resize", "destroy", "health"],
              "kinds": ["throttled", "unavailable", "timeout"]}
    write_config(env.config, env.repo.path, env.state_dir, providers={
        "local": {"accounts": {"default": {"boot_seconds": 0, "faults": faults}}}})
    regions = ("us-east-1", "eu-west-1", "ap-south-1")
    errors_before = _provider_errors()
    for image in ("checkout-1.0", "checkout-2.0", "checkout-3.0"):
        env.repo.write("apps/checkout.yaml", app_spec(image=image, regions=regions)).commit(image)
        for _ in range(10):
            res = env.cli("apply", "--yes")
            if res.code == 0 and "Applied" not in res.out:
                break
        assert env.cli("plan").code == 0, f"{image}: did not converge"
        by_region: dict[str, list[str]] = {}
        for g in env.groups():
            by_region.setdefault(g["region"], []).append(g["server_group"])
        for region, names in by_region.items():
            assert len(names) == len(set(names)) <= 2, (region, names)
            serving = [g for g in env.groups(region) if g["enabled"]]
            assert [g["image"] for g in serving] == [image]
    assert _provider_errors() - errors_before >= 5, "faults were injected and retried"


def _provider_errors() -> float:
    return sum(
        s.value for m in metrics.REGISTRY.collect() if m.name == "reconciler_provider_errors"
        for s in m.samples if s.name.endswith("_total")
    )

"""The Cloud Foundry plugin's behaviour, with the real cloudfoundry-client against the Cloud Controller double."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from providers import base
from providers.base import CreateRequest, ProviderContext
from reconciler.core import errors, model
from tests.providers.cloudfoundry.conftest import SPACE, MakeCf, account
from tests.providers.cloudfoundry.fake_cc import CcError, CloudControllerDouble

DOC = Path(__file__).resolve().parents[3] / "docs" / "cloudfoundry.md"
WEB = "checkout.apps.example.com"


def request(name: str, *, image: str = "docker://registry.example.com/checkout:1.0", lbs: tuple[str, ...] = (WEB,),
            cap: tuple[int, int, int] = (1, 2, 4), spec_hash: str = "h1", itype: str = "512M/1G",
            user_data: str = "LOG_LEVEL: info\n") -> CreateRequest:
    return CreateRequest(
        name=name, application="checkout", cluster="checkout-main", region=SPACE,
        launch=model.LaunchSpec(image=image, instance_type=itype, user_data=user_data, load_balancers=lbs,
                                tags=(("team", "payments"),)),
        capacity=model.Capacity(*cap), spec_hash=spec_hash, commit="c" * 40)


def by_name(cf: Any) -> dict[str, model.ServerGroup]:
    return {g.name: g for g in cf.list_server_groups(SPACE)}


@pytest.fixture
def web(cc: CloudControllerDouble) -> str:
    return cc.add_route("checkout")


def test_the_plugin_is_found_only_through_its_entry_point() -> None:
    cls = base.load_provider_class("cloudfoundry")
    assert cls.__module__ == "reconciler_cloudfoundry.provider" and cls.name == "cloudfoundry"
    assert not cls.__module__.startswith("providers."), "a separate distribution, not part of reconciler"


def test_create_pushes_a_labelled_app_scaled_and_started_out_of_traffic(cf: Any, cc: CloudControllerDouble,
                                                                         web: str) -> None:
    sg = cf.create_server_group(request("checkout-main-v000"))
    assert sg.managed and not sg.enabled and sg.spec_hash == "h1"
    app = cc.app("checkout-main-v000")
    assert app["metadata"]["labels"] == {"managed-by": "reconciler", "application": "checkout",
                                         "cluster": "checkout-main", "spec-hash": "h1", "commit": "c" * 40}
    assert app["metadata"]["annotations"]["reconciler/routes"] == WEB and app["state"] == "STARTED"
    assert app["lifecycle"] == {"type": "docker", "data": {}} and app["env"] == {"LOG_LEVEL": "info"}
    assert cc.process("checkout-main-v000") | {"guid": "", "app": ""} == {
        "guid": "", "app": "", "type": "web", "instances": 2, "memory_in_mb": 512, "disk_in_mb": 1024}
    assert cc.mapped(web) == [], "the router does not health-check: no route until enable"
    assert cf.health(SPACE, "checkout-main-v000") == model.Health(healthy=2, desired=2, instances=2)
    g = by_name(cf)["checkout-main-v000"]
    assert (g.launch.image, g.launch.instance_type, g.launch.load_balancers, g.launch.tags) == (
        "docker://registry.example.com/checkout:1.0", "512M/1G", (WEB,), (("team", "payments"),))
    assert g.capacity == model.Capacity(1, 2, 4) and g.created_at > 0


def test_a_full_red_black_by_provider_calls(cf: Any, cc: CloudControllerDouble, web: str) -> None:
    cc.add_droplet("droplet-built-2")
    cf.create_server_group(request("checkout-main-v000"))
    cf.enable(SPACE, "checkout-main-v000")
    cf.create_server_group(request("checkout-main-v001", image="droplet:droplet-built-2", spec_hash="h2"))
    assert cc.mapped(web) == ["checkout-main-v000"]
    assert cf.health(SPACE, "checkout-main-v001").satisfies(100)
    cf.enable(SPACE, "checkout-main-v001")
    assert cc.mapped(web) == ["checkout-main-v000", "checkout-main-v001"]
    cf.disable(SPACE, "checkout-main-v000")
    assert cc.mapped(web) == ["checkout-main-v001"]
    groups = by_name(cf)
    assert groups["checkout-main-v001"].enabled and not groups["checkout-main-v000"].enabled
    cf.resize(SPACE, "checkout-main-v000", model.Capacity(0, 0, 0))
    assert cc.app("checkout-main-v000")["state"] == "STOPPED" and cc.process("checkout-main-v000")["instances"] == 0
    assert by_name(cf)["checkout-main-v000"].capacity == model.Capacity(0, 0, 0)
    cc.counts.clear()
    cf.disable(SPACE, "checkout-main-v000")
    cf.resize(SPACE, "checkout-main-v000", model.Capacity(0, 0, 0))
    assert set(cc.counts) <= {"apps_list", "routes_list", "domains_list", "process_get"}, "no-ops read only"
    cf.destroy(SPACE, "checkout-main-v000")
    assert [a["name"] for a in cc.apps.values()] == ["checkout-main-v001"] and cc.counts["job_get"] == 1
    cf.destroy(SPACE, "checkout-main-v000")  # gone: a no-op


def test_rollback_scales_a_stopped_app_back_and_starts_it(cf: Any, cc: CloudControllerDouble, web: str) -> None:
    cf.create_server_group(request("checkout-main-v000"))
    cf.resize(SPACE, "checkout-main-v000", model.Capacity(0, 0, 0))
    assert cf.health(SPACE, "checkout-main-v000") == model.Health(healthy=0, desired=0, instances=0)
    cf.resize(SPACE, "checkout-main-v000", model.Capacity(1, 3, 4))
    assert cf.health(SPACE, "checkout-main-v000") == model.Health(healthy=3, desired=3, instances=3)
    cf.enable(SPACE, "checkout-main-v000")
    assert cc.mapped(web) == ["checkout-main-v000"]


def test_a_package_is_copied_and_staged_and_a_bad_one_never_runs(cf: Any, cc: CloudControllerDouble,
                                                                 web: str) -> None:
    cc.add_package("package-checkout-bad")
    cf.create_server_group(request("checkout-main-v000", image="package:package-checkout-bad", lbs=()))
    assert cc.counts["packages_create"] == 1 and cc.counts["builds_create"] == 1
    assert cf.health(SPACE, "checkout-main-v000") == model.Health(healthy=0, desired=2, instances=2)
    assert not by_name(cf)["checkout-main-v000"].enabled
    cf.enable(SPACE, "checkout-main-v000")
    assert cc.app("checkout-main-v000")["metadata"]["annotations"]["reconciler/traffic"] == "enabled"
    assert by_name(cf)["checkout-main-v000"].enabled


def test_staging_is_polled_on_the_clock(cf: Any, cc: CloudControllerDouble, ctx: ProviderContext) -> None:
    cc.slow = 3  # unfinished for the build's creation and its first two polls
    start = ctx.clock.now()
    cf.create_server_group(request("checkout-main-v000", lbs=()))
    assert cc.counts["build_get"] == 3 and ctx.clock.now() - start == 1.0 + 2.0, "1 s, then 2 s"
    cc.slow = 1000
    with pytest.raises(errors.Unavailable, match=r"cloudfoundry/test/production builds.get: Timeout: .* not finished"):
        cf.create_server_group(request("checkout-main-v001", lbs=(), spec_hash="h2"))


def test_a_crash_between_create_and_enable_resumes_without_duplicates(make_cf: MakeCf, cc: CloudControllerDouble,
                                                                      web: str) -> None:
    cc.fail_next("process_scale", 500)  # the first attempt stops after the app and its droplet exist
    with pytest.raises(errors.ProviderError):
        make_cf(max_attempts=1).create_server_group(request("checkout-main-v000"))
    assert cc.app("checkout-main-v000")["droplet"] and cc.app("checkout-main-v000")["state"] == "STOPPED"
    again = make_cf()  # a fresh process
    again.create_server_group(request("checkout-main-v000"))
    again.enable(SPACE, "checkout-main-v000")
    assert len(cc.apps) == 1 and cc.counts["apps_create"] == 1 and cc.counts["builds_create"] == 1
    assert cc.mapped(web) == ["checkout-main-v000"] and cc.app("checkout-main-v000")["state"] == "STARTED"


def test_a_foreign_app_is_listed_unmanaged_and_never_changed(cf: Any, cc: CloudControllerDouble) -> None:
    cc.add_foreign_app("legacy")
    (g,) = cf.list_server_groups(SPACE)
    assert not g.managed and g.enabled
    for call in (lambda: cf.enable(SPACE, "legacy"), lambda: cf.disable(SPACE, "legacy"),
                 lambda: cf.resize(SPACE, "legacy", model.Capacity(0, 0, 0)), lambda: cf.destroy(SPACE, "legacy")):
        with pytest.raises(errors.Conflict, match="not managed by reconciler"):
            call()
    with pytest.raises(errors.Conflict, match="not this deployment's"):
        cf.create_server_group(request("legacy"))
    writes = [k for k in cc.counts if not k.endswith("_list") and k not in ("root", "token")]
    assert writes == [], "only reads reached the API"


def test_bad_specs_are_refused_before_any_call(cf: Any, cc: CloudControllerDouble) -> None:
    cases = [
        (request("checkout-main-v000", image="ami-123"), "expected docker://IMAGE, droplet:GUID"),
        (request("checkout-main-v000", itype="m5.large"), "MEMORY or MEMORY/DISK"),
        (request("checkout-main-v000", user_data="just text"), "a YAML mapping of environment variables"),
        (request("checkout-main-v000", cap=(3, 2, 4)), "0 <= min <= desired <= max"),
    ]
    sg = CreateRequest(name="checkout-main-v000", application="checkout", cluster="checkout-main", region=SPACE,
                       launch=model.LaunchSpec(image="docker://x", instance_type="1G", security_groups=("web",)),
                       capacity=model.Capacity(1, 1, 1), spec_hash="h", commit="c")
    cases.append((sg, "binds security groups to spaces"))
    cases.append((dataclasses.replace(request("checkout-main-v000"), autoscaling=True), "App Autoscaler is a service"))
    for req, message in cases:
        with pytest.raises(errors.ProviderError, match=message):
            cf.create_server_group(req)
    assert cc.counts == {}, "refused before any request (not even the login)"


def test_a_missing_route_is_named(cf: Any, cc: CloudControllerDouble) -> None:
    cf.create_server_group(request("checkout-main-v000", lbs=("nope.apps.example.com",)))
    with pytest.raises(errors.NotFound, match=r"route nope.apps.example.com does not exist in org payments, "
                                              r"space production"):
        cf.enable(SPACE, "checkout-main-v000")


def test_a_route_with_a_path_and_a_domain_without_host(cf: Any, cc: CloudControllerDouble) -> None:
    cc.domains["shop.example.com"] = "domain-2"
    api = cc.add_route("checkout", path="/api")
    bare = cc.add_route("", domain="shop.example.com")
    cc.routes[bare]["url"] = "shop.example.com"
    cf.create_server_group(request("checkout-main-v000", lbs=("checkout.apps.example.com/api", "shop.example.com")))
    cf.enable(SPACE, "checkout-main-v000")
    assert cc.mapped(api) == ["checkout-main-v000"] and cc.mapped(bare) == ["checkout-main-v000"]
    assert by_name(cf)["checkout-main-v000"].enabled


def test_listing_is_three_paged_reads_of_the_space(make_cf: MakeCf, cc: CloudControllerDouble, web: str) -> None:
    cf = make_cf(page_size=50)
    cf.create_server_group(request("checkout-main-v000"))
    cf.enable(SPACE, "checkout-main-v000")
    for i in range(119):
        cc.add_foreign_app(f"bulk{i:03d}")
    for i in range(60):
        cc.add_route(f"extra{i}")
    cc.counts.clear()
    cf.calls.clear()
    groups = cf.list_server_groups(SPACE)
    assert len(groups) == 120 and sum(g.managed for g in groups) == 1 and by_name(cf)["checkout-main-v000"].enabled
    cc.counts.clear()
    cf.list_server_groups(SPACE)
    assert cc.counts == {"apps_list": 3, "processes_list": 3, "routes_list": 2}, "50 a page; nothing per app"


def test_429_waits_for_retry_after_and_5xx_backs_off_on_the_clock(cf: Any, cc: CloudControllerDouble,
                                                                   ctx: ProviderContext, web: str) -> None:
    cc.fail_next("apps_list", 429, retry_after="7")
    cc.fail_next("apps_create", 503)
    start = ctx.clock.now()
    cf.create_server_group(request("checkout-main-v000"))
    assert ctx.clock.now() - start == 7.0 + 1.0 and len(cc.apps) == 1 and not cc.faults


def test_throttling_that_never_ends_gives_up_naming_the_call(make_cf: MakeCf, cc: CloudControllerDouble) -> None:
    cf = make_cf(max_attempts=2)
    cc.fail_next("apps_list", 429, times=3, retry_after="1")
    with pytest.raises(errors.Throttled, match=r"cloudfoundry/test/production apps.list: CF-RateLimitExceeded: "
                                               r"HTTP 429 \(org payments, space production\)"):
        cf.list_server_groups(SPACE)
    assert cc.counts["apps_list"] == 2


def test_a_missing_role_names_it_and_is_not_retried(cf: Any, cc: CloudControllerDouble) -> None:
    cc.deny("apps_create")
    with pytest.raises(errors.AccessDenied, match=r"apps.create: CF-NotAuthorized: .*lacks the SpaceDeveloper role "
                                                  r"in org payments, space production"):
        cf.create_server_group(request("checkout-main-v000", lbs=()))
    assert cc.counts["apps_create"] == 1


def test_bad_credentials_and_a_wrong_space_are_clear(make_cf: MakeCf, cc: CloudControllerDouble, creds: Path) -> None:
    creds.write_text("username: deployer\npassword: wrong\n", encoding="utf-8")
    with pytest.raises(errors.AccessDenied, match="login refused"):
        make_cf().list_server_groups(SPACE)
    creds.write_text("username: deployer\npassword: s3cret\n", encoding="utf-8")
    with pytest.raises(errors.NotFound, match="space staging not found in org payments"):
        make_cf(space="staging").list_server_groups("staging")
    with pytest.raises(errors.ProviderError, match="region 'eu' is not this account's space"):
        make_cf().list_server_groups("eu")


@pytest.mark.parametrize(("config", "field"), [
    ({"api_url": ""}, "api_url: required"),
    ({"api_url": "api.example.com"}, "api_url: an http(s) URL"),
    ({"org": None}, "org: required"),
    ({"space": 3}, "space: required"),
    ({"credentials_file": "/nonexistent.yaml"}, "credentials_file: cannot read"),
    ({"max_attempts": 0}, "max_attempts: must be from 1 to 100"),
    ({"skip_ssl_validation": "yes"}, "skip_ssl_validation: true or false"),
    ({"spaces": ["a"]}, "spaces: unknown field; did you mean space? allowed: api_url"),
])
def test_config_errors_name_the_field(cc: CloudControllerDouble, creds: Path, ctx: ProviderContext,
                                      config: dict[str, object], field: str) -> None:
    with pytest.raises(errors.ConfigError, match=re.escape(f"providers.cloudfoundry.accounts.test.{field}")):
        base.make_provider("cloudfoundry", "test", account(cc, creds, **config), ctx)


def test_a_credentials_file_must_hold_one_kind_of_credentials(cc: CloudControllerDouble, creds: Path,
                                                             ctx: ProviderContext) -> None:
    creds.write_text("username: deployer\nclient_secret: x\n", encoding="utf-8")
    with pytest.raises(errors.ConfigError, match="must hold username and password, or client_id and client_secret"):
        base.make_provider("cloudfoundry", "test", account(cc, creds), ctx)


def test_the_documented_account_settings_are_accepted(creds: Path, ctx: ProviderContext) -> None:
    block = re.search(r"```yaml\n(providers:\n  cloudfoundry:.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert block, "docs/cloudfoundry.md shows an account configuration"
    for name, config in yaml.safe_load(block.group(1))["providers"]["cloudfoundry"]["accounts"].items():
        provider = base.make_provider("cloudfoundry", name, {**config, "credentials_file": str(creds)}, ctx)
        assert provider.regions() == (config["space"],)
        provider.close()


def test_a_disable_interrupted_between_two_routes_lists_in_traffic_and_is_finished(cf: Any,
                                                                                    cc: CloudControllerDouble) -> None:
    one, two = cc.add_route("checkout"), cc.add_route("shop")
    cf.create_server_group(request("checkout-main-v000", lbs=(WEB, "shop.apps.example.com")))
    cf.enable(SPACE, "checkout-main-v000")
    assert cc.mapped(one) == cc.mapped(two) == ["checkout-main-v000"] and by_name(cf)["checkout-main-v000"].enabled
    real = cc.on_route_unmap
    calls = []

    def unmap_once_then_die(req, guid, dest):
        calls.append(guid)
        if len(calls) == 2:
            raise CcError(403, "CF-NotAuthorized", 10003, "lost the role half-way")
        return real(req, guid, dest)

    cc.on_route_unmap = unmap_once_then_die  # type: ignore[method-assign]
    with pytest.raises(errors.AccessDenied):
        cf.disable(SPACE, "checkout-main-v000")
    assert by_name(cf)["checkout-main-v000"].enabled, "still mapped to one route: listed in traffic"
    cc.on_route_unmap = real  # type: ignore[method-assign]
    cf.disable(SPACE, "checkout-main-v000")
    assert cc.mapped(one) == cc.mapped(two) == [] and not by_name(cf)["checkout-main-v000"].enabled


def test_the_double_rejects_fields_the_v3_api_does_not_document(cf: Any, cc: CloudControllerDouble) -> None:
    client = cf._connect()
    body = {"name": "typo", "relationships": {"space": {"data": {"guid": cc.space_guid}}}, "instances": 2}
    with pytest.raises(Exception, match=r"Unknown field\(s\): 'instances'"):
        client.post(f"{cc.base}/v3/apps", json=body)
    assert not cc.apps


def test_without_the_client_library_the_registry_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "cloudfoundry_client", None)
    for name in [m for m in sys.modules if m == "reconciler_cloudfoundry" or m.startswith("reconciler_cloudfoundry.")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(errors.ProviderMissing, match=r"pip install 'reconciler\[cloudfoundry\]'"):
        base.load_provider_class("cloudfoundry")

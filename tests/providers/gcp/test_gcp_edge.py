"""The GCP provider's edge: bulk reads, retries without duplicates, operations, errors, config, rate limit."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import google.api_core.exceptions as gexc
import pytest

from providers.base import ProviderContext
from providers.gcp import GcpProvider, map_error
from providers.gcp.edge import label_key, label_value
from reconciler.core import clock as clock_mod
from reconciler.core import errors, model
from reconciler.core.ratelimit import TokenBucket
from tests.providers.gcp.conftest import MakeGcp
from tests.providers.gcp.fake_compute import ComputeDouble
from tests.providers.gcp.fake_resources import ApiError
from tests.providers.gcp.test_gcp_provider import REGION, request


def test_listing_pages_with_one_request_per_page(gcp: GcpProvider, compute: ComputeDouble) -> None:
    compute.add_backend_service("web")
    gcp.create_server_group(request("checkout-main-v000"))
    for i in range(249):
        compute.add_foreign_mig(REGION, f"bulk{i:03d}-v000")
    gcp.page_size = 100
    gcp.calls.clear()
    compute.counts.clear()
    groups = gcp.list_server_groups(REGION)
    assert len(groups) == 250 and sum(g.managed for g in groups) == 1
    assert compute.counts == {"migs_list": 3, "bs_get": 1}, "a page per 100 groups, one read per backend service"
    assert gcp.calls == {"regionInstanceGroupManagers.list": 3, "backendServices.get": 1}


def test_429_and_503_are_retried_without_duplicates(gcp: GcpProvider, compute: ComputeDouble,
                                                    ctx: ProviderContext) -> None:
    compute.add_backend_service("web")
    compute.fail_next("templates_insert", 503)
    compute.fail_next("migs_insert", 429)
    compute.fail_next("migs_list", 503, times=2)
    compute.fail_next("bs_patch", 429)
    compute.fail_next("op_wait", 503)
    compute.slow_ops = 1  # every operation needs one wait
    start = ctx.clock.now()
    gcp.create_server_group(request("checkout-main-v000"))
    assert [g.name for g in gcp.list_server_groups(REGION)] == ["checkout-main-v000"]
    assert compute.template_names() == ["checkout-main-v000"] and len(compute.migs) == 1
    assert compute.backends_of("web") == ["checkout-main-v000"]
    assert not compute.faults
    assert gcp.calls["regionInstanceGroupManagers.insert"] == 2 and gcp.calls["regionInstanceGroupManagers.list"] == 3
    assert ctx.clock.now() - start == pytest.approx(0.5 * 4 + (0.5 + 1.0)), "exponential, on the injected clock"


def test_a_lost_answer_is_not_a_duplicate(gcp: GcpProvider, compute: ComputeDouble) -> None:
    """The insert happened but its answer was a 503: the retry carries the same request id."""
    real = compute.on_migs_insert

    def insert_then_fail(req, project, region):
        real(req, project, region)
        compute.on_migs_insert = real  # type: ignore[method-assign]
        raise ApiError(503, "backend error after the write", "backendError")

    compute.on_migs_insert = insert_then_fail  # type: ignore[method-assign]
    gcp.create_server_group(request("checkout-main-v000", lbs=()))
    assert len(compute.migs) == 1 and compute.counts["migs_insert"] == 2 and len(compute.request_ids) == 2


def test_throttling_that_never_ends_gives_up_after_max_attempts(make_gcp: MakeGcp, compute: ComputeDouble) -> None:
    gcp = make_gcp(max_attempts=3)
    compute.fail_next("migs_list", 429, times=5)
    with pytest.raises(errors.Throttled, match=r"gcp/test/europe-west1 regionInstanceGroupManagers.list: "
                                               r"rateLimitExceeded: HTTP 429 \(project test-project\)"):
        gcp.list_server_groups(REGION)
    assert compute.counts["migs_list"] == 3


def test_operations_are_waited_on_and_their_errors_surface(gcp: GcpProvider, compute: ComputeDouble,
                                                           ctx: ProviderContext) -> None:
    compute.slow_ops = 2
    gcp.create_server_group(request("checkout-main-v000", lbs=()))
    assert compute.counts["op_wait"] == 4, "two operations, each RUNNING until its second wait"
    compute.slow_ops = 0
    compute.fail_operation("migs_resize", "QUOTA_EXCEEDED", "Quota 'CPUS' exceeded. Limit: 24.0 in region")
    with pytest.raises(errors.ProviderError, match="QUOTA_EXCEEDED: Quota 'CPUS' exceeded") as info:
        gcp.resize(REGION, "checkout-main-v000", model.Capacity(1, 30, 30))
    assert "project test-project" in str(info.value) and info.value.region == REGION
    compute.slow_ops = -1
    gcp.operation_timeout_s = 30
    start = ctx.clock.now()
    with pytest.raises(errors.Unavailable, match="not done after 30s"):
        gcp.destroy(REGION, "checkout-main-v000")
    assert ctx.clock.now() - start >= 30 and compute.counts["op_wait"] < 40


def test_a_bad_project_is_a_clear_error_naming_project_and_region(make_gcp: MakeGcp) -> None:
    gcp = make_gcp(project="no-such-project")
    with pytest.raises(errors.NotFound) as info:
        gcp.list_server_groups(REGION)
    text = str(info.value)
    assert "gcp/test/europe-west1 regionInstanceGroupManagers.list" in text and "HTTP 404" in text
    assert "project no-such-project" in text and "'projects/no-such-project' was not found" in text


def test_errors_name_status_method_project_and_region(gcp: GcpProvider, ctx: ProviderContext, tmp_path: Path) -> None:
    with pytest.raises(errors.NotFound, match="checkout-main-v042 does not exist in project test-project"):
        gcp.enable(REGION, "checkout-main-v042")
    with pytest.raises(errors.NotFound) as info:
        gcp.create_server_group(request("checkout-main-v000", lbs=("no-such-service",)))
    assert "gcp/test/europe-west1 backendServices.get: notFound: HTTP 404 (project test-project)" in str(info.value)
    with pytest.raises(errors.ProviderError, match="not one of this account's regions"):
        gcp.list_server_groups("europe-wset1")
    down = GcpProvider.from_config("down", {"project": "p", "endpoint": "http://127.0.0.1:9", "max_attempts": 1,
                                            "rate_limit": 0}, ctx)
    with pytest.raises(errors.Unavailable, match="project p"):
        down.list_server_groups(REGION)
    down.close()


def test_access_denied_names_the_missing_permission(gcp: GcpProvider, compute: ComputeDouble) -> None:
    compute.fail_next("migs_list", 403, message="Required 'compute.instanceGroupManagers.list' permission for "
                                                "'projects/test-project/regions/europe-west1'")
    with pytest.raises(errors.AccessDenied, match=r"lacks permission compute\.instanceGroupManagers\.list; "
                                                  r"grant roles/compute\.instanceAdmin\.v1"):
        gcp.list_server_groups(REGION)
    assert compute.counts["migs_list"] == 1, "permanent: not retried"


def test_map_error_maps_every_status_class() -> None:
    def mapped(exc: BaseException) -> errors.ProviderError:
        return map_error(exc, method="m", project="p", region="r", account="a")

    assert type(mapped(gexc.TooManyRequests("slow"))) is errors.Throttled
    assert type(mapped(gexc.ServiceUnavailable("down"))) is errors.Unavailable
    assert type(mapped(gexc.InternalServerError("oops"))) is errors.Unavailable
    assert type(mapped(gexc.NotFound("gone"))) is errors.NotFound
    assert type(mapped(gexc.Conflict("exists"))) is errors.Conflict
    assert type(mapped(gexc.PreconditionFailed("stale"))) is errors.Conflict
    in_use = gexc.BadRequest("in use", errors=[{"reason": "resourceInUseByAnotherResource"}])
    assert mapped(in_use).code == "resourceInUseByAnotherResource" and type(mapped(in_use)) is errors.Conflict
    assert type(mapped(gexc.BadRequest("bad"))) is errors.ProviderError
    assert type(mapped(ConnectionRefusedError("no"))) is errors.Unavailable
    with pytest.raises(KeyError):
        mapped(KeyError("a bug is not a cloud error"))


def test_config_is_checked_field_by_field(ctx: ProviderContext, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def make(**config: object) -> GcpProvider:
        return GcpProvider.from_config("prod", {"project": "p", "endpoint": "http://127.0.0.1:9", **config}, ctx)

    cases: dict[str, dict[str, object]] = {"providers.gcp.accounts.prod.projekt: unknown field": {"projekt": "x"},
             "providers.gcp.accounts.prod.zones": {"zones": ["europe-west1-b"]},
             "providers.gcp.accounts.prod.regions": {"regions": "europe-west1"},
             "providers.gcp.accounts.prod.rate_limit": {"rate_limit": -1},
             "providers.gcp.accounts.prod.max_attempts": {"max_attempts": 0}}
    for message, config in cases.items():
        with pytest.raises(errors.ConfigError, match=message.replace(".", r"\.")):
            make(**config)
    with pytest.raises(errors.ConfigError, match="project: required"):
        GcpProvider.from_config("prod", {}, ctx)
    with pytest.raises(errors.ProviderError, match=r"cannot load providers\.gcp\.accounts\.prod\.credentials_file"):
        make(credentials_file=str(tmp_path / "missing.json"))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(errors.ProviderError, match="no application default credentials for project p") as info:
        GcpProvider.from_config("prod", {"project": "p"}, ctx)
    assert info.value.code == "DefaultCredentialsError"


def test_the_rate_limit_is_a_token_bucket_on_the_injected_clock(make_gcp: MakeGcp, ctx: ProviderContext) -> None:
    clock = clock_mod.FakeClock()
    bucket = TokenBucket(rate=2.0, burst=2.0, clock=clock)
    waits = [bucket.take() for _ in range(6)]
    assert waits[:2] == [0.0, 0.0] and sum(waits) == pytest.approx(2.0)
    clock.advance(10)
    assert bucket.take() == 0.0, "refilled, up to the burst"
    gcp = make_gcp(rate_limit=5)
    start = ctx.clock.now()
    for _ in range(10):
        gcp.list_server_groups(REGION)
    assert ctx.clock.now() - start == pytest.approx(1.0), "10 calls at 5/s after a burst of 5"
    gcp.list_server_groups("us-central1")
    assert ctx.clock.now() - start == pytest.approx(1.0), "each region has its own bucket"


def test_a_wrong_field_name_is_rejected_by_the_double(compute: ComputeDouble) -> None:
    req = urllib.request.Request(
        f"{compute.base}/compute/v1/projects/test-project/regions/europe-west1/instanceTemplates",
        data=b'{"name": "x", "machineTypo": "e2"}', method="POST", headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req)
    with info.value:
        assert info.value.code == 400 and b"machineTypo" in info.value.read()
    assert not compute.templates


def test_label_rules() -> None:
    assert label_value("checkout") == "checkout" and label_value("c" * 40) == "c" * 40
    long = label_value("A" * 100)
    assert len(long) <= 63 and long == long.lower()
    assert label_value("Payments Team") != label_value("payments-team"), "hashed, so distinct values stay distinct"
    assert label_key("9lives").startswith("k") and label_key("Team") == label_value("Team")

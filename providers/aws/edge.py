"""The AWS provider's edge: boto3 clients, paging, retries, rate limiting and error mapping.

Everything that talks to botocore directly lives here, so the provider reads as AWS concepts and the
records module stays free of I/O. ``map_error`` is the one place a botocore failure becomes a
``reconciler.core.errors`` exception, with the AWS error code, the call, the account and the region.
Creating a client does no network I/O; the rate limit (``core.ratelimit.TokenBucket``) and botocore's
retry back-off wait on the injected clock, so shutdown interrupts them and tests never sleep.

A module that adds calls (as ``providers.aws_resources`` does) lists them in its own ``SERVICE_OF``
and is merged into ``SERVICE_OF`` below: that table is what ``call`` dispatches on and what
docs/aws.md documents as the IAM actions.
"""

from __future__ import annotations

import collections
import difflib
import functools
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import botocore.parsers
import botocore.session
from botocore.credentials import DeferredRefreshableCredentials

from providers import aws_images, aws_resources
from reconciler.core import clock as clock_mod
from reconciler.core import errors, ratelimit

log = logging.getLogger(__name__)

NAME = "aws"
_THROTTLE = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
             "RequestThrottled", "RequestThrottledException", "SlowDown"}
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedAccess"}
_UNAVAILABLE = {"ServiceUnavailable", "InternalFailure", "InternalError", "RequestTimeout",
                "RequestTimeoutException"}
_IAM_PREFIX = {"autoscaling": "autoscaling", "ec2": "ec2", "elbv2": "elasticloadbalancing", "sts": "sts"}
SERVICE_OF = {
    "DescribeAutoScalingGroups": "autoscaling", "CreateAutoScalingGroup": "autoscaling",
    "UpdateAutoScalingGroup": "autoscaling", "DeleteAutoScalingGroup": "autoscaling",
    "SuspendProcesses": "autoscaling", "ResumeProcesses": "autoscaling",
    "AttachLoadBalancerTargetGroups": "autoscaling", "DetachLoadBalancerTargetGroups": "autoscaling",
    "CreateLaunchTemplate": "ec2", "DeleteLaunchTemplate": "ec2", "DescribeLaunchTemplates": "ec2",
    "DescribeSubnets": "ec2", "DescribeSecurityGroups": "ec2",
    "DescribeTargetGroups": "elbv2", "DescribeTargetHealth": "elbv2", "AssumeRole": "sts",
    **aws_resources.SERVICE_OF,
    **aws_images.SERVICE_OF,
}
"""Every call this provider makes, with its service: the IAM actions documented in docs/aws.md."""
_PAGE_SIZE = {"DescribeAutoScalingGroups": 100, "DescribeSubnets": 1000}
"""The largest page each list call accepts (MaxRecords / MaxResults): the API's default is 50."""


def permission(call: str) -> str:
    """The IAM action a call needs, e.g. ``autoscaling:CreateAutoScalingGroup``."""
    service = SERVICE_OF.get(call)
    return f"{_IAM_PREFIX[service]}:{call}" if service else call


@functools.cache
def known_regions() -> frozenset[str]:
    """Every region botocore's bundled endpoint data knows, in every partition (no network)."""
    session = botocore.session.get_session()
    return frozenset(region for partition in session.get_available_partitions()
                     for service in ("autoscaling", "ec2")
                     for region in session.get_available_regions(service, partition))


class Edge:
    """One account's clients per (service, region), made lazily, counted and rate limited per region."""

    def __init__(self, account: str, session: boto3.Session, clock: clock_mod.Clock, *,
                 regions: tuple[str, ...] = (), endpoint_url: str | None = None, retry_mode: str = "standard",
                 max_attempts: int = 5, rate_limit: float = 10.0) -> None:
        self.account = account
        self.session = session
        self.clock = clock
        self.regions = regions
        self.endpoint_url = endpoint_url
        retries: Any = {"mode": retry_mode, "total_max_attempts": max_attempts}  # first try included
        self.retry = botocore.config.Config(retries=retries, connect_timeout=5, read_timeout=30)
        self.rate_limit = rate_limit
        self.calls: collections.Counter[str] = collections.Counter()
        """API calls by operation name (one per call, however many attempts)."""
        self.attempts: collections.Counter[str] = collections.Counter()
        """HTTP attempts by operation name (retries included)."""
        self._clients: dict[tuple[str, str], Any] = {}
        self._buckets: dict[str, ratelimit.TokenBucket] = {}
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()

    def error(self, cls: type[errors.ProviderError], message: str, call: str, region: str,
              code: str = "") -> errors.ProviderError:
        return cls(message, provider=NAME, call=call, account=self.account, region=region, code=code)

    def check_region(self, region: str) -> None:
        where = f"providers.aws.accounts.{self.account}.regions"
        if self.regions and region not in self.regions:
            raise self.error(errors.ProviderError, f"region {region!r} is not one of this account's regions "
                             f"({', '.join(self.regions)}; {where})", "", region, "RegionNotConfigured")
        if region not in known_regions():
            near = difflib.get_close_matches(region, sorted(known_regions()), n=1)
            hint = f"did you mean {near[0]!r}? " if near else ""
            raise self.error(errors.ProviderError, f"unknown AWS region {region!r}; {hint}(a region newer than "
                             "this boto3 needs an upgrade)", "", region, "UnknownRegion")

    def client(self, service: str, region: str) -> Any:
        key = (service, region)
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                return client
            self.check_region(region)
            try:
                make: Any = self.session.client  # typed per service by the stubs; we pick services by name
                client = make(service, region_name=region, endpoint_url=self.endpoint_url, config=self.retry)
            except (botocore.exceptions.BotoCoreError, ValueError) as exc:
                raise self.error(errors.ProviderError, f"cannot create the {service} client: {exc}", "",
                                 region, type(exc).__name__) from exc
            bucket = self._buckets.setdefault(region, ratelimit.TokenBucket(self.rate_limit, self.rate_limit,
                                                                            self.clock))
            client.meta.events.register("before-call", self._count_call)
            client.meta.events.register("before-send", self._before_send(bucket))
            retry_waits_on(client, self.clock)
            self._clients[key] = client
            return client

    def _count_call(self, model: Any = None, **_: Any) -> None:
        with self._count_lock:  # regions are read from several threads
            self.calls[model.name if model is not None else "?"] += 1

    def _before_send(self, bucket: ratelimit.TokenBucket) -> Callable[..., None]:
        def hook(event_name: str = "", **_: Any) -> None:
            with self._count_lock:
                self.attempts[event_name.rsplit(".", 1)[-1]] += 1
            bucket.take()

        return hook

    def call(self, region: str, op: str, **kwargs: Any) -> Any:
        client = self.client(SERVICE_OF[op], region)
        try:
            return getattr(client, snake(op))(**kwargs)
        except Exception as exc:
            raise map_error(exc, call=op, account=self.account, region=region) from exc

    def pages(self, region: str, op: str, key: str, **kwargs: Any) -> list[Any]:
        """Every page of a list call, each as large as the API allows (fewer calls, fewer throttles)."""
        client = self.client(SERVICE_OF[op], region)
        out: list[Any] = []
        paging = {"PageSize": _PAGE_SIZE[op]} if op in _PAGE_SIZE else {}
        try:
            for page in client.get_paginator(snake(op)).paginate(**kwargs, PaginationConfig=paging):
                out += page.get(key, [])
        except Exception as exc:
            raise map_error(exc, call=op, account=self.account, region=region) from exc
        return out

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


def snake(op: str) -> str:
    """``DescribeAutoScalingGroups`` -> ``describe_auto_scaling_groups`` (the client method)."""
    out = []
    for i, ch in enumerate(op):
        if ch.isupper() and i and not op[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def retry_waits_on(client: Any, clock: clock_mod.Clock) -> None:
    """Make botocore's retry back-off wait on our clock (interruptible at shutdown, instant in tests).

    botocore computes the delay in its ``needs-retry`` handler and then calls ``time.sleep`` itself;
    we wrap that handler, wait the delay on ``clock`` and hand botocore a delay of 0. The handler is
    found by the unique id botocore registers it under; if a botocore release moves it, retries keep
    working with botocore's own sleep (logged once per client).
    """
    events = client.meta.events
    service = client.meta.service_model.service_id.hyphenize()
    uid = f"retry-config-{service}"
    entry = getattr(getattr(events, "_emitter", events), "_unique_id_handlers", {}).get(uid)
    if not entry or "handler" not in entry:
        log.debug("botocore retry handler %s not found; retries sleep on the wall clock", uid)
        return
    inner = entry["handler"]

    def needs_retry(**kwargs: Any) -> float | None:
        delay = inner(**kwargs)
        if delay is None:
            return None
        clock.sleep(float(delay))
        return 0.0

    events.unregister(f"needs-retry.{service}", unique_id=uid)
    events.register(f"needs-retry.{service}", needs_retry, unique_id=uid)


def map_error(exc: BaseException, *, call: str, account: str, region: str) -> errors.ProviderError:
    """The one place that turns botocore's failures into the project's exception tree."""
    kw = {"provider": NAME, "call": call, "account": account, "region": region}
    if isinstance(exc, errors.ProviderError):
        return exc
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        message = str(err.get("Message", "")) or str(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _THROTTLE or status == 429:
            return errors.Throttled(message, code=code, **kw)
        if code in _DENIED or status == 403:
            return errors.AccessDenied(f"{message} (the credentials need {permission(call)})", code=code, **kw)
        if "AlreadyExists" in code or "Duplicate" in code:
            return errors.Conflict(message, code=code, **kw)
        if "NotFound" in code or "not found" in message.lower():
            return errors.NotFound(message, code=code, **kw)
        if status >= 500 or code in _UNAVAILABLE:
            return errors.Unavailable(message, code=code, **kw)
        return errors.ProviderError(message, code=code, **kw)
    if isinstance(exc, botocore.exceptions.EndpointConnectionError | botocore.exceptions.ConnectTimeoutError
                  | botocore.exceptions.ReadTimeoutError | botocore.exceptions.ConnectionClosedError
                  | botocore.parsers.ResponseParserError):
        return errors.Unavailable(f"{exc} (after retries)", code=type(exc).__name__, **kw)
    if isinstance(exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.NoRegionError
                  | botocore.exceptions.ProfileNotFound | botocore.exceptions.PartialCredentialsError):
        return errors.ProviderError(f"{exc} (check the account's profile or role_arn)", code=type(exc).__name__,
                                    **kw)
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return errors.ProviderError(str(exc), code=type(exc).__name__, **kw)
    raise exc


def assume_role_session(source: boto3.Session, account: str, role_arn: str, external_id: Any,
                        endpoint_url: Any, region: str) -> boto3.Session:
    """Credentials from STS AssumeRole (session name ``reconciler``), refreshed before they expire.

    Deferred: no STS call until the first API call needs credentials, so building a provider does no I/O.
    """

    def refresh() -> dict[str, str]:
        sts = source.client("sts", region_name=region, endpoint_url=endpoint_url)
        params: dict[str, Any] = {"RoleArn": role_arn, "RoleSessionName": "reconciler"}
        if external_id:
            params["ExternalId"] = str(external_id)
        try:
            creds = sts.assume_role(**params)["Credentials"]
        except Exception as exc:
            raise map_error(exc, call="AssumeRole", account=account, region=region) from exc
        finally:
            sts.close()
        expiry = creds["Expiration"]
        return {"access_key": creds["AccessKeyId"], "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"],
                "expiry_time": (expiry if isinstance(expiry, datetime) else datetime.now(UTC)).isoformat()}

    bc = botocore.session.get_session()
    bc._credentials = DeferredRefreshableCredentials(  # type: ignore[attr-defined]  # botocore has no public setter
        refresh_using=refresh, method="sts-assume-role")
    return boto3.Session(botocore_session=bc)

"""The Cloud Foundry provider's edge: the client, error mapping, and the spec's CF forms.

``Client`` is ``cloudfoundry_client.CloudFoundryClient`` (login, token refresh, root discovery)
with one change: a failed request raises ``ApiError`` carrying the response headers, so a 429's
``Retry-After`` can be honoured. ``map_error`` is the one place a failure becomes a
``reconciler.core.errors`` exception.
"""

from __future__ import annotations

import collections
import email.utils
import re
import threading
from typing import Any

import requests
from cloudfoundry_client.client import CloudFoundryClient
from cloudfoundry_client.errors import InvalidStatusCode
from oauth2_client.credentials_manager import CredentialManager, OAuthError

from reconciler.core import errors

NAME = "cloudfoundry"
WRITE_ROLE = "SpaceDeveloper"
READ_ROLES = "SpaceDeveloper, SpaceManager or SpaceAuditor"


class ApiError(Exception):
    """A Cloud Controller answer outside 2xx, with its headers and v3 ``errors``."""

    def __init__(self, response: requests.Response) -> None:
        self.status = response.status_code
        self.headers = dict(response.headers)
        try:
            body = response.json()
        except ValueError:
            body = {"errors": [{"title": "", "detail": response.text[:200], "code": 0}]}
        found = body.get("errors") if isinstance(body, dict) else None
        first = found[0] if isinstance(found, list) and found and isinstance(found[0], dict) else {}
        self.title = str(first.get("title") or "")
        self.detail = str(first.get("detail") or "")
        super().__init__(f"HTTP {self.status} {self.title}: {self.detail}")


class Client(CloudFoundryClient):  # type: ignore[misc]  # the library has no type hints
    """The library's client, counting requests by method, with timeouts, raising ``ApiError``."""

    timeout = (10.0, 120.0)
    """Seconds to connect and to read an answer (the library sets none: a stuck server would hang a pass)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.requests: collections.Counter[str] = collections.Counter()
        self._count_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        with self._count_lock:
            self.requests[method] += 1
        kwargs.setdefault("timeout", self.timeout)
        response: requests.Response = getattr(CredentialManager, method.lower())(self, url, **kwargs)
        if response.status_code // 100 != 2:
            raise ApiError(response)
        return response

    def get(self, url: str, params: dict[str, Any] | None = None, **kwargs: Any) -> requests.Response:
        return self._send("GET", url, params=params, **kwargs)

    def post(self, url: str, data: Any = None, json: Any = None, **kwargs: Any) -> requests.Response:
        return self._send("POST", url, data=data, json=json, **kwargs)

    def put(self, url: str, data: Any = None, json: Any = None, **kwargs: Any) -> requests.Response:
        return self._send("PUT", url, data=data, json=json, **kwargs)

    def patch(self, url: str, data: Any = None, json: Any = None, **kwargs: Any) -> requests.Response:
        return self._send("PATCH", url, data=data, json=json, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> requests.Response:
        return self._send("DELETE", url, **kwargs)


def retry_after(exc: BaseException, now: float) -> float | None:
    """Seconds a 429 asked us to wait: ``Retry-After`` (seconds or a date), else ``X-RateLimit-Reset``."""
    if not isinstance(exc, ApiError):
        return None
    headers = {k.lower(): v for k, v in exc.headers.items()}
    value = headers.get("retry-after")
    if value is not None:
        try:
            return max(float(value), 0.0)
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value) if value else None
            return max(parsed.timestamp() - now, 0.0) if parsed else None
    reset = headers.get("x-ratelimit-reset")
    try:
        return max(float(reset) - now, 0.0) if reset is not None else None
    except ValueError:
        return None


def map_error(exc: BaseException, *, call: str, account: str, region: str, scope: str,
              write: bool) -> errors.ProviderError:
    """A failure as the project's exception, naming the CF error, the call and the org/space."""
    if isinstance(exc, errors.ProviderError):
        return exc
    kw = {"provider": NAME, "call": call, "account": account, "region": region}
    if isinstance(exc, ApiError):
        code = exc.title or str(exc.status)
        text = f"HTTP {exc.status} ({scope}): {exc.detail or exc.title}"
        if exc.status == 429:
            return errors.Throttled(text, code=code, **kw)
        if exc.status == 401:
            return errors.AccessDenied(f"{text} (the token was refused; check the credentials file)", code=code, **kw)
        if exc.status == 403:
            role = WRITE_ROLE if write else READ_ROLES
            return errors.AccessDenied(f"{text} (the user lacks the {role} role in {scope})", code=code, **kw)
        if exc.status == 404:
            return errors.NotFound(text, code=code, **kw)
        if exc.status == 409 or (exc.status == 422 and "already" in exc.detail.lower()):
            return errors.Conflict(text, code=code, **kw)
        if exc.status >= 500:
            return errors.Unavailable(text, code=code, **kw)
        return errors.ProviderError(text, code=code, **kw)
    if isinstance(exc, OAuthError):
        return errors.AccessDenied(f"login refused ({scope}): {exc}", code="OAuthError", **kw)
    if isinstance(exc, InvalidStatusCode):
        return errors.Unavailable(f"{exc} ({scope})", code=str(getattr(exc.status_code, "value", "")), **kw)
    if isinstance(exc, requests.RequestException | ConnectionError | OSError):
        return errors.Unavailable(f"{type(exc).__name__}: {exc} ({scope})", code="connection", **kw)
    raise exc


# --------------------------------------------------------------------------- the spec's CF forms

_SIZE_RE = re.compile(r"^(\d+)\s*(M|MB|G|GB)$", re.IGNORECASE)


def megabytes(text: str) -> int:
    found = _SIZE_RE.match(text.strip())
    if not found:
        raise ValueError(f"{text!r} is not a size like 512M or 1G")
    number, unit = int(found.group(1)), found.group(2).upper()
    return number * 1024 if unit.startswith("G") else number


def sizes(instance_type: str) -> tuple[int, int | None]:
    """``instance_type`` as (memory, disk) in MB: ``1G`` (memory) or ``1G/2G`` (memory/disk)."""
    memory, _, disk = instance_type.partition("/")
    try:
        return megabytes(memory), megabytes(disk) if disk else None
    except ValueError as exc:
        raise ValueError(f"instance_type {instance_type!r}: MEMORY or MEMORY/DISK, e.g. 1G or 1G/2G ({exc})") from exc


def source(image: str) -> tuple[str, str]:
    """``image`` as (kind, ref): ``docker://IMAGE``, ``droplet:GUID`` or ``package:GUID``."""
    for prefix, kind in (("docker://", "docker"), ("droplet:", "droplet"), ("package:", "package")):
        if image.startswith(prefix) and image[len(prefix):]:
            return kind, image[len(prefix):]
    raise ValueError(f"image {image!r}: expected docker://IMAGE, droplet:GUID (a staged droplet to copy) "
                     "or package:GUID (a package to copy and stage)")


def route(text: str) -> tuple[str, str, str]:
    """``host.domain[/path]`` as (host, domain, path); the domain is looked up, so a route on a
    domain without a host is tried as (``""``, the whole name) when the first split finds none."""
    name, slash, path = text.partition("/")
    host, _, domain = name.partition(".")
    return host, domain, f"/{path}" if slash else ""

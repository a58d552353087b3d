"""The Azure provider's edge: error mapping, ``Retry-After``, polling on our clock, names and IDs.

Nothing here sends a request; ``map_error`` is the one place an SDK failure becomes a
``reconciler.core.errors`` exception.
"""

from __future__ import annotations

import email.utils
import re
from typing import Any

from azure.core import exceptions as azexc
from azure.mgmt.core.polling.arm_polling import ARMPolling

from reconciler.core import clock as clock_mod
from reconciler.core import errors

NAME = "azure"
TIMEOUT = "OperationTimeout"
ROLES = {
    "Microsoft.Compute": "Virtual Machine Contributor",
    "Microsoft.Network": "Network Contributor",
    "Microsoft.Insights": "Monitoring Contributor",
}
"""Built-in role that grants each resource provider's actions (docs/azure.md lists the actions)."""

_ACTION_RE = re.compile(r"(Microsoft\.[A-Za-z]+/[A-Za-z0-9/._-]+?)'?(?:\s|$|')")
_THROTTLED = {"TooManyRequests", "OperationNotAllowed429", "SubscriptionRequestsThrottled",
              "ResourceGroupRequestsThrottled", "TenantRequestsThrottled"}
_CONFLICT = {"Conflict", "OperationNotAllowed", "PropertyChangeNotAllowed", "InUseSubnetCannotBeDeleted",
             "AnotherOperationInProgress"}


def required_role(action: str) -> str:
    """The built-in role that holds ``action`` (e.g. ``Microsoft.Network/loadBalancers/read``)."""
    return ROLES.get(action.split("/", 1)[0], "Contributor")


def retry_after(exc: BaseException, now: float) -> float | None:
    """Seconds a throttled answer asked us to wait (``Retry-After``: seconds or an HTTP date)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = headers.get("Retry-After") or headers.get("x-ms-retry-after-ms")
    if value is None:
        return None
    value = str(value).strip()
    if headers.get("Retry-After") is None:
        try:
            return max(float(value) / 1000.0, 0.0)
        except ValueError:
            return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(parsed.timestamp() - now, 0.0) if parsed else None


def map_error(exc: BaseException, *, call: str, account: str, region: str, scope: str) -> errors.ProviderError:
    """An SDK failure as the project's exception, naming the ARM error code, the call and the scope."""
    if isinstance(exc, errors.ProviderError):
        return exc
    kw = {"provider": NAME, "call": call, "account": account, "region": region}
    if isinstance(exc, azexc.ClientAuthenticationError) and getattr(exc, "status_code", None) not in (403,):
        return errors.AccessDenied(f"credentials rejected ({scope}): {_first_line(exc)}",
                                   code="AuthenticationFailed", **kw)
    if isinstance(exc, azexc.HttpResponseError) and exc.status_code is not None:
        status = int(exc.status_code)
        code = (exc.error.code if exc.error is not None and exc.error.code else "") or str(status)
        message = exc.error.message if exc.error is not None and exc.error.message else _first_line(exc)
        text = f"HTTP {status} ({scope}): {message}"
        if status == 429 or code in _THROTTLED:
            return errors.Throttled(text, code=code, **kw)
        if status == 403:
            found = _ACTION_RE.search(message or "")
            if found:
                action = found.group(1)
                need = f"permission {action} (role {required_role(action)})"
            else:
                need = "permission for this call (roles Virtual Machine Contributor and Network Contributor)"
            return errors.AccessDenied(f"{text} (the identity lacks {need} on {scope})", code=code, **kw)
        if status == 404:
            return errors.NotFound(text, code=code, **kw)
        if status in (409, 412) or code in _CONFLICT:
            return errors.Conflict(text, code=code, **kw)
        if status >= 500:
            return errors.Unavailable(text, code=code, **kw)
        return errors.ProviderError(text, code=code, **kw)
    if isinstance(exc, azexc.ServiceRequestError | azexc.ServiceResponseError):
        return errors.Unavailable(f"{type(exc).__name__}: {_first_line(exc)} ({scope})", code="connection", **kw)
    if type(exc).__module__.startswith("azure.identity") or isinstance(exc, azexc.ClientAuthenticationError):
        return errors.AccessDenied(f"credentials: {_first_line(exc)} ({scope})", code=type(exc).__name__, **kw)
    if isinstance(exc, azexc.AzureError):
        return errors.ProviderError(f"{type(exc).__name__}: {_first_line(exc)} ({scope})",
                                    code=type(exc).__name__, **kw)
    raise exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class ClockPolling(ARMPolling):
    """The SDK's ARM poller (``Azure-AsyncOperation``, ``Location`` or ``provisioningState``), sleeping
    on the reconciler's clock and giving up after ``timeout_s`` of it.

    ``Retry-After`` on an answer sets the delay, as the SDK reads it; without one, ``interval_s``.
    """

    def __init__(self, clock: clock_mod.Clock, interval_s: float, timeout_s: float, endpoint: str,
                 describe: str, where: dict[str, str]) -> None:
        super().__init__(interval_s, path_format_arguments={"endpoint": endpoint})
        self._clock = clock
        self._deadline = clock.now() + timeout_s
        self._timeout_s = timeout_s
        self._describe = describe
        self._where = where
        self.polls = 0

    def _sleep(self, delay: float) -> None:
        if self._clock.now() + delay > self._deadline:
            raise errors.Unavailable(f"{self._describe} not finished after {self._timeout_s:.0f}s",
                                     code=TIMEOUT, **self._where)
        self._clock.sleep(delay)

    def update_status(self) -> None:
        self.polls += 1
        super().update_status()


# --------------------------------------------------------------------------- IDs and names


def rid(subscription: str, group: str, provider: str, *parts: str) -> str:
    """An ARM resource ID in ``group`` of ``subscription``."""
    return f"/subscriptions/{subscription}/resourceGroups/{group}/providers/{provider}/" + "/".join(parts)


def last(resource_id: str) -> str:
    return resource_id.rstrip("/").rsplit("/", 1)[-1]


def segment(resource_id: str, kind: str) -> str:
    """The name after ``kind`` in a resource ID (``loadBalancers`` -> the balancer's name)."""
    parts = resource_id.split("/")
    for i, part in enumerate(parts[:-1]):
        if part.lower() == kind.lower():
            return parts[i + 1]
    return ""


def image_reference(image: str) -> dict[str, Any]:
    """A spec's ``image`` as an ``imageReference``: a gallery image (version) ID, a managed image ID,
    or a marketplace ``publisher:offer:sku:version``. ``ValueError`` for anything else."""
    if image.startswith("/subscriptions/") and ("/galleries/" in image or "/images/" in image):
        return {"id": image}
    parts = image.split(":")
    if len(parts) == 4 and all(parts):
        return {"publisher": parts[0], "offer": parts[1], "sku": parts[2], "version": parts[3]}
    raise ValueError(f"image {image!r}: expected a gallery image version ID (/subscriptions/…/galleries/…), "
                     "a managed image ID (/subscriptions/…/images/…) or a marketplace publisher:offer:sku:version")


def image_of(ref: Any) -> str:
    """The spec's form of an ``imageReference`` read back from a scale set."""
    if ref is None:
        return ""
    if ref.get("id"):
        return str(ref["id"])
    return ":".join(str(ref.get(k) or "") for k in ("publisher", "offer", "sku", "version"))

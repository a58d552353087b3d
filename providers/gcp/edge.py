"""The GCP provider's edge: error mapping, rate limiting and the GCE label and URL rules.

Nothing here calls the API; ``map_error`` is the one place a client failure becomes a
``reconciler.core.errors`` exception.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

import google.api_core.exceptions as gexc
from google.auth import exceptions as gauth_exc

from reconciler.core import errors

NAME = "gcp"
IN_USE = "resourceInUseByAnotherResource"
ROLES = "roles/compute.instanceAdmin.v1 and roles/compute.loadBalancerAdmin"

_PERMISSION_RE = re.compile(r"compute\.[a-zA-Z]+\.[a-zA-Z]+")
_LABEL_RE = re.compile(r"[^a-z0-9_-]")


def label_value(value: str) -> str:
    """A GCE label value: lowercase ``[a-z0-9_-]``, at most 63 characters.

    A value that does not fit as it is gets shortened and suffixed with a hash, so two
    distinct values never collapse into one label.
    """
    clean = _LABEL_RE.sub("-", value.lower())
    if len(clean) <= 63 and clean == value.lower():
        return clean
    digest = hashlib.sha256(value.encode()).hexdigest()[:10]
    return f"{clean[:52]}-{digest}"


def label_key(key: str) -> str:
    """A GCE label key: like a value, but it must start with a lowercase letter."""
    clean = label_value(key)
    return clean if clean[:1].isalpha() else f"k{clean}"[:63]


def rel(url: str) -> str:
    """``projects/P/...`` whether the API returned a full URL or a relative one."""
    idx = url.find("projects/")
    return url[idx:] if idx >= 0 else url


def last(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def timestamp(text: str) -> float:
    try:
        return datetime.fromisoformat(text).timestamp() if text else 0.0
    except ValueError:
        return 0.0


def map_error(exc: BaseException, *, method: str, project: str, region: str,
              account: str) -> errors.ProviderError:
    """Turn a client failure into the project's exception tree, naming status, method, project, region."""
    if isinstance(exc, errors.ProviderError):
        return exc
    where = f"project {project}"
    kw = {"provider": NAME, "call": method, "account": account, "region": region}
    if isinstance(exc, gexc.GoogleAPICallError) and exc.code is not None:
        status = int(exc.code)
        reason = ""
        if exc.errors and isinstance(exc.errors[0], dict):
            reason = str(exc.errors[0].get("reason", ""))
        message = f"HTTP {status} ({where}): {exc.message}"
        code = reason or str(status)
        if status == 429:
            return errors.Throttled(message, code=code, **kw)
        if status == 403:
            found = _PERMISSION_RE.search(str(exc.message))
            need = f"permission {found.group(0)}" if found else "permission for this call"
            return errors.AccessDenied(f"{message} (the service account lacks {need}; grant {ROLES})",
                                       code=code, **kw)
        if status == 404:
            return errors.NotFound(message, code=code, **kw)
        if status in (409, 412) or reason == IN_USE:
            return errors.Conflict(message, code=code, **kw)
        if status >= 500:
            return errors.Unavailable(message, code=code, **kw)
        return errors.ProviderError(message, code=code, **kw)
    if isinstance(exc, gexc.RetryError | gexc.GoogleAPIError):
        return errors.Unavailable(f"{type(exc).__name__}: {exc} ({where})", code=type(exc).__name__, **kw)
    if isinstance(exc, gauth_exc.GoogleAuthError):
        return errors.ProviderError(f"credentials: {exc} ({where})", code=type(exc).__name__, **kw)
    if isinstance(exc, ConnectionError | OSError) or type(exc).__module__.startswith(("requests", "urllib3")):
        return errors.Unavailable(f"{type(exc).__name__}: {exc} ({where})", code="connection", **kw)
    raise exc

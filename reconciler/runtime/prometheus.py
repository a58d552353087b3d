"""Reading canary metrics from Prometheus' HTTP API (``/api/v1/query_range``).

Every failure names the server, the query and the answer received (a PromQL error, an HTTP status, a
refused connection, no answer within the timeout); the analysis counts it as a failed metric, never a pass.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from reconciler.config import settings as config_mod
from reconciler.core import durations, errors

MAX_ANSWER = 300
"""Characters of an unexpected answer kept in the message."""


class QueryFailed(errors.ReconcilerError):
    """The query got no usable answer."""


def query_range(settings: config_mod.PrometheusSettings, query: str, start: float, end: float,
                step: float) -> tuple[float, ...]:
    """The values of the one series ``query`` returns over [start, end]; () when it returns none."""
    where = f"prometheus {settings.url}: query {query!r}"
    params = urllib.parse.urlencode({"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                     "step": f"{step:.3f}"})
    req = urllib.request.Request(f"{settings.url}/api/v1/query_range?{params}",  # noqa: S310 - http(s), checked
                                 headers=_headers(settings, where))
    try:
        with urllib.request.urlopen(req, timeout=settings.timeout_s) as resp:  # noqa: S310 - the config's URL
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(exc, TimeoutError) or isinstance(reason, TimeoutError):
            raise QueryFailed(f"{where}: no answer within {durations.format_seconds(settings.timeout_s)}") from exc
        raise QueryFailed(f"{where}: no answer: {reason}") from exc
    text = body.decode("utf-8", "replace")
    try:
        doc: Any = json.loads(text)
    except ValueError:
        raise QueryFailed(f"{where}: HTTP {status}: not a Prometheus answer: {_short(text)}") from None
    if not isinstance(doc, dict) or doc.get("status") != "success":
        err = doc.get("error") if isinstance(doc, dict) else None
        kind = doc.get("errorType") if isinstance(doc, dict) else None
        raise QueryFailed(f"{where}: HTTP {status}: {kind or 'error'}: {err or _short(text)}")
    result = (doc.get("data") or {}).get("result")
    if not isinstance(result, list):
        raise QueryFailed(f"{where}: HTTP {status}: no result list in {_short(text)}")
    if len(result) > 1:
        labels = ", ".join(json.dumps(r.get("metric", {}), sort_keys=True) for r in result[:3])
        raise QueryFailed(f"{where}: returned {len(result)} series ({labels}...); aggregate it to one, "
                          f"e.g. sum(...) or avg(...)")
    if not result:
        return ()
    try:
        return tuple(float(v) for _, v in result[0].get("values", ()))
    except (TypeError, ValueError) as exc:
        raise QueryFailed(f"{where}: unreadable values: {_short(json.dumps(result[0]))}") from exc


def _headers(settings: config_mod.PrometheusSettings, where: str) -> dict[str, str]:
    headers = {"User-Agent": "reconciler", "Accept": "application/json"}
    try:
        if settings.token_file is not None:
            headers["Authorization"] = "Bearer " + settings.token_file.read_text(encoding="utf-8").strip()
        elif settings.password_file is not None:
            pair = f"{settings.username}:{settings.password_file.read_text(encoding='utf-8').strip()}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    except OSError as exc:
        raise QueryFailed(f"{where}: cannot read the credentials file: {exc.strerror} ({exc.filename})") from exc
    return headers


def _short(text: str) -> str:
    return " ".join(text.split())[:MAX_ANSWER]

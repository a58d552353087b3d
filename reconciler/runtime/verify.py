"""Verification hooks: ask a configured endpoint whether a deployment may go on (Spinnaker's monitored deploys).

The executor POSTs a JSON description of the deployment and reads the status: 2xx passes; 4xx, 5xx, a
refused connection or no answer within the endpoint's timeout fails, with the endpoint, its URL and the
answer in the message. Nothing here passes by default.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from reconciler.config import settings as config_mod
from reconciler.core import durations, errors, model

MAX_ANSWER = 500
"""Characters of an answer's body kept in the failure message."""


class VerificationFailed(errors.ReconcilerError):
    """The endpoint said no, or did not answer: the deployment fails (and rolls back) as a failed health wait."""


def payload(change: model.Change, step: model.Step) -> dict[str, Any]:
    """What the endpoint receives: enough to find the new group and what it replaces."""
    spec = change.desired
    return {
        "endpoint": step.reason,
        "application": change.application,
        "cluster": change.cluster,
        "provider": change.provider,
        "account": change.account,
        "region": change.region,
        "server_group": step.server_group,
        "previous_server_group": change.current.name if change.current else None,
        "commit": change.commit,
        "spec_hash": change.spec_hash,
        "image": spec.launch.image if spec else None,
        "strategy": spec.strategy.type.value if spec else None,
        "percent": step.percent or 100,
    }


def ask(endpoints: Mapping[str, config_mod.VerifyEndpoint], change: model.Change, step: model.Step) -> None:
    """Ask the endpoint named by ``step.reason``; return on 2xx, raise ``VerificationFailed`` otherwise."""
    endpoint = endpoints.get(step.reason)
    if endpoint is None:
        raise VerificationFailed(f"verify {step.reason}: no such endpoint in the config's verify.endpoints "
                                 f"(configured: {', '.join(sorted(endpoints)) or 'none'})")
    headers = {"Content-Type": "application/json", "User-Agent": "reconciler"}
    if endpoint.token_file is not None:
        try:
            headers["Authorization"] = "Bearer " + endpoint.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise VerificationFailed(f"verify {endpoint.name}: cannot read token_file {endpoint.token_file}: "
                                     f"{exc.strerror}") from exc
    body = json.dumps(payload(change, step), sort_keys=True).encode()
    req = urllib.request.Request(endpoint.url, data=body, headers=headers, method="POST")  # noqa: S310
    where = f"verify {endpoint.name} ({endpoint.url})"
    try:
        with urllib.request.urlopen(req, timeout=endpoint.timeout_s) as resp:  # noqa: S310 - the config's URL
            status, text = resp.status, resp.read(MAX_ANSWER).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read(MAX_ANSWER).decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:  # TimeoutError is an OSError; urllib may wrap it
        reason = getattr(exc, "reason", exc)
        if isinstance(exc, TimeoutError) or isinstance(reason, TimeoutError):
            raise VerificationFailed(f"{where}: no answer within {durations.format_seconds(endpoint.timeout_s)}"
                                     ) from exc
        raise VerificationFailed(f"{where}: no answer: {reason}") from exc
    if 200 <= status < 300:
        return
    verdict = "rejected the deployment" if 400 <= status < 500 else "failed"
    raise VerificationFailed(f"{where} {verdict}: HTTP {status}: {' '.join(text.split())[:MAX_ANSWER]}")

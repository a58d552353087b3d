"""``--server URL``: the CLI acting through a running daemon's ``/api/v1/`` instead of the local state.

The token comes from ``--token-file`` (or ``$RECONCILER_TOKEN_FILE``) or from
``$RECONCILER_TOKEN``; the daemon records the token's name as who acted. Every
refusal is the daemon's own message, prefixed with the server, and exits 1.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from reconciler.core import errors

ENV_SERVER = "RECONCILER_SERVER"
ENV_TOKEN = "RECONCILER_TOKEN"  # noqa: S105 - the variable's name
ENV_TOKEN_FILE = "RECONCILER_TOKEN_FILE"  # noqa: S105 - the variable's name
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


class Client:
    def __init__(self, server: str, token: str | None, *, timeout: float = 60.0) -> None:
        parts = urllib.parse.urlsplit(server)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise errors.ReconcilerError(f"--server {server!r}: expected http://HOST:PORT or https://HOST:PORT")
        if parts.scheme == "http" and parts.hostname not in _LOOPBACK and token:
            print(f"warning: sending the token to {parts.netloc} over plain HTTP; use https:// (a TLS proxy in "
                  "front of the daemon) beyond this host", file=sys.stderr)
        self.base = server.rstrip("/")
        self.token = token
        self.timeout = timeout

    def get(self, path: str, **query: Any) -> Any:
        args = {k: str(v) for k, v in query.items() if v is not None}
        return self._call("GET", path + (f"?{urllib.parse.urlencode(args)}" if args else ""), None)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._call("POST", path, json.dumps(body or {}).encode())

    def _call(self, method: str, path: str, data: bytes | None) -> Any:
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.base + path, data=data, method=method,  # noqa: S310 - http(s) only
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - http(s) only
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            with exc:
                text = exc.read().decode("utf-8", "replace")
            try:
                message = str(json.loads(text).get("error") or text)
            except (ValueError, AttributeError):
                message = text.strip()[:300] or exc.reason
            raise errors.ReconcilerError(f"{self.base}: {exc.code}: {message}") from None
        except urllib.error.URLError as exc:
            raise errors.ReconcilerError(f"cannot reach the daemon at {self.base}: {exc.reason}") from None
        except (OSError, ValueError) as exc:
            raise errors.ReconcilerError(f"{self.base}: {method} {path.split('?', 1)[0]} failed: {exc}") from None


def client(args: Any) -> Client:
    """The client for ``--server``, with the token from ``--token-file``, ``$RECONCILER_TOKEN_FILE`` or
    ``$RECONCILER_TOKEN`` (none: only a daemon with ``http.public_read`` answers reads)."""
    token_file = getattr(args, "token_file", None) or os.environ.get(ENV_TOKEN_FILE)
    token: str | None = os.environ.get(ENV_TOKEN)
    if token_file:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise errors.ReconcilerError(f"--token-file {token_file}: cannot read it: {why}") from None
    return Client(args.server, token or None)


def refuse_local_only(args: Any, *flags: str) -> None:
    """Flags that need the local repository or state make no sense through a daemon."""
    given = [f for f in flags if getattr(args, f.lstrip("-").replace("-", "_"), None)]
    if given:
        raise errors.ReconcilerError(f"{', '.join(given)} cannot be used with --server (the daemon plans its "
                                     "tracked branch and records the token's name)")


def plan(args: Any) -> int:
    """``plan --server``: the daemon's plan for its tracked branch; exit 0 none, 2 changes, 1 error."""
    refuse_local_only(args, "--repo", "--ref", "--base")
    if args.format == "json" and args.out:
        raise errors.ReconcilerError("--out with --format json writes a saved plan, which needs the local "
                                     "state; without --server, or print the JSON and redirect it")
    doc = client(args).get("/api/v1/plan", format=args.format, max_comment_chars=args.max_comment_chars)
    plan_doc = doc.get("plan") or {}
    if args.format == "json":
        text = json.dumps(plan_doc, indent=2, sort_keys=True)
    elif args.format == "markdown":
        text = "\n\n".join(doc.get("markdown") or [])
    else:
        text = str(doc.get("text") or "")
    if args.out:
        Path(args.out).write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    for u in doc.get("unreadable") or ():
        print(f"error: live state of {u['provider']}/{u['account']}/{u['region']} could not be read, its "
              f"clusters were not planned: {u['error']}", file=sys.stderr)
    if plan_doc.get("problems"):
        print(f"{len(plan_doc['problems'])} spec problem(s); the other applications were planned", file=sys.stderr)
        return 1
    if doc.get("unreadable"):
        return 1
    return 2 if plan_doc.get("changes") else 0

"""The history as a stream: ``GET /api/v1/events`` (server-sent events) and ``reconciler events``.

Both read the ``events`` table by id, oldest first, so a client that saw
event N asks for what came after N (``Last-Event-ID``, sent by every
EventSource on reconnect, or ``--after N``) and misses nothing across
restarts of either side.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from reconciler.core import errors
from reconciler.state import store as store_mod

MAX_STREAMS = 2  # each open stream holds one of the HTTP server's threads
POLL_S = 0.5
KEEPALIVE_S = 10.0  # a comment line this often: proxies keep the connection, a gone client is noticed
BATCH = 200
_slots = threading.BoundedSemaphore(MAX_STREAMS)


def event_doc(row: Mapping[str, Any]) -> dict[str, Any]:
    """One history event as tools see it (``--format json``, the SSE ``data:`` line)."""
    keys = ("id", "ts", "kind", "application", "cluster", "region", "commit", "execution_id", "message", "detail")
    doc = {k: row.get(k) for k in keys}
    doc["time"] = datetime.fromtimestamp(float(row["ts"]), UTC).isoformat().replace("+00:00", "Z")
    return doc


def sse(row: Mapping[str, Any]) -> bytes:
    data = json.dumps(event_doc(row), sort_keys=True, default=str)
    return f"id: {row['id']}\nevent: {row['kind']}\ndata: {data}\n\n".encode()


def follow(store: store_mod.Store, after: int, *, application: str | None = None, kinds: Sequence[str] = (),
           poll_s: float = POLL_S, stop: threading.Event | None = None) -> Iterator[list[dict[str, Any]]]:
    """Batches of new events after ``after``, forever (an empty batch every ``poll_s`` when nothing happens)."""
    while stop is None or not stop.is_set():
        rows = store.events_after(after, limit=BATCH, application=application, kinds=kinds)
        if rows:
            after = int(rows[-1]["id"])
        yield rows
        if len(rows) < BATCH:
            if stop is not None:
                stop.wait(poll_s)
            else:
                time.sleep(poll_s)


def start_id(store: store_mod.Store, request: Request) -> int:
    """Resume after ``Last-Event-ID`` (or ``?after=``); without one, start with what happens next."""
    given = request.headers.get("Last-Event-ID") or request.args.get("after")
    if given is not None:
        try:
            return max(int(given), 0)
        except ValueError:
            pass
    return store.last_event_id()


def response(store: store_mod.Store, request: Request, *,
             visible: Callable[[str], bool] = lambda _app: True) -> Response:
    """``text/event-stream`` of the history, filtered by ``?application=`` and ``?kind=`` (repeatable).

    ``visible(application)`` says whether the caller may read an application's events (its token's
    scopes); events of no application (commits, source errors, freezes) are the caller's to judge too.
    """
    if request.method == "HEAD":  # no body to stream: answer at once rather than hold a thread
        return Response(status=200, mimetype="text/event-stream")
    application = request.args.get("application") or None
    kinds = request.args.getlist("kind")
    after = start_id(store, request)
    gone: Callable[[], bool] = request.environ.get("waitress.client_disconnected") or (lambda: False)
    if not _slots.acquire(timeout=2 * POLL_S):  # a stream whose client just left frees its slot within POLL_S
        return Response(json.dumps({"error": f"at most {MAX_STREAMS} event streams at once; retry later"}),
                        status=503, mimetype="application/json", headers={"Retry-After": "5"})

    def body() -> Iterator[bytes]:
        try:
            yield b"retry: 2000\n\n"
            quiet_since = time.monotonic()
            for rows in follow(store, after, application=application, kinds=kinds):
                if gone():
                    return
                for row in rows:
                    if visible(str(row.get("application") or "")):
                        yield sse(row)
                if rows:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since >= KEEPALIVE_S:
                    quiet_since = time.monotonic()
                    yield b": keepalive\n\n"
        except errors.StoreError:
            return  # the daemon is stopping (store closed): the client reconnects with Last-Event-ID
        finally:
            _slots.release()

    return Response(body(), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

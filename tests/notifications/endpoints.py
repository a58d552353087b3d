"""Local HTTP endpoints on 127.0.0.1 that speak the shapes real services do, and record every request.

``Endpoint.answer`` decides each answer (status, body, headers), so a test
can make a service fail for a while, throttle, or hang until released.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # wait for Endpoint.release before answering


Script = Callable[["Endpoint", Seen], Answer]


def slack_ok(_ep: Endpoint, _req: Seen) -> Answer:
    return Answer(200, b"ok", {"Content-Type": "text/plain"})


def github_status(_ep: Endpoint, req: Seen) -> Answer:
    doc = req.json()
    body = {"id": 1, "state": doc["state"], "context": doc.get("context"), "description": doc.get("description"),
            "url": f"http://127.0.0.1{req.path}", "created_at": "2026-01-01T00:00:00Z"}
    return Answer(201, json.dumps(body).encode(), {"Content-Type": "application/json"})


def gitlab_status(_ep: Endpoint, req: Seen) -> Answer:
    doc = req.json()
    body = {"id": 1, "status": doc["state"], "name": doc.get("name"), "description": doc.get("description"),
            "sha": req.path.rsplit("/", 1)[-1]}
    return Answer(201, json.dumps(body).encode(), {"Content-Type": "application/json"})


class Endpoint:
    def __init__(self, script: Script = slack_ok) -> None:
        self.script = script
        self.seen: list[Seen] = []
        self.answered: list[tuple[Seen, int]] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                return None

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                req = Seen("POST", self.path, {k.lower(): v for k, v in self.headers.items()},
                           self.rfile.read(length))
                with endpoint._lock:
                    endpoint.seen.append(req)
                answer = endpoint.script(endpoint, req)
                if answer.hang:
                    endpoint.release.wait(60)
                with endpoint._lock:  # before the answer leaves: the client may look right after it
                    endpoint.answered.append((req, answer.status))
                self.send_response(answer.status)
                for k, v in {"Content-Length": str(len(answer.body)), **answer.headers}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(answer.body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), name="endpoint", daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def delivered(self) -> list[Seen]:
        """Requests answered with a 2xx, in the order they were answered."""
        with self._lock:
            return [req for req, status in self.answered if 200 <= status < 300]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[Callable[..., Endpoint]]:
    made: list[Endpoint] = []

    def make(script: Script = slack_ok) -> Endpoint:
        ep = Endpoint(script)
        made.append(ep)
        return ep

    yield make
    for ep in made:
        ep.close()


def fails_first(n: int, status: int = 503, headers: dict[str, str] | None = None,
                then: Script = slack_ok) -> Script:
    """Answer ``status`` to the first ``n`` requests, then as ``then`` does."""

    def script(ep: Endpoint, req: Seen) -> Answer:
        if len(ep.seen) <= n:
            return Answer(status, b"unavailable", headers or {})
        return then(ep, req)

    return script

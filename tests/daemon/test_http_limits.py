"""The HTTP endpoint against hostile clients: huge bodies are refused unread, malformed requests get a 4xx."""

from __future__ import annotations

import contextlib
import re
import select
import socket
from collections.abc import Callable
from pathlib import Path

from tests.daemon.conftest import Daemon, DaemonFactory

GIB = 1024**3
MIB = 1024**2


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _read_until(sock: socket.socket, done: Callable[[bytes], bool]) -> bytes:
    """What the server sent until ``done`` says it is enough, it closes, or the socket fails or times out."""
    sock.settimeout(10)
    data = b""
    with contextlib.suppress(ConnectionError, TimeoutError):
        while not done(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def _status_line(sock: socket.socket) -> str:
    return _read_until(sock, lambda data: b"\r\n" in data).split(b"\r\n", 1)[0].decode("latin-1")


def _whole(data: bytes) -> bool:
    """The head has ended and the body is as long as its Content-Length says (or it has none)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return length is None or len(body) >= int(length.group(1))


def _readable(sock: socket.socket) -> bool:
    """Whether the server has answered (poll, not select: the test process may hold more than 1024 fds)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _send_huge(d: Daemon, *, chunked: bool) -> tuple[str, int]:
    """POST a 1 GiB webhook body; stop sending as soon as the server answers or hangs up. (status, bytes sent)"""
    sent = 0
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as sock:
        framing = b"Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {GIB}\r\n".encode()
        sock.sendall(b"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Hub-Signature-256: sha256=" + b"0" * 64
                     + b"\r\n" + framing + b"\r\n")
        block = b"x" * MIB
        piece = f"{len(block):x}\r\n".encode() + block + b"\r\n" if chunked else block
        try:
            while sent < GIB:
                readable = _readable(sock)
                if readable:  # the answer came (or the connection closed): stop here
                    break
                sock.sendall(piece)
                sent += len(block)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return _status_line(sock), sent


def test_one_gib_bodies_are_refused_before_they_are_read_and_memory_stays_flat(
        daemon_factory: DaemonFactory, tmp_path: Path) -> None:
    d = daemon_factory(interval="1h").start(log_to=tmp_path / "daemon.log")
    d.wait_for(lambda: d.serving() == ["checkout-main-v000"], "the first pass")
    assert d.proc is not None
    before = _rss_kib(d.proc.pid)
    for _ in range(3):
        for chunked in (False, True):
            status, sent = _send_huge(d, chunked=chunked)
            assert status in ("HTTP/1.1 413 Request Entity Too Large", ""), status
            assert sent < 64 * MIB, f"the server read {sent // MIB} MiB before refusing"
    grown = _rss_kib(d.proc.pid) - before
    assert grown < 40 * 1024, f"RSS grew by {grown // 1024} MiB"
    assert d.get("/healthz")[0] == 200
    # a body under the limit is still read and judged
    assert d.post("/webhook", b"{}" * 1000, {"X-Hub-Signature-256": "sha256=" + "0" * 64})[0] == 401
    assert d.stop() == 0


def _raw(d: Daemon, request: bytes) -> str:
    """The status line of the answer to ``request``, read whole before the socket closes: closing while the
    server still writes makes waitress log an error of its own (it cannot name a request it did not parse)."""
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as sock:
        sock.sendall(request)
        return _read_until(sock, _whole).split(b"\r\n", 1)[0].decode("latin-1")


def test_malformed_requests_get_a_4xx_and_no_traceback(daemon_factory: DaemonFactory, tmp_path: Path) -> None:
    d = daemon_factory(interval="1h").start(log_to=tmp_path / "daemon.log")
    d.wait_for(lambda: d.serving() == ["checkout-main-v000"], "the first pass")
    auth = f"Authorization: Bearer {d.token}\r\n".encode()

    def post(path: str, headers: bytes, body: bytes = b"") -> str:
        return _raw(d, f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n".encode()
                    + headers + b"\r\n" + body)

    assert post("/webhook", b"X-Hub-Signature-256: sha256=\xff\xfe\xc3\xa9\r\n").startswith("HTTP/1.1 400")
    assert post("/webhook", b"X-Hub-Signature-256: sha256=abc\r\n", b"{}").startswith("HTTP/1.1 400")
    assert post("/webhook", b"X-Gitea-Signature: \xff" * 3 + b"\r\n", b"{}").startswith("HTTP/1.1 400")
    assert post("/webhook", b"X-Gitlab-Token: \xe9t\xe9\r\n", b"{}").startswith("HTTP/1.1 401")
    assert post("/api/v1/reconcile", b"Authorization: Bearer \xff\xfe\r\n").startswith("HTTP/1.1 401")
    assert post("/api/v1/pause/checkout", auth, b"not json").startswith("HTTP/1.1 400")
    assert post("/api/v1/pause/checkout", auth, b"[" * 100_000).startswith("HTTP/1.1 400")
    assert post("/api/v1/pause/checkout", auth, b'["a list"]').startswith("HTTP/1.1 400")
    assert post("/api/v1/pause/chekout", auth, b"{}").startswith("HTTP/1.1 409")
    assert _raw(d, b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n\r\n").startswith("HTTP/1.1 400")
    assert _raw(d, b"POST /webhook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n"
                ).startswith("HTTP/1.1 400")
    assert _raw(d, b"GET /api/v1/status\xff HTTP/1.1\r\nHost: x\r\n\r\n").startswith("HTTP/1.1 4")
    assert d.get("/healthz")[0] == 200
    assert d.stop() == 0
    assert "Traceback" not in d.log and '"level": "error"' not in d.log, d.log

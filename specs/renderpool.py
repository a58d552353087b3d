"""Rendering templates in a small pool of worker processes whose CPU time and memory are limited.

A template is a program: ``{% for %}`` loops can spin for hours and filters can
allocate gigabytes before any output exists. No check inside the interpreter
can stop every such case, so each file is rendered in a worker process:

* the worker arms a CPU-time alarm (``ITIMER_PROF``) of ``render_timeout`` per
  file, which stops pure-Python loops with the template line they were on;
* its address space is limited (``RLIMIT_AS``) to its own size plus
  ``render_memory``, so an allocation past the limit fails with MemoryError;
* the parent gives each file twice ``render_timeout`` plus one second of wall
  time and then kills the worker (``SIGKILL``) and starts another: that also
  covers a worker stuck inside one long C call;
* ``RLIMIT_CPU`` ends a worker that spins on with no parent left.

Workers start once and serve every later pass (the start cost, an interpreter
plus Jinja2, is paid once per process). Files without template markers never
reach a worker. Every outcome is a value: a problem that names the file and
the limit, never an exception.

Why it is this long: the parent side (the pool, deadlines, restarts) and the worker side (``worker_main`` and
its limits) speak one small protocol over a pipe, and keeping both halves in one module keeps that protocol in
one place.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import logging
import math
import os
import pickle
import resource
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing import connection
from pathlib import Path
from types import FrameType
from typing import Any

from reconciler.core import errors
from specs import limits as limits_mod
from specs import sandbox

__all__ = ["Job", "Outcome", "RenderPool", "shared", "worker_main"]

log = logging.getLogger(__name__)

_START_TIMEOUT_S = 60.0
"""A worker that has not said hello by then is killed (an interpreter start takes well under a second)."""
_PIPELINE_BYTES = 64 * 1024
"""Jobs queued to a busy worker stay below this, so a send never blocks on a stuck worker's full socket."""
_PIPELINE_JOBS = 4
_MAX_REPLY = 8 * limits_mod.MAX_RENDERED_CHARS
_ROOT = str(Path(__file__).resolve().parent.parent)
_BOOT = f"import sys; sys.path.insert(0, {_ROOT!r}); from specs import renderpool; renderpool.worker_main(sys.argv[1:])"


@dataclass(frozen=True, slots=True)
class Job:
    """One template to render; ``values`` travels to a worker only when its ``values_id`` is new there."""

    path: str
    text: str
    values_id: str
    values: Mapping[str, Any]
    values_ok: bool = True


@dataclass(frozen=True, slots=True)
class Outcome:
    """Rendered text, or the file's problem. ``lasting`` is False when the cause was not the file
    (the pool was shut down or a worker could not start): such results must not be cached."""

    text: str | None
    problem: errors.SpecProblem | None
    lasting: bool = True


@dataclass(eq=False)
class _Worker:
    proc: subprocess.Popen[bytes]
    conn: connection.Connection
    started: float
    ready: bool = False
    values_id: str | None = None
    inflight: collections.deque[tuple[int, int]] = field(default_factory=collections.deque)  # (job, bytes)
    head_since: float = 0.0  # when the job at the head of ``inflight`` started, at the latest

    def queued_bytes(self) -> int:
        return sum(size for _, size in self.inflight)


class RenderPool:
    """Up to ``workers`` rendering processes for one set of limits; thread-safe, one batch at a time."""

    def __init__(self, limits: limits_mod.SpecLimits | None = None, *, workers: int | None = None) -> None:
        self.limits = limits or limits_mod.SpecLimits()
        self.size = max(1, workers if workers is not None else min(2, os.cpu_count() or 1))
        self.starts = 0
        """Worker processes started so far (tests assert that passes reuse them)."""
        self.kills = 0
        """Workers killed for running past the wall-time limit."""
        self.peak_rss_bytes = 0
        """The largest resident size any stopped worker reached (``peak_rss()`` includes the live ones)."""
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False
        self._warned = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def wall_limit_s(self) -> float:
        return 2 * self.limits.render_timeout_s + 1.0

    def pids(self) -> list[int]:
        """Process ids of the live workers."""
        return [w.proc.pid for w in list(self._workers) if w.proc.poll() is None]

    # ------------------------------------------------------------------ rendering

    def render(self, jobs: Sequence[Job]) -> Iterator[tuple[int, Outcome]]:
        """(index into ``jobs``, outcome) for every job, in the order they finish."""
        with self._lock:
            yield from self._render(jobs)

    def _render(self, jobs: Sequence[Job]) -> Iterator[tuple[int, Outcome]]:
        pending = collections.deque(range(len(jobs)))
        start_failures: list[str] = []
        while pending or any(w.inflight for w in self._workers):
            if self._closed or len(start_failures) >= 3:
                why = ("the template renderer was shut down" if self._closed
                       else f"cannot start a template renderer ({start_failures[-1]})")
                for w in self._workers:
                    pending.extendleft(reversed([i for i, _ in w.inflight]))
                    w.inflight.clear()
                while pending:
                    i = pending.popleft()
                    yield i, Outcome(None, errors.SpecProblem(jobs[i].path, 1, "", why), lasting=False)
                return
            while pending and len(self._workers) < self.size:
                try:
                    self._workers.append(self._start())
                except OSError as exc:
                    log.error("cannot start a template rendering worker: %s", exc)
                    start_failures.append(str(exc))
                    break
            for w in list(self._workers):
                if not self._feed(w, jobs, pending):  # a send that cannot complete: the worker is stuck
                    self._workers.remove(w)
                    self._stop(w)
            deadlines = [self._deadline(w) for w in self._workers if w.inflight or not w.ready]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else 0.05
            ready = connection.wait([w.conn for w in self._workers], timeout)
            for w in list(self._workers):
                if w.conn in ready:
                    try:
                        reply = w.conn.recv_bytes(_MAX_REPLY)
                    except (EOFError, OSError):
                        reply = None
                    try:
                        result = self._reply(w, jobs, reply) if reply is not None else None
                    except (ValueError, TypeError, KeyError, IndexError):  # not our protocol: treat as dead
                        log.error("a template rendering worker sent something unexpected; it is replaced")
                        reply = None
                    if reply is not None:
                        if result is not None:
                            yield result
                        continue
                elif not ((w.inflight or not w.ready) and self._deadline(w) <= time.monotonic()):
                    continue
                if not w.ready:
                    start_failures.append(f"exit status {w.proc.poll()}")
                yield from self._lost(w, jobs, pending, killed=w.conn not in ready)

    def _deadline(self, w: _Worker) -> float:
        if not w.ready:
            return w.started + _START_TIMEOUT_S
        return w.head_since + self.wall_limit_s

    def _feed(self, w: _Worker, jobs: Sequence[Job], pending: collections.deque[int]) -> bool:
        """Queue jobs to ``w``; False when a send timed out (the socket is unusable now)."""
        while w.ready and pending and len(w.inflight) < _PIPELINE_JOBS:
            job = jobs[pending[0]]
            values = dict(job.values) if job.values_id != w.values_id else None
            payload = pickle.dumps((job.path, job.text, job.values_id, values, job.values_ok),
                                   protocol=pickle.HIGHEST_PROTOCOL)
            if w.inflight and w.queued_bytes() + len(payload) > _PIPELINE_BYTES:
                return True
            try:
                w.conn.send_bytes(payload)
            except BlockingIOError:
                log.error("a template rendering worker stopped reading its requests; it is replaced")
                return False
            except OSError:
                return True  # it died; its end of the socket says so at the next wait
            if not w.inflight:
                w.head_since = time.monotonic()
            w.inflight.append((pending.popleft(), len(payload)))
            w.values_id = job.values_id
        return True

    def _reply(self, w: _Worker, jobs: Sequence[Job], reply: bytes) -> tuple[int, Outcome] | None:
        message = json.loads(reply)
        if "hello" in message:
            w.ready = True
            if message.get("unlimited") and not self._warned:
                self._warned = True
                log.warning("template rendering workers could not set %s (%s); the wall-clock limit still applies",
                            ", ".join(message["unlimited"]), message.get("why", ""))
            return None
        index, _ = w.inflight.popleft()
        w.head_since = time.monotonic()
        path = jobs[index].path
        if message.get("text") is not None:
            return index, Outcome(str(message["text"]), None)
        return index, Outcome(None, errors.SpecProblem(path, int(message.get("line") or 1), "",
                                                       str(message.get("message") or "template error")))

    def _lost(self, w: _Worker, jobs: Sequence[Job], pending: collections.deque[int], *,
              killed: bool) -> Iterator[tuple[int, Outcome]]:
        """A worker ran past its deadline (kill it) or died: its current job is the file's problem, the
        jobs queued behind it go back to the front of the queue."""
        self._workers.remove(w)
        self._stop(w)
        if self._closed:
            pending.extendleft(reversed([i for i, _ in w.inflight]))
            return
        if not w.ready:
            log.error("a template rendering worker did not start (exit status %s)", w.proc.returncode)
            return
        if not w.inflight:
            return
        (index, _), rest = w.inflight[0], [i for i, _ in list(w.inflight)[1:]]
        pending.extendleft(reversed(rest))
        path = jobs[index].path
        if killed:
            self.kills += 1
            log.warning("%s: rendering ran past %.1fs of wall time; its worker was killed", path,
                        self.wall_limit_s)
            message = (f"template rendering took longer than {self.limits.render_timeout_s:g}s "
                       f"(specs.render_timeout); it was stopped")
        else:
            code = w.proc.returncode
            if code == -signal.SIGXCPU:
                message = (f"template rendering took longer than {self.limits.render_timeout_s:g}s "
                           f"(specs.render_timeout); it was stopped")
            else:
                how = f"signal {-code}" if code is not None and code < 0 else f"exit status {code}"
                message = (f"the template renderer stopped while rendering this file ({how}; "
                           f"specs.render_memory is {limits_mod.format_size(self.limits.render_memory_bytes)})")
        yield index, Outcome(None, errors.SpecProblem(path, 1, "", message))

    # ------------------------------------------------------------------ processes

    def _start(self) -> _Worker:
        parent, child = socket.socketpair()
        # A send to a worker that stopped reading fails after this long instead of blocking the pass.
        parent.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                          struct.pack("ll", int(self.wall_limit_s), int(self.wall_limit_s % 1 * 1e6)))
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(child.fileno()), repr(self.limits.render_timeout_s),
                 str(self.limits.render_memory_bytes)],
                pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True, env=_worker_env(),
            )
        except OSError:
            parent.close()
            raise
        finally:
            child.close()
        self.starts += 1
        return _Worker(proc=proc, conn=connection.Connection(parent.detach()), started=time.monotonic())

    def peak_rss(self) -> int:
        """The largest resident size, in bytes, any worker of this pool reached so far."""
        return max([self.peak_rss_bytes, *(_peak_rss(pid) for pid in self.pids())])

    def _stop(self, w: _Worker) -> None:
        self.peak_rss_bytes = max(self.peak_rss_bytes, _peak_rss(w.proc.pid))
        with contextlib.suppress(OSError):
            w.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            w.proc.wait(timeout=10)
        with contextlib.suppress(OSError):
            w.conn.close()

    def close(self) -> None:
        """Kill every worker now, even one in the middle of a file; later renders report a shut-down pool."""
        self._closed = True
        for w in list(self._workers):
            self.peak_rss_bytes = max(self.peak_rss_bytes, _peak_rss(w.proc.pid))
            with contextlib.suppress(OSError):
                w.proc.kill()
        if self._lock.acquire(timeout=10):
            try:
                for w in self._workers:
                    self._stop(w)
                self._workers.clear()
            finally:
                self._lock.release()

    def __enter__(self) -> RenderPool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _worker_env() -> dict[str, str]:
    """What a worker needs to start Python: no tokens or credentials from the daemon's environment."""
    keep = ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "LC_CTYPE", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if k in keep or k.startswith("PYTHON")}


def _peak_rss(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


_shared_lock = threading.Lock()
_shared: RenderPool | None = None


def shared(limits: limits_mod.SpecLimits) -> RenderPool:
    """A process-wide pool for callers that do not bring their own (``validate``, tests); closed at exit."""
    global _shared  # noqa: PLW0603 - one pool of processes per process, on purpose
    with _shared_lock:
        if _shared is None or _shared.limits != limits or _shared.closed:
            if _shared is not None:
                _shared.close()
            _shared = RenderPool(limits)
        return _shared


@atexit.register
def _close_shared() -> None:
    if _shared is not None:
        _shared.close()


# ---------------------------------------------------------------------------- the worker process


def worker_main(argv: list[str]) -> None:
    """Serve render requests on the socket until the parent goes away."""
    fd, cpu_limit, memory = int(argv[0]), float(argv[1]), int(argv[2])
    conn = connection.Connection(fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    overtime = f"template rendering took longer than {cpu_limit:g}s (specs.render_timeout); it was stopped"

    def on_alarm(_signum: int, _frame: FrameType | None) -> None:
        raise sandbox.Interrupted(overtime)

    signal.signal(signal.SIGPROF, on_alarm)
    unlimited, why = _limit_self(memory)
    conn.send_bytes(json.dumps({"hello": os.getpid(), "unlimited": unlimited, "why": why}).encode())
    values: Any = {}
    while True:
        try:
            request = conn.recv_bytes()
        except (EOFError, OSError):
            return
        path, text, _values_id, job_values, values_ok = pickle.loads(request)  # noqa: S301 - from our parent
        if job_values is not None:  # else the same values as the previous job (the parent keeps track)
            values = job_values
        _cpu_backstop(cpu_limit)
        try:
            signal.setitimer(signal.ITIMER_PROF, cpu_limit)
            try:
                rendered, problem = sandbox.render(path, text, values, values_ok=values_ok, memory_limit=memory)
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
        except sandbox.Interrupted as exc:  # the alarm rang after the template returned
            rendered, problem = None, errors.SpecProblem(path, 1, "", str(exc))
        reply = {"text": rendered} if problem is None else {"line": problem.line, "message": problem.message}
        try:
            conn.send_bytes(json.dumps(reply, ensure_ascii=False).encode("utf-8", "surrogatepass"))
        except (OSError, MemoryError):
            return


def _limit_self(memory: int) -> tuple[list[str], str]:
    """Address space: what the interpreter uses now plus ``memory``; no core files, no file writes.

    Returns the limits that could not be set (a seccomp filter may refuse setrlimit) and why.
    """
    base = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        base = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    unlimited: list[str] = []
    why = ""
    for name, which, wanted in (("the memory limit", resource.RLIMIT_AS, base + memory),
                                ("RLIMIT_CORE", resource.RLIMIT_CORE, 0), ("RLIMIT_FSIZE", resource.RLIMIT_FSIZE, 0)):
        _soft, hard = resource.getrlimit(which)
        value = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError) as exc:
            unlimited.append(name)
            why = str(exc)
    return unlimited, why


def _cpu_backstop(cpu_limit: float) -> None:
    """RLIMIT_CPU a little past this file's wall limit: a worker left spinning without a parent dies."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = math.ceil(usage.ru_utime + usage.ru_stime + 2 * cpu_limit + 2)
    _old, hard = resource.getrlimit(resource.RLIMIT_CPU)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CPU, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))

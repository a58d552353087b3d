"""Background executions (the daemon): one worker thread per cluster rollout, never two per cluster.

A cluster with an execution in flight is not planned again until it ends, so one application's
slow rollout never delays another's pass. When a rollout ends, ``on_done`` learns which regions
it touched (the pipeline updates status from them; no extra pass).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from reconciler.core import errors, model
from reconciler.runtime import executor as executor_mod

log = logging.getLogger("reconciler.engine")  # the name log filters know

Results = list[executor_mod.ExecutionResult]


class Dispatcher:
    def __init__(self, executor: executor_mod.Executor, max_parallel: int,
                 on_done: Callable[[list[model.Change], Results], None]) -> None:
        self.executor = executor
        self.max_parallel = max_parallel
        self._on_done = on_done
        self._pool: ThreadPoolExecutor | None = None
        self._running: dict[str, Future[Results]] = {}
        self._lock = threading.Lock()
        self._settling = threading.Condition()
        self._unsettled = 0  # rollouts whose end has not been reported to ``on_done`` yet

    def running(self) -> set[str]:
        """Change keys with an execution in flight."""
        with self._lock:
            return {k for k, f in self._running.items() if not f.done()}

    def resize(self, max_parallel: int) -> None:
        """A reload changed ``execution.max_parallel``: the next dispatch makes a pool of the new size."""
        with self._lock:
            if max_parallel == self.max_parallel:
                return
            self.max_parallel = max_parallel
            previous, self._pool = self._pool, None
        if previous is not None:
            previous.shutdown(wait=False)  # running rollouts finish on the old pool's threads

    def dispatch(self, plan_id: str, changes: list[model.Change]) -> int:
        """Start the rollouts of ``changes`` (grouped by cluster) not already running; how many changes started."""
        by_cluster: dict[tuple[str, ...], list[model.Change]] = {}
        for c in changes:
            by_cluster.setdefault((c.application, c.cluster, c.provider, c.account), []).append(c)
        n = 0
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_parallel, thread_name_prefix="rollout")
            todo = [ro for ro in by_cluster.values()
                    if not any(c.key in self._running and not self._running[c.key].done() for c in ro)]
            self.executor.deploys.started(plan_id, [c for ro in todo for c in ro])
            started: list[tuple[list[model.Change], Future[Results]]] = []
            for rollout in todo:
                fut = self._pool.submit(self.executor.run_rollout, plan_id, rollout)
                with self._settling:
                    self._unsettled += 1
                started.append((rollout, fut))
                for c in rollout:
                    self._running[c.key] = fut
                n += len(rollout)
        for rollout, fut in started:  # outside the lock: a rollout already over reports in this thread
            fut.add_done_callback(lambda f, ro=rollout: self._done(ro, f))  # type: ignore[misc]
        return n

    def _done(self, rollout: list[model.Change], fut: Future[Results]) -> None:
        """A rollout ended: say how if it raised, then let the pipeline update status from its regions."""
        exc = None if fut.cancelled() else fut.exception()
        if isinstance(exc, executor_mod.Interrupted):
            log.info("a rollout stopped: %s", exc)
        elif isinstance(exc, errors.ReconcilerError):
            log.error("a rollout ended with an error: %s", exc)
        elif exc is not None:
            log.error("a rollout ended with an unexpected %s: %s", type(exc).__name__, exc, exc_info=exc)
        try:
            if not self.executor.stopping.is_set():
                self._on_done(rollout, [] if exc is not None or fut.cancelled() else fut.result())
        except errors.ReconcilerError as exc2:
            log.warning("status update after a rollout failed: %s", exc2)
        except Exception:
            log.exception("status update after a rollout failed unexpectedly")
        finally:
            with self._settling:
                self._unsettled -= 1
                self._settling.notify_all()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the executions dispatched so far end, and the status update after each (tests)."""
        with self._lock:
            futures = list(self._running.values())
        for f in futures:
            f.result(timeout=timeout)
        with self._settling:
            self._settling.wait_for(lambda: self._unsettled == 0, timeout=timeout)

    def stop(self, deadline_s: float) -> bool:
        """Wait up to ``deadline_s`` for running rollouts to reach a safe point (the executor is stopping)."""
        if self._pool is None:
            return True
        end = time.monotonic() + deadline_s
        with self._lock:
            futures = list(self._running.values())
        for f in futures:
            try:
                f.result(timeout=max(end - time.monotonic(), 0.0))
            except Exception:
                return False
        return True

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

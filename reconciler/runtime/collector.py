"""The cyclic garbage collector paused while a pass or a one-shot command builds its values.

A pass at fleet scale allocates millions of long-lived objects (the desired model, the plan, its
verdicts). CPython's collector runs a full collection each time the long-lived objects grow by a
quarter, so building them triggers about ten full scans of an ever larger heap: about a quarter of a
second ``plan``'s CPU time at 10,000 clusters. What a pass makes is freed by reference counting; the
few reference cycles it leaves wait for the first collection after the pass, which scans the
survivors once. Paused and resumed by a count, so concurrent passes and nested pauses (a settle
inside a rollout thread while the daemon's pass runs) resume collection only when the last one ends,
and never turn it on if something else had turned it off.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _Pauses:
    """The count of pauses in force; ``begun`` counts the outermost ones (tests assert that a pass pauses)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.resume = False  # whether the outermost pause found collection on (and so turns it on again)
        self.begun = 0


STATE = _Pauses()


@contextmanager
def paused() -> Iterator[None]:
    with STATE.lock:
        if STATE.depth == 0:
            STATE.resume = gc.isenabled()
            STATE.begun += 1
            gc.disable()
        STATE.depth += 1
    try:
        yield
    finally:
        with STATE.lock:
            STATE.depth -= 1
            if STATE.depth == 0 and STATE.resume:
                gc.enable()


def freeze() -> None:
    """Once, after the daemon's first good pass: move what the process holds then (modules, the parsed
    specs, the model, the memos) out of the collector's sight. At 10,000 clusters that is some 700,000
    objects, which every full collection of a later pass walked again. Objects are still freed when their
    last reference goes; only a cycle among them that becomes garbage later is never reclaimed, a bounded
    one-off (a collection runs just before, so nothing already garbage is kept)."""
    gc.collect()
    gc.freeze()


def abandon() -> None:
    """A one-shot command ends with its process: what it built is never scanned again. Without this, the
    first collection after the pause walks the whole model and plan just before the process exits (half
    a second at 10,000 clusters); frozen, they are freed by reference counting or at exit as before."""
    gc.freeze()

"""The cyclic collector waits while a pass or a one-shot command builds its values (``runtime.collector``)."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from reconciler.runtime import collector
from tests.conftest import Env, app_spec


@pytest.fixture
def collections_while_paused() -> Iterator[list[int]]:
    """Automatic collections that started while a pause was in force (none may)."""
    seen: list[int] = []

    def cb(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and collector.STATE.depth > 0:
            seen.append(info["generation"])

    gc.callbacks.append(cb)
    try:
        yield seen
    finally:
        gc.callbacks.remove(cb)


def test_pauses_nest_and_only_the_outermost_resumes() -> None:
    assert gc.isenabled()
    with collector.paused():
        assert not gc.isenabled()
        with collector.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause is still in force
    assert gc.isenabled()


def test_a_collector_turned_off_elsewhere_stays_off() -> None:
    gc.disable()
    try:
        with collector.paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_concurrent_pauses_resume_when_the_last_one_ends() -> None:
    inside, leave = threading.Event(), threading.Event()

    def other() -> None:
        with collector.paused():
            inside.set()
            leave.wait(10)

    t = threading.Thread(target=other)
    t.start()
    assert inside.wait(10)
    with collector.paused():
        pass
    assert not gc.isenabled()  # the other thread's pause is still in force
    leave.set()
    t.join(10)
    assert gc.isenabled()


def test_a_plan_and_an_apply_build_without_a_collection(env: Env, collections_while_paused: list[int]) -> None:
    for i in range(20):
        env.repo.write(f"apps/app{i}.yaml", app_spec(f"app{i}"))
    env.repo.commit("twenty")
    begun = collector.STATE.begun
    res = env.cli("plan", "--format", "json")
    assert res.code == 2, res.err
    res = env.cli("apply", "--yes")
    assert res.code == 0, res.err
    assert collector.STATE.begun >= begun + 2  # the plan command, then apply's pass
    assert gc.isenabled()
    # a gen-0 collection allocates nothing of ours, but a pass allocates thousands of objects: had the
    # collector run, the callback would have seen it
    assert collections_while_paused == []

"""Fuzz: 1,000 generated hostile spec trees and policy files, each through ``reconciler validate`` and a plan.

Each case is written to a directory and validated through the CLI, then
committed to a real Git repository and planned through ``Engine.plan`` (what
``reconciler plan --ref`` runs on a local repository: the Git source, the tree
limits, the loader, the rendering workers, the planner and every guardrail)
against the local
provider, where ``keep`` is deployed and pruning is on. Properties: nothing
but a ``ReconcilerError`` (which the CLI prints as one line) escapes, no plan
destroys anything, every problem names a file of the tree, and the text plan
has exactly one summary line. The run prints its count, time and worst case.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pygit2
import pytest
from hypothesis import HealthCheck, given, settings

from reconciler import render
from reconciler.config import settings as config_mod
from reconciler.core import clock as clock_mod
from reconciler.core import errors, escaping, model
from reconciler.runtime import engine as engine_mod
from specs import renderpool
from tests.conftest import run_cli, write_config
from tests.specs import hostile

CASES = int(os.environ.get("RECONCILER_FUZZ_CASES", "1000"))


@dataclass
class Harness:
    root: Path
    origin: pygit2.Repository
    config: Path
    engine: engine_mod.Engine
    parent: pygit2.Oid
    count: int = 0
    seconds: float = 0.0
    worst_rss_growth_kib: int = 0
    problems: int = 0
    refused: int = 0
    validate_s: float = 0.0
    plan_s: float = 0.0
    times: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def summary(self) -> str:
        times = sorted(self.times) or [0.0]
        return (f"fuzz: {self.count} hostile trees in {self.seconds:.1f}s (validate {self.validate_s:.1f}s, plan "
                f"{self.plan_s:.1f}s); per case median {times[len(times) // 2] * 1000:.0f} ms, worst "
                f"{times[-1]:.2f}s; worst RSS growth in one case {self.worst_rss_growth_kib / 1024:.1f} MiB, process "
                f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB, "
                f"rendering workers' peak {_worker_peak_kib(self) / 1024:.0f} MiB; {self.problems} problems "
                f"planned around, {self.refused} trees refused whole")

    def commit(self, tree: dict[str, bytes]) -> str:
        repo = self.origin
        dirs: dict[str, dict[str, object]] = {"": {}}
        for path, data in tree.items():
            parts = f"apps/{path}".split("/")
            for i in range(1, len(parts)):
                parent, name = "/".join(parts[:i - 1]), "/".join(parts[:i])
                dirs.setdefault(name, {})
                dirs[parent][parts[i - 1]] = name
            dirs["/".join(parts[:-1])][parts[-1]] = repo.create_blob(data)

        def write(name: str) -> pygit2.Oid:
            builder = repo.TreeBuilder()
            for entry, target in dirs[name].items():
                if isinstance(target, str):
                    builder.insert(entry, write(target), pygit2.enums.FileMode.TREE)
                else:
                    assert isinstance(target, pygit2.Oid)
                    builder.insert(entry, target, pygit2.enums.FileMode.BLOB)
            return builder.write()

        sig = pygit2.Signature("fuzz", "fuzz@example.com", 1_700_000_000, 0)
        self.parent = repo.create_commit("refs/heads/main", sig, sig, "case", write(""), [self.parent])
        return str(self.parent)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Harness]:
    root = tmp_path_factory.mktemp("fuzz")
    origin = pygit2.init_repository(str(root / "origin.git"), bare=True, initial_head="main")
    config = write_config(root / "config.yaml", root / "origin.git", root / "state", prune=True,
                          specs={"render_timeout": "50ms", "render_memory": "64MiB", "max_files": 50,
                                 "max_total_size": "4MiB"})
    apps = origin.TreeBuilder()
    apps.insert("keep.yaml", origin.create_blob(hostile.KEEP.encode()), pygit2.enums.FileMode.BLOB)
    top = origin.TreeBuilder()
    top.insert("apps", apps.write(), pygit2.enums.FileMode.TREE)
    sig = pygit2.Signature("fuzz", "fuzz@example.com", 1_700_000_000, 0)
    first = origin.create_commit("refs/heads/main", sig, sig, "keep", top.write(), [])
    eng = engine_mod.Engine(config_mod.load_config(config), clock=clock_mod.FakeClock(1_700_000_000.0))
    h = Harness(root, origin, config, eng, first)
    try:
        eng.reconcile()
        assert {g.cluster for g in eng.live.read(None).groups if g.enabled} == {"keep-main"}
        yield h
        summary = h.summary()
    finally:
        eng.close()
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(f"\n{summary}")  # the figures a reviewer quotes: shown on every run, not only on failure


def _worker_peak_kib(h: Harness) -> int:
    """The largest peak RSS any rendering worker of the fuzz reached (its engine's and validate's pool)."""
    return max(h.engine.desired.renderer().peak_rss(), renderpool.shared(h.engine.config.specs).peak_rss()) // 1024


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _names(tree: dict[str, bytes]) -> set[str]:
    names = {"apps", "."}
    for path in tree:
        parts = f"apps/{path}".split("/")
        names.update("/".join(parts[:i]) for i in range(2, len(parts) + 1))
    return names


@settings(max_examples=CASES, deadline=None, database=None, derandomize=False,
          suppress_health_check=list(HealthCheck))
@given(tree=hostile.trees())
def test_hostile_trees_never_escape_the_spec_layer_never_destroy_and_name_their_files(
        harness: Harness, tree: dict[str, bytes]) -> None:
    tree.pop("keep.yaml", None)
    tree["keep.yaml"] = hostile.KEEP.encode()
    started, rss = time.monotonic(), _rss_kib()
    names = _names(tree)
    shown = {escaping.visible(n) for n in names}

    case = harness.root / f"case-{harness.count}"
    for path, data in tree.items():
        target = case / "apps" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    t0 = time.monotonic()
    res = run_cli("validate", str(case), "--config", str(harness.config))
    harness.validate_s += time.monotonic() - t0
    shutil.rmtree(case)
    assert res.code in (0, 1), res.err
    assert "Traceback" not in res.err
    for line in res.out.splitlines() if res.code else []:
        assert any(line.startswith(f"{s}:") for s in shown), line

    commit = harness.commit(tree)
    t0 = time.monotonic()
    try:
        ev = harness.engine.plan(ref=commit, local_repo=str(harness.root / "origin.git"))
        harness.plan_s += time.monotonic() - t0
    except errors.ReconcilerError as exc:  # the CLI prints it as one line and exits 1
        assert "specs.max_files" in str(exc) or "specs.max_total_size" in str(exc), exc
        harness.refused += 1
    else:
        plan = ev.plan
        assert not [c for c in plan.changes if c.action is model.Action.DESTROY]
        for p in plan.problems:
            assert p.file in names, p
        text = render.render_text(plan, color=False)
        assert sum(line.startswith("Plan: ") for line in text.splitlines()) == 1
        render.render_markdown(plan)
        harness.problems += len(plan.problems)

    took = time.monotonic() - started
    harness.count += 1
    harness.seconds += took
    harness.times.append(took)
    harness.worst_rss_growth_kib = max(harness.worst_rss_growth_kib, _rss_kib() - rss)

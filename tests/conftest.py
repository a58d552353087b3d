"""Shared fixtures: real Git repositories (pygit2), config files, and the CLI in-process."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pygit2
import pytest
import yaml
from hypothesis import settings as hypothesis_settings

from providers.base import ProviderContext
from reconciler import cli
from reconciler.core import clock as clock_mod
from reconciler.state import store as store_mod

ROOT = Path(__file__).resolve().parent.parent

# Properties are judged by what they find, not by how fast a shared 2-core machine runs one example.
hypothesis_settings.register_profile("reconciler", deadline=None, print_blob=True)
hypothesis_settings.load_profile("reconciler")


class DesiredRepo:
    """A desired-state repository on disk, committed with pygit2 (no git CLI)."""

    def __init__(self, path: Path, branch: str = "main") -> None:
        self.path = path
        self.branch = branch
        self.repo = pygit2.init_repository(str(path), bare=False, initial_head=branch)
        self.sig = pygit2.Signature("Ops", "ops@example.com", 1_700_000_000, 0)

    def write(self, rel: str, text: str) -> DesiredRepo:
        target = self.path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return self

    def remove(self, rel: str) -> DesiredRepo:
        (self.path / rel).unlink()
        return self

    def commit(self, message: str = "change") -> str:
        index = self.repo.index
        index.add_all()
        index.write()
        tree = index.write_tree()
        ref = f"refs/heads/{self.branch}"
        parents = [self.repo.references[ref].target] if ref in self.repo.references else []
        oid = self.repo.create_commit(ref, self.sig, self.sig, message, tree, parents)
        return str(oid)

    def reset_hard(self, commit: str) -> None:
        """Rewrite the branch (a force-push, for the source's point of view)."""
        self.repo.references[f"refs/heads/{self.branch}"].set_target(pygit2.Oid(hex=commit))
        self.repo.checkout_tree(self.repo[commit], strategy=pygit2.enums.CheckoutStrategy.FORCE)
        self.repo.index.read_tree(self.repo[commit].peel(pygit2.Commit).tree)
        self.repo.index.write()

    def head(self) -> str:
        return str(self.repo.references[f"refs/heads/{self.branch}"].target)


def app_spec(
    name: str = "checkout",
    *,
    image: str = "checkout-1.0",
    regions: tuple[str, ...] = ("us-east-1", "eu-west-1"),
    desired: int = 2,
    provider: str = "local",
    account: str = "default",
    extra: str = "",
    criticality: str = "normal",
    stack: str = "main",
    timeout: str = "5s",
) -> str:
    regions_yaml = "[" + ", ".join(regions) + "]"
    return textwrap.dedent(f"""\
        application: {name}
        owner: team@example.com
        criticality: {criticality}
        clusters:
          - stack: {stack}
            provider: {provider}
            account: {account}
            regions: {regions_yaml}
            image: "{image}"
            instance_type: m5.large
            capacity: {{min: 1, desired: {desired}, max: 6}}
            health: {{healthy_percent: 100, timeout: {timeout}}}
        """) + textwrap.indent(textwrap.dedent(extra), "    ")


@dataclass
class Env:
    """A repo, a config file and a state dir: everything one CLI invocation needs."""

    repo: DesiredRepo
    config: Path
    state_dir: Path

    def cli(self, *args: str) -> CliResult:
        return run_cli("--config", str(self.config), *args, config_first=False)

    def status(self) -> dict[str, Any]:
        res = self.cli("status", "--format", "json")
        assert res.code == 0, res.err
        return dict(json.loads(res.out))

    def groups(self, region: str | None = None) -> list[dict[str, Any]]:
        groups = self.status().get("server_groups", [])
        return [g for g in groups if region is None or g["region"] == region]


@dataclass
class CliResult:
    code: int
    out: str
    err: str


_cli_lock = threading.Lock()


def provider_context(state_url: str, state_dir: Path, clock: clock_mod.Clock | None = None) -> ProviderContext:
    """A provider's context as the engine builds it: the state layer opens its database."""
    return ProviderContext(state_url, state_dir, clock=clock or clock_mod.SystemClock(),
                           open_database=partial(store_mod.make_engine, state_url))


def run_cli(*args: str, config_first: bool = False) -> CliResult:
    """Run ``reconciler`` in-process; subcommand-level flags like --config go after the command."""
    argv = list(args)
    if not config_first and argv and argv[0] == "--config":
        # move "--config X" after the subcommand, where argparse expects it
        cfg = argv[:2]
        argv = [argv[2], *cfg, *argv[3:]]
    out, err = io.StringIO(), io.StringIO()
    with _cli_lock, redirect_stdout(out), redirect_stderr(err):
        code = cli.main(argv)
    return CliResult(code, out.getvalue(), err.getvalue())


def write_config(path: Path, repo_path: Path, state_dir: Path, **overrides: Any) -> Path:
    cfg: dict[str, Any] = {
        "repo": {"url": str(repo_path), "branch": "main", "path": "apps"},
        "poll": {"interval": "1s", "jitter": "0s"},
        "state_dir": str(state_dir),
        "state": f"sqlite:///{state_dir / 'state.db'}",
        "prune": False,
        "providers": {"local": {"accounts": {"default": {"boot_seconds": 0, "unhealthy_images": ["*-bad"]}}}},
        "execution": {"poll_health": "20ms", "retry_backoff": "0s", "step_backoff": "10ms"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def env(tmp_path: Path) -> Env:
    repo = DesiredRepo(tmp_path / "desired")
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "config.yaml", repo.path, state)
    return Env(repo, cfg, state)


def reconciler_subprocess(args: list[str], *, env: dict[str, str] | None = None, module: str = "reconciler.cli",
                          **kw: Any) -> subprocess.Popen[str]:
    """A real ``reconciler`` process (for daemon, signal and crash tests); ``module`` may be a test entry point
    (``tests.crashing_cli``), run from the repository root."""
    full_env = {**os.environ, **(env or {})}
    if module != "reconciler.cli":
        kw.setdefault("cwd", Path(__file__).resolve().parent.parent)
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw,
    )


@pytest.fixture(autouse=True)
def _no_leftover_threads() -> Iterator[None]:
    """A test must not leave non-daemon threads behind (they would hang the run)."""
    before = set(threading.enumerate())
    yield
    leftovers = [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon]
    for t in leftovers:
        t.join(timeout=5)
    still = [t.name for t in leftovers if t.is_alive()]
    assert not still, f"threads left running: {still}"


# ---------------------------------------------------------------------------- order under pytest-xdist


LONGEST_FIRST = (
    "tests/specs/test_fuzz_hostile.py",
    "tests/crash/test_stateful.py",
    "tests/core/test_spec_cache.py",
    "tests/ha/test_replicas.py",
    "tests/providers/aws/test_aws_resources.py",
    "tests/providers/aws/test_e2e_cli.py",
    "tests/crash/test_kill9.py",
    "tests/ha/test_resources.py",
)
"""Modules holding the suite's longest tests (``--durations``), run first and in this order: xdist's ``load``
scheduling hands tests out in collection order, so a long test collected last would keep one worker busy
while the other has nothing left."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the modules of ``LONGEST_FIRST`` to the front (a stable sort: every module's order is kept)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(Path(item.path).relative_to(ROOT).as_posix(), len(rank)))


# ---------------------------------------------------------------------------- PostgreSQL


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (Debian's server binaries; run as `postgres` when root).

    ``stop()`` and ``start()`` again keep the data and the port (outage tests); ``close()`` removes it.
    """

    def __init__(self) -> None:
        import glob
        import shutil
        import tempfile

        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            pytest.fail("PostgreSQL server binaries are missing: run scripts/system-deps (Debian package postgresql)")
        self.bindir = Path(found[-1]).parent
        # not under pytest's tmp root: that is private to root, and the server runs as `postgres`
        self.base = Path(tempfile.mkdtemp(prefix="reconciler-pg-"))
        self.data = self.base / "data"
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.port = _free_port()
        subprocess.run([*self.prefix, str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A",
                        "trust", "--no-sync"], check=True, capture_output=True)
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def start(self) -> None:
        subprocess.run([*self.prefix, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", "-l",
                        str(self.base / "log"), "-o",
                        f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                       check=True, capture_output=True)

    def stop(self) -> None:
        subprocess.run([*self.prefix, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                       capture_output=True, check=False)

    def create_database(self) -> str:
        """A fresh database on this server; returns its URL."""
        import uuid

        import psycopg

        name = f"t_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(f"{self.url}/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"{self.url}/{name}"

    def close(self) -> None:
        import shutil

        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    server = PostgresServer()
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh database on the session's server."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{postgres_server}/{name}"


# ---------------------------------------------------------------------------- the stateful test's figures


_FIGURES: list[dict[str, Any]] = []


def pytest_runtest_logreport(report: Any) -> None:
    """Collect the figures the stateful test recorded (its report reaches the controlling process)."""
    if report.when == "call":
        _FIGURES.extend(value for name, value in report.user_properties if name == "stateful")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    steps = sum(f["steps"] for f in _FIGURES)
    examples = sum(f["examples"] for f in _FIGURES)
    counts: dict[str, int] = {}
    for f in _FIGURES:
        for kind, n in f["kinds"].items():
            counts[kind] = counts.get(kind, 0) + n
    kinds = sorted(k for k, n in counts.items() if n)
    terminalreporter.write_sep("-", "stateful safety test")
    terminalreporter.write_line(f"{steps} steps in {examples} runs, {len(kinds)} scenario kinds:")
    for k in kinds:
        terminalreporter.write_line(f"  {counts[k]:>6}  {k}")

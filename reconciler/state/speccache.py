"""Validated specs kept across processes: a second ``plan`` on the same commit parses nothing.

Each spec file's result (its ``model.Application`` or its problems) is stored
in a SQLite file beside the state (``STATE_DIR/spec-cache.db``), keyed by
(path, blob id, values blob id) under a *code version*: a digest of this
release and of the source of every module whose output is cached (loader,
schema, YAML reader, template sandbox, model). Any change to those modules,
or other spec limits, is a different version, so results made by other code
are never read; they are dropped when the file is opened.

Entries are data only (MessagePack decoded into the model's own types, never
pickled code), and the cache is only ever an accelerator: a damaged, locked
or unwritable file costs a parse, never a plan.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import sqlite3
import sys
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec

import reconciler
from reconciler.core import errors, model
from reconciler.core.resources import ResourceSpec
from specs import limits as limits_mod
from specs import sharing

log = logging.getLogger("reconciler.speccache")

FILE_NAME = "spec-cache.db"
MAX_ENTRIES = 50_000
"""Oldest entries go first beyond this: a long-lived daemon's file must not grow with every commit forever."""

_Result = tuple[model.Application | None, tuple[errors.SpecProblem, ...]]
_SOURCES = ("specs.loader", "specs.schema", "specs.yamlnodes", "specs.sandbox", "specs.renderpool", "specs.limits",
            "specs.catalog", "specs.resource_checks", "specs.environments", "specs.strategy", "specs.canary",
            "specs.images", "reconciler.core.model", "reconciler.core.canary", "reconciler.core.images",
            "reconciler.core.schedules",
            "reconciler.core.resources", "reconciler.core.errors", "reconciler.core.durations",
            __name__)
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Result)


def _typed(result: _Result) -> _Result:
    """``Application.resources`` is typed loosely in the model (a core cycle otherwise): decode it as what it is."""
    app, problems = result
    if app is None or not app.resources:
        return result
    return dataclasses.replace(app, resources=tuple(msgspec.convert(r, ResourceSpec) for r in app.resources)), problems


@functools.cache
def code_version() -> str:
    """This release and the source of every module that makes or reads a cached result."""
    h = hashlib.sha256(f"{reconciler.__version__}\0{msgspec.__version__}\0".encode())
    for name in _SOURCES:
        __import__(name)
        h.update(Path(sys.modules[name].__file__ or "").read_bytes())
    return h.hexdigest()[:32]


class SpecStore:
    """The persistent side of ``specs.loader.SpecCache`` (its ``backing``)."""

    def __init__(self, path: Path, *, max_entries: int = MAX_ENTRIES) -> None:
        self.path = path
        self.max_entries = max_entries
        self.reads = 0
        """Results decoded from the file (for tests and the bench)."""
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._scope = ""
        self._broken = False

    def use(self, limits: limits_mod.SpecLimits) -> None:
        """Results made under other limits are other results: they are keyed apart."""
        self._scope = hashlib.sha256(f"{code_version()}\0{limits!r}".encode()).hexdigest()[:32]

    def get_many(self, keys: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str, str], _Result]:
        wanted = {self._key(k): k for k in keys}
        out: dict[tuple[str, str, str], _Result] = {}
        if not wanted:
            return out
        with self._lock:
            db = self._open()
            if db is None:
                return out
            table: dict[Any, Any] = {}  # equal texts across the entries of this read: one object each
            try:
                for name, key in wanted.items():
                    row = db.execute("SELECT value FROM specs WHERE key = ?", (name,)).fetchone()
                    if row is None:
                        continue
                    try:
                        result = _typed(_decoder.decode(row[0]))
                        if result[0] is not None:
                            sharing.share_texts(result[0], table)
                        out[key] = result
                    except (msgspec.DecodeError, msgspec.ValidationError, TypeError, ValueError) as exc:
                        log.warning("spec cache entry for %s is unreadable (%s); parsing it again", key[0], exc)
            except sqlite3.Error as exc:
                self._fail(exc)
            self.reads += len(out)
        return out

    def put_many(self, items: Mapping[tuple[str, str, str], _Result]) -> None:
        if not items:
            return
        rows = ((self._key(k), _encoder.encode(v)) for k, v in items.items())  # encoded as they are written
        with self._lock:
            db = self._open()
            if db is None:
                return
            try:
                with db:
                    db.executemany("INSERT OR REPLACE INTO specs (key, value) VALUES (?, ?)", rows)
                    (top,) = db.execute("SELECT COALESCE(MAX(rowid), 0) FROM specs").fetchone()
                    if top > self.max_entries:
                        db.execute("DELETE FROM specs WHERE rowid <= ?", (top - self.max_entries,))
            except sqlite3.Error as exc:
                self._fail(exc)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _key(self, key: tuple[str, str, str]) -> str:
        return f"{self._scope}\0{key[0]}\0{key[1]}\0{key[2]}"

    def _open(self) -> sqlite3.Connection | None:
        if self._db is not None or self._broken:
            return self._db
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=5, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS specs (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = db.execute("SELECT value FROM meta WHERE name = 'code_version'").fetchone()
            if row is None or row[0] != code_version():  # other code's results are never read again: drop them
                with db:
                    db.execute("DELETE FROM specs")
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('code_version', ?)", (code_version(),))
        except sqlite3.Error as exc:
            self._fail(exc)
            return None
        self._db = db
        return db

    def _fail(self, exc: Exception) -> None:
        """The cache cannot be used: say so once and go on without it (it only saves time)."""
        if not self._broken:
            log.warning("spec cache %s cannot be used (%s); specs are parsed every run", self.path, exc)
        self._broken = True
        if self._db is not None:
            self._db.close()
            self._db = None


def open_beside(state_dir: Path | str) -> SpecStore:
    """The spec cache of a state directory (opened on first use)."""
    return SpecStore(Path(state_dir) / FILE_NAME)

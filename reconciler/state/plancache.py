"""Answers of ``reconciler plan`` kept across runs: planning the same inputs again decides nothing anew.

An entry is what one ``plan`` run printed (its stdout, as bytes), the saved plan it wrote (``--out``),
its stderr lines and its exit code, in ``STATE_DIR/plan-cache/KEY/``. KEY is a digest of the digest
of every input of the evaluation (``reconciler.core.memo.digest``: the parsed specs, live state, the
policy file, pauses, approvals, freezes, what the clock decides now, ...), of the code that plans,
judges and renders (this release and the source of its packages), of the config in force and of
the output options (format, colour, encoding, ``--out``).

Only ``plan`` reads it. ``apply``, the daemon and the console always evaluate, and ``apply --plan``
checks a saved plan against a fresh evaluation whatever made it. Like the spec cache it is only an
accelerator: an entry that cannot be read or written costs an evaluation, never a plan.

The saved plan is kept as a second name of the file ``--out`` wrote (a hard link: no copy, no extra
disk while that file exists); an entry whose saved plan was changed since (size or modification
time) is not used. The newest ``KEEP`` entries are kept.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TextIO

import msgspec

import reconciler
from reconciler.core import errors

log = logging.getLogger("reconciler.plancache")

DIR_NAME = "plan-cache"
KEEP = 2
"""Entries kept: the last plan, and one before it (a PR preview beside the branch head)."""
_STALE_TMP = 3600.0  # an unfinished entry older than this was left by a run that died
_PACKAGES = ("reconciler", "specs", "policies", "providers")
_FORMAT = 1  # the layout of an entry


@functools.cache
def code_version() -> str:
    """This release, the interpreter and msgspec, and the source of every module that plans or renders."""
    h = hashlib.blake2b(f"{_FORMAT}\0{reconciler.__version__}\0{sys.version}\0{msgspec.__version__}\0".encode(),
                       digest_size=20)
    for package in _PACKAGES:
        mod = sys.modules.get(package) or __import__(package)
        for root in getattr(mod, "__path__", ()):
            for path in sorted(Path(root).rglob("*.py")):
                h.update(f"{package}/{path.relative_to(root)}\0".encode())
                h.update(path.read_bytes())
    return h.hexdigest()


def stdout_options(stdout: TextIO) -> dict[str, object]:
    """What of ``stdout`` the printed bytes depend on: a terminal gets colours, and its encoding the text."""
    encoding = getattr(stdout, "encoding", None)
    with contextlib.suppress(LookupError):  # an encoding Python does not know: named as it is
        encoding = codecs.lookup(encoding).name if encoding else None
    return {"color": stdout.isatty(), "encoding": encoding, "errors": getattr(stdout, "errors", None)}


def _config_text(value: object) -> str:
    return str(value)  # paths and the like: what the config says


def key(digest: str, config: object, options: Mapping[str, object]) -> str | None:
    """The entry's name for an evaluation's digest under this code, config and output options."""
    try:
        cfg = msgspec.msgpack.Encoder(enc_hook=_config_text).encode(config)
    except (TypeError, ValueError):
        return None
    h = hashlib.blake2b(code_version().encode(), digest_size=20)
    h.update(digest.encode())
    h.update(cfg)
    h.update(json.dumps(dict(options), sort_keys=True).encode())
    return h.hexdigest()


@dataclass
class Entry:
    """An entry opened for reading: its files stay readable even if another run drops the entry."""

    meta: dict[str, Any]
    stdout: IO[bytes]
    plan: IO[bytes] | None = None
    plan_path: Path | None = None

    def write_stdout(self, stdout: TextIO) -> None:
        """The bytes the earlier run printed, to ``stdout`` (its buffer; a text-only stream gets the text)."""
        stdout.flush()
        raw = getattr(stdout, "buffer", None)
        if raw is not None:
            _copy(self.stdout, raw)
            raw.flush()
        else:  # a captured stream
            encoding = getattr(stdout, "encoding", None) or "utf-8"
            for chunk in iter(lambda: self.stdout.read(1 << 20), b""):
                stdout.write(chunk.decode(encoding))

    def save_plan(self, path: str) -> None:
        """The kept saved plan at ``path``: another name of the very file checked when it was opened, or a copy."""
        if self.plan is None or self.plan_path is None:
            raise errors.ReconcilerError("the kept answer has no saved plan")
        if not _link_same(self.plan, self.plan_path, path):
            with open(path, "wb") as out:
                _copy(self.plan, out)

    def close(self) -> None:
        self.stdout.close()
        if self.plan is not None:
            self.plan.close()


@dataclass
class Writer:
    """An entry being made, in a directory of its own until ``commit`` renames it into place."""

    cache: PlanCache
    key: str
    tmp: Path
    stdout: IO[bytes]
    failed: str | None = None
    """Why the entry will not be kept (a write failed): the plan itself goes on."""
    _plan: dict[str, int] = field(default_factory=dict)

    def write(self, data: bytes) -> None:
        """Keep these bytes of stdout; a failure (a full disk) drops the entry, never the plan."""
        if self.failed is None:
            try:
                self.stdout.write(data)
            except OSError as exc:
                self.failed = str(exc)

    def tee(self, stdout: TextIO) -> Callable[[str], int]:
        """``stdout.write`` that also keeps the bytes it writes (as ``stdout`` encodes them)."""
        encoding, errors_ = getattr(stdout, "encoding", None) or "utf-8", getattr(stdout, "errors", None) or "strict"
        write = stdout.write

        def emit(text: str) -> int:
            self.write(text.encode(encoding, errors_))
            return write(text)

        return emit

    def keep_plan(self, path: str | os.PathLike[str]) -> None:
        """Keep the saved plan just written at ``path`` (before it is renamed to what ``--out`` named)."""
        if self.failed is not None:
            return
        target = self.tmp / "plan"
        try:
            try:
                os.link(path, target)
            except OSError:  # another file system, or links refused: a copy
                shutil.copyfile(path, target)
            st = os.stat(target)
        except OSError as exc:
            self.failed = str(exc)
            return
        self._plan = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}

    def commit(self, meta: Mapping[str, Any]) -> None:
        """Make the entry visible to later runs (whole or not at all), then drop the oldest beyond ``KEEP``."""
        if self.failed is not None:
            log.debug("the plan was not kept for the next run: %s", self.failed)
            self.abort()
            return
        try:
            self.stdout.close()
            doc = {**meta, "stdout_size": (self.tmp / "stdout").stat().st_size, "plan": self._plan or None}
            (self.tmp / "meta.json").write_text(json.dumps(doc, sort_keys=True))
            try:
                os.rename(self.tmp, self.cache.root / self.key)
            except OSError:  # another run of the same inputs was first: its entry is as good
                self.abort()
            self.cache.evict()
        except OSError as exc:
            log.debug("the plan was not kept for the next run: %s", exc)
            self.abort()

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.stdout.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


class PlanCache:
    """``STATE_DIR/plan-cache``: one directory per entry, named by its key."""

    def __init__(self, root: Path, *, keep: int = KEEP) -> None:
        self.root = root
        self.keep = keep
        self.hits = 0
        """Entries used by this process (for tests)."""

    @classmethod
    def beside(cls, state_dir: str | os.PathLike[str]) -> PlanCache:
        return cls(Path(state_dir) / DIR_NAME)

    def open(self, key: str) -> Entry | None:
        """The entry named ``key`` if it is whole and its saved plan unchanged; None otherwise."""
        where = self.root / key
        try:
            meta = json.loads((where / "meta.json").read_text())
            stdout = open(where / "stdout", "rb")  # noqa: SIM115 (handed to the caller, closed by Entry.close)
        except (OSError, ValueError):
            return None
        entry = Entry(meta, stdout)
        try:
            if os.fstat(stdout.fileno()).st_size != meta.get("stdout_size"):
                raise ValueError("stdout was changed")
            kept = meta.get("plan")
            if kept:
                entry.plan_path = where / "plan"
                entry.plan = open(entry.plan_path, "rb")  # noqa: SIM115
                st = os.fstat(entry.plan.fileno())
                if (st.st_size, st.st_mtime_ns) != (kept.get("size"), kept.get("mtime_ns")):
                    raise ValueError("the saved plan was changed since it was written")
            os.utime(where / "meta.json")  # the newest entry is the last one used
        except (OSError, ValueError) as exc:
            log.debug("plan cache entry %s not used: %s", key[:12], exc)
            entry.close()
            return None
        self.hits += 1
        return entry

    def begin(self, key: str) -> Writer | None:
        """A new entry for ``key``, or None when the directory cannot be written (nothing is kept)."""
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = self.root / f"tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir(mode=0o700)
            stdout = open(tmp / "stdout", "wb")  # noqa: SIM115 (closed by Writer.commit or abort)
        except OSError as exc:
            log.debug("the plan will not be kept for the next run: %s", exc)
            return None
        return Writer(self, key, tmp, stdout)

    def evict(self) -> None:
        """Drop entries beyond the newest ``keep``, and what runs that died left half made."""
        now = time.time()
        entries: list[tuple[float, Path]] = []
        for path in self.root.iterdir():
            try:
                if path.name.startswith("tmp-"):
                    if now - path.stat().st_mtime > _STALE_TMP:
                        shutil.rmtree(path, ignore_errors=True)
                    continue
                entries.append(((path / "meta.json").stat().st_mtime, path))
            except OSError:
                shutil.rmtree(path, ignore_errors=True)  # no meta: not an entry any run can use
        for _, path in sorted(entries, reverse=True)[self.keep:]:
            shutil.rmtree(path, ignore_errors=True)


def _link_same(opened: IO[bytes], path: Path, new: str) -> bool:
    """One more name for the file ``opened`` (no copy), if ``path`` is still that very file."""
    try:
        os.link(path, new)
    except OSError:
        return False
    if os.path.samestat(os.stat(new), os.fstat(opened.fileno())):
        return True
    os.unlink(new)  # the kept file was replaced since it was checked: copy what was checked
    return False


def _copy(src: IO[bytes], dst: IO[bytes]) -> None:
    """File to file in the kernel where it can (``sendfile``), else through a buffer."""
    size, offset = os.fstat(src.fileno()).st_size, 0
    dst.flush()
    try:
        while offset < size:
            sent = os.sendfile(dst.fileno(), src.fileno(), offset, size - offset)
            if sent == 0:
                raise OSError("the file shrank while it was copied")
            offset += sent
    except OSError:
        if offset:  # part of it is out: nothing to resume safely
            raise
        src.seek(0)
        shutil.copyfileobj(src, dst, 1 << 20)
    except (AttributeError, ValueError):  # no file descriptor (a captured stream)
        src.seek(0)
        shutil.copyfileobj(src, dst, 1 << 20)

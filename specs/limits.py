"""Limits on what one commit's spec tree may cost: time and memory per template, files and bytes per tree.

The spec layer gets them as one frozen value (``SpecLimits``) and never reads
configuration itself; ``from_config`` turns the ``specs:`` section of the
daemon's config into that value. Language limits that decide whether a spec is
valid at all (nesting depth, file size) are constants, so a spec that
validates in CI validates in every daemon.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from reconciler.core import durations, errors

__all__ = ["MAX_DEPTH", "MAX_FILE_BYTES", "MAX_RENDERED_CHARS", "SpecLimits", "format_size", "from_config",
           "name_problem", "parse_size", "tree_problem"]

MAX_FILE_BYTES = 1024 * 1024
"""Larger spec, values or policy files are refused unread: a spec is a page of YAML, not a data dump."""
MAX_RENDERED_CHARS = 4 * 1024 * 1024
"""Rendering stops past this size, and the sandbox refuses to build a string or list longer than this."""
MAX_DEPTH = 64
"""Deepest nesting of lists and mappings in one document (a spec needs about 6)."""

_MiB = 1024 * 1024
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|KB|MB|GB|k|K|M|G)?\s*\Z")
_SIZE_UNITS = {None: 1, "B": 1, "KiB": 1024, "MiB": _MiB, "GiB": 1024 * _MiB, "KB": 1000, "MB": 1000**2,
               "GB": 1000**3, "k": 1024, "K": 1024, "M": _MiB, "G": 1024 * _MiB}
_KEYS = ("render_timeout", "render_memory", "max_files", "max_total_size")


@dataclass(frozen=True, slots=True)
class SpecLimits:
    """What rendering and loading one commit may cost; exceeding one is a spec problem that names it."""

    render_timeout_s: float = 2.0
    """CPU seconds one file's template may take (``specs.render_timeout``); a rendering worker that has not
    answered after twice that plus a second of wall time is killed and replaced."""
    render_memory_bytes: int = 256 * _MiB
    """Memory one file's template may allocate (``specs.render_memory``), on top of the rendering worker's own
    interpreter; enforced with the worker's address-space limit."""
    max_files: int = 20_000
    """Files under the spec path in one commit (``specs.max_files``); a larger tree is not used at all."""
    max_total_bytes: int = 32 * _MiB
    """Bytes of all files under the spec path in one commit (``specs.max_total_size``)."""


def from_config(raw: Any, *, where: str) -> SpecLimits:
    """The ``specs:`` config section (absent or null: the defaults); ConfigError names the field."""
    if raw is None:
        return SpecLimits()
    if not isinstance(raw, dict):
        raise errors.ConfigError(f"{where}: expected a mapping like {{render_timeout: 2s, render_memory: 256MiB}}")
    unknown = sorted(set(raw) - set(_KEYS), key=str)
    if unknown:
        raise errors.ConfigError(f"{where}.{unknown[0]}: unknown field; allowed: {', '.join(_KEYS)}")
    d = SpecLimits()
    timeout = durations.parse_duration(raw.get("render_timeout", d.render_timeout_s),
                                        where=f"{where}.render_timeout")
    if not 0.01 <= timeout <= 600:
        raise errors.ConfigError(f"{where}.render_timeout: must be between 10ms and 10m, got {timeout:g}s")
    memory = _size(raw.get("render_memory", d.render_memory_bytes), f"{where}.render_memory")
    if not 16 * _MiB <= memory <= 64 * 1024 * _MiB:
        raise errors.ConfigError(f"{where}.render_memory: must be between 16MiB and 64GiB, got {format_size(memory)}")
    files = raw.get("max_files", d.max_files)
    if isinstance(files, bool) or not isinstance(files, int) or not 1 <= files <= 10_000_000:
        raise errors.ConfigError(f"{where}.max_files: expected a whole number from 1 to 10000000, got {files!r}")
    total = _size(raw.get("max_total_size", d.max_total_bytes), f"{where}.max_total_size")
    if total < 1:
        raise errors.ConfigError(f"{where}.max_total_size: must be at least 1 byte")
    return SpecLimits(render_timeout_s=timeout, render_memory_bytes=memory, max_files=files, max_total_bytes=total)


def parse_size(value: Any) -> int:
    """``256MiB``, ``1GiB``, ``512KiB``, ``10MB`` or a number of bytes; ValueError for anything else."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like 256MiB, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"expected a size like 256MiB, got {value!r}")
        return int(value)
    m = _SIZE_RE.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a size (use e.g. 512KiB, 256MiB, 1GiB)")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])


def _size(value: Any, where: str) -> int:
    try:
        return parse_size(value)
    except ValueError as exc:
        raise errors.ConfigError(f"{where}: {exc}") from exc


def format_size(n: int) -> str:
    """``256 MiB``, ``1.5 GiB``, ``800 KiB``, ``12 bytes``: for messages."""
    for unit, size in (("GiB", 1024 * _MiB), ("MiB", _MiB), ("KiB", 1024)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) or value >= 100 else f"{value:.1f} {unit}"
    return f"{n} bytes"


def tree_problem(spec_path: str, files: int, total_bytes: int, limits: SpecLimits, *, complete: bool) -> str | None:
    """The message for a tree over a limit, the same from ``validate DIR`` and from the Git source; None if within.

    ``complete`` is False when counting stopped early (the numbers are then lower bounds).
    """
    where = f"{spec_path.strip('/')}/" if spec_path.strip("/") else "the spec tree"
    more = "" if complete else "at least "
    if files > limits.max_files:
        return (f"{where} holds {more}{files:,} files, more than the limit of {limits.max_files:,} "
                "(specs.max_files); none of it is loaded")
    if total_bytes > limits.max_total_bytes:
        return (f"{where} holds {more}{format_size(total_bytes)} of files, more than the limit of "
                f"{format_size(limits.max_total_bytes)} (specs.max_total_size); none of it is loaded")
    return None


def name_problem(name: str) -> str | None:
    """Why a file name in the spec tree is refused (bytes that are not UTF-8 cannot be shown or stored), or None."""
    if any("\udc80" <= c <= "\udcff" for c in name):
        return "the file name is not valid UTF-8; rename the file"
    return None

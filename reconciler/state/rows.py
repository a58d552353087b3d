"""Frozen rows the store returns on the runtime's hot paths, instead of ``dict[str, Any]``.

Rows that travel on as JSON (history, the execution list of ``status``, the console) stay mappings:
they are documents there. These are read every pass and by the executor, where a typo in a key
should be a type error, not a ``KeyError`` at 3am.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Failure:
    """Consecutive failures of one change key with one spec hash (the backoff and Stalled count)."""

    key: str
    spec_hash: str
    count: int
    last_error: str
    updated_at: float

    @classmethod
    def of(cls, r: Mapping[Any, Any]) -> Failure:
        return cls(str(r["key"]), str(r["spec_hash"]), int(r["count"]), str(r["last_error"] or ""),
                   float(r["updated_at"]))


@dataclass(frozen=True, slots=True)
class ActiveExecution:
    """An execution still marked pending or running, and the process that owns it."""

    id: str
    key: str
    owner: str
    application: str
    cluster: str
    region: str
    commit: str

    @classmethod
    def of(cls, r: Mapping[Any, Any]) -> ActiveExecution:
        return cls(str(r["id"]), str(r["key"]), str(r["owner"]), str(r["application"]), str(r["cluster"]),
                   str(r["region"]), str(r["commit"]))

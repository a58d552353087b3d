"""The durable outbox: one row per (event, target), delivered in order, kept in the state store.

The feeder tails the ``events`` table from a cursor kept here and inserts a
row for every target that wants an event, in the same transaction that moves
the cursor: a crash either loses neither or repeats nothing (the (event,
target) pair is unique). Senders take the oldest pending row of their target;
a row ends ``delivered`` or ``dropped`` (with the reason), and a target's
counters and last error live beside the rows so ``reconciler status`` in
another process shows them.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from reconciler.core import errors
from reconciler.notifications import settings as settings_mod
from reconciler.state import store as store_mod

metadata = sa.MetaData()

rows = sa.Table(
    "notification_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.Integer, nullable=False),
    sa.Column("target", sa.String(100), nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("application", sa.String(100), nullable=False, default=""),
    sa.Column("event_ts", sa.Float, nullable=False),
    sa.Column("state", sa.String(20), nullable=False),  # pending | delivered | dropped
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_at", sa.Float, nullable=False),
    sa.Column("last_error", sa.Text, nullable=False, default=""),
    sa.Column("done_at", sa.Float),
    sa.Column("payload", sa.Text, nullable=False),
    sa.UniqueConstraint("event_id", "target", name="uq_notification_outbox_event_target"),
    sa.Index("ix_notification_outbox_target_state", "target", "state", "id"),
)

cursors = sa.Table(
    "notification_cursor",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("event_id", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

targets = sa.Table(
    "notification_targets",
    metadata,
    sa.Column("target", sa.String(100), primary_key=True),
    sa.Column("delivered", sa.Integer, nullable=False, default=0),
    sa.Column("failed", sa.Integer, nullable=False, default=0),
    sa.Column("dropped", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text, nullable=False, default=""),
    sa.Column("last_error_at", sa.Float),
    sa.Column("last_delivered_at", sa.Float),
)

PENDING, DELIVERED, DROPPED = "pending", "delivered", "dropped"
FEEDER = "feeder"


@dataclass(frozen=True, slots=True)
class Entry:
    """A row to add: what ``enqueue`` takes."""

    event_id: int
    target: str
    kind: str
    application: str
    event_ts: float
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    event_id: int
    target: str
    kind: str
    event_ts: float
    attempts: int
    next_at: float
    last_error: str
    payload: dict[str, Any]


def _insert_ignoring_duplicates(conn: Connection, values: list[dict[str, Any]]) -> None:
    dialect = conn.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql  # noqa: PLC0415 - only a PostgreSQL store loads it (~2 MB)

        conn.execute(postgresql.insert(rows).values(values).on_conflict_do_nothing(
            index_elements=["event_id", "target"]))
    elif dialect == "sqlite":
        conn.execute(sqlite.insert(rows).values(values).on_conflict_do_nothing(
            index_elements=["event_id", "target"]))
    else:  # pragma: no cover - the store supports SQLite and PostgreSQL only
        for v in values:
            exists = conn.execute(sa.select(rows.c.id).where(
                rows.c.event_id == v["event_id"], rows.c.target == v["target"])).first()
            if exists is None:
                conn.execute(rows.insert().values(**v))


_created: weakref.WeakSet[Engine] = weakref.WeakSet()
_created_lock = threading.Lock()


def _create_tables(store: store_mod.Store) -> None:
    """Once per store engine; the daemon's threads and a CLI process may all get here at once."""
    with _created_lock:
        if store.engine in _created:
            return
        try:
            metadata.create_all(store.engine)
        except SQLAlchemyError:  # another process created them between the check and the CREATE
            try:
                metadata.create_all(store.engine)
            except SQLAlchemyError as exc:
                raise errors.StoreError(f"state store {store_mod.redact(store.url)}: cannot create the "
                                        f"notification tables: {exc}") from exc
        _created.add(store.engine)


class Outbox:
    def __init__(self, store: store_mod.Store) -> None:
        self.store = store
        _create_tables(store)

    # ------------------------------------------------------------------ feeding

    def cursor(self, name: str = FEEDER) -> int | None:
        with self.store.tx() as c:
            value = c.execute(sa.select(cursors.c.event_id).where(cursors.c.name == name)).scalar()
        return None if value is None else int(value)

    def enqueue(self, entries: Sequence[Entry], *, cursor: int, now: float, name: str = FEEDER) -> None:
        """Add ``entries`` (duplicates of an (event, target) are ignored) and move the cursor, atomically."""
        with self.store.tx() as c:
            if entries:
                _insert_ignoring_duplicates(c, [
                    {"event_id": e.event_id, "target": e.target, "kind": e.kind, "application": e.application,
                     "event_ts": e.event_ts, "state": PENDING, "attempts": 0, "next_at": 0.0, "last_error": "",
                     "payload": json.dumps(e.payload, sort_keys=True)}
                    for e in entries])
            moved = c.execute(cursors.update().where(cursors.c.name == name)
                              .values(event_id=cursor, updated_at=now)).rowcount
            if not moved:
                c.execute(cursors.insert().values(name=name, event_id=cursor, updated_at=now))

    # ------------------------------------------------------------------ delivering

    def head(self, target: str) -> Row | None:
        """The oldest pending row of ``target``: delivery is in order, so nothing after it goes first."""
        with self.store.tx() as c:
            r = c.execute(sa.select(rows).where(rows.c.target == target, rows.c.state == PENDING)
                          .order_by(rows.c.id).limit(1)).mappings().first()
        if r is None:
            return None
        return Row(int(r["id"]), int(r["event_id"]), str(r["target"]), str(r["kind"]), float(r["event_ts"]),
                   int(r["attempts"]), float(r["next_at"]), str(r["last_error"]), json.loads(r["payload"]))

    def delivered(self, row: Row, now: float) -> None:
        with self.store.tx() as c:
            c.execute(rows.update().where(rows.c.id == row.id)
                      .values(state=DELIVERED, attempts=row.attempts + 1, done_at=now))
            self._count(c, row.target, delivered=1, last_delivered_at=now)

    def failed(self, row: Row, now: float, *, error: str, next_at: float) -> None:
        with self.store.tx() as c:
            c.execute(rows.update().where(rows.c.id == row.id)
                      .values(attempts=row.attempts + 1, next_at=next_at, last_error=error))
            self._count(c, row.target, failed=1, last_error=error, last_error_at=now)

    def dropped(self, row: Row, now: float, *, reason: str, attempted: bool = False) -> None:
        with self.store.tx() as c:
            c.execute(rows.update().where(rows.c.id == row.id)
                      .values(state=DROPPED, done_at=now, last_error=reason,
                              attempts=row.attempts + (1 if attempted else 0)))
            extra: dict[str, Any] = {"last_error": reason, "last_error_at": now} if attempted else {}
            self._count(c, row.target, dropped=1, **extra)

    def drop_pending(self, target_names: Iterable[str], now: float, *, reason: str) -> int:
        """Drop every pending row of these targets (removed from the config); returns how many."""
        names = list(target_names)
        if not names:
            return 0
        with self.store.tx() as c:
            n = c.execute(rows.update().where(rows.c.target.in_(names), rows.c.state == PENDING)
                          .values(state=DROPPED, done_at=now, last_error=reason)).rowcount
        return int(n or 0)

    def prune(self, before: float) -> int:
        """Forget delivered and dropped rows that ended before ``before`` (the counters stay)."""
        with self.store.tx() as c:
            n = c.execute(rows.delete().where(rows.c.state != PENDING, rows.c.done_at < before)).rowcount
        return int(n or 0)

    def _count(self, c: Connection, target: str, *, delivered: int = 0, failed: int = 0, dropped: int = 0,
               **values: Any) -> None:
        updated = c.execute(targets.update().where(targets.c.target == target).values(
            delivered=targets.c.delivered + delivered, failed=targets.c.failed + failed,
            dropped=targets.c.dropped + dropped, **values)).rowcount
        if not updated:
            c.execute(targets.insert().values(target=target, delivered=delivered, failed=failed, dropped=dropped,
                                              **({"last_error": ""} | values)))

    # ------------------------------------------------------------------ reading

    def depth(self) -> dict[str, int]:
        """Pending rows per target."""
        with self.store.tx() as c:
            result = c.execute(sa.select(rows.c.target, sa.func.count()).where(rows.c.state == PENDING)
                               .group_by(rows.c.target)).all()
        return {str(t): int(n) for t, n in result}

    def pending(self, target: str) -> int:
        """Pending rows of one target (an index range, not a scan)."""
        with self.store.tx() as c:
            return int(c.execute(sa.select(sa.func.count()).select_from(rows).where(
                rows.c.target == target, rows.c.state == PENDING)).scalar() or 0)

    def rows_of(self, target: str) -> list[dict[str, Any]]:
        with self.store.tx() as c:
            found = c.execute(sa.select(rows).where(rows.c.target == target).order_by(rows.c.id)).mappings().all()
        return [dict(r) | {"payload": json.loads(r["payload"])} for r in found]

    def summary(self, names: Iterable[tuple[str, str]], now: float) -> dict[str, dict[str, Any]]:
        """Per configured (name, type): queue depth, counters, last error, and whether it is failing now."""
        depth = self.depth()
        with self.store.tx() as c:
            stats = {r["target"]: dict(r) for r in c.execute(sa.select(targets)).mappings().all()}
            oldest = dict(c.execute(sa.select(rows.c.target, sa.func.min(rows.c.event_ts))
                                    .where(rows.c.state == PENDING).group_by(rows.c.target)).all())
        out: dict[str, dict[str, Any]] = {}
        for name, kind in names:
            s = stats.get(name, {})
            err_at, ok_at = s.get("last_error_at"), s.get("last_delivered_at")
            out[name] = {
                "type": kind,
                "pending": depth.get(name, 0),
                "oldest_pending_age_s": round(now - float(oldest[name]), 1) if name in oldest else None,
                "delivered": int(s.get("delivered", 0)),
                "failed_attempts": int(s.get("failed", 0)),
                "dropped": int(s.get("dropped", 0)),
                "last_error": s.get("last_error") or "",
                "last_error_at": err_at,
                "last_delivered_at": ok_at,
                "failing": err_at is not None and (ok_at is None or err_at > ok_at),
            }
        return out


def status(store: store_mod.Store, settings: settings_mod.NotificationSettings, now: float) -> dict[str, Any]:
    """What ``reconciler status`` shows per target (depth, counters, last error); {} without targets."""
    if not settings.enabled:
        return {}
    return {"targets": Outbox(store).summary([(t.name, t.type) for t in settings.targets], now)}

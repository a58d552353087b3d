"""Replicas and their claims on clusters, in the shared database (several daemons on PostgreSQL).

``replicas`` holds one row per process with a heartbeat; ``claims`` one row per
cluster key held by a replica, with a lease ``generation`` that only ever grows
(a released or lapsed claim keeps its row, so a new claim always gets a higher
number). The generation is the fencing token: while an execution runs, every
transaction it makes first proves ``(key, owner, generation)`` is current and
unexpired (``check``), with a share lock so no takeover commits meanwhile. A
replica that was paused past its lease wakes up to a refused write, before it
can call a provider. Expiry is judged by the database's clock, never the
replicas', so clock skew between hosts cannot stretch a lease.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine

from reconciler.core import errors

metadata = sa.MetaData()

replicas = sa.Table(
    "replicas",
    metadata,
    sa.Column("id", sa.String(100), primary_key=True),
    sa.Column("host", sa.String(200), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("role", sa.String(20), nullable=False),  # daemon (shares the work) | cli (a one-off apply)
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("ready", sa.Boolean, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
)

claims = sa.Table(
    "claims",
    metadata,
    sa.Column("key", sa.String(300), primary_key=True),
    sa.Column("owner", sa.String(100), nullable=False, index=True),
    sa.Column("generation", sa.BigInteger, nullable=False),
    sa.Column("claimed_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)


@dataclass(frozen=True, slots=True)
class Fence:
    """What an execution proves with each write: it still holds ``key`` at ``generation``."""

    key: str
    owner: str
    generation: int


def now_expr(conn: Connection) -> sa.ColumnElement[float]:
    """The database's wall clock in epoch seconds, as SQL."""
    if conn.dialect.name == "postgresql":
        return sa.cast(sa.extract("epoch", sa.func.clock_timestamp()), sa.Float)
    return sa.cast((sa.func.julianday("now") - 2440587.5) * 86400.0, sa.Float)


def db_now(conn: Connection) -> float:
    return float(conn.execute(sa.select(now_expr(conn))).scalar_one())


def guard(conn: Connection, seconds: float) -> None:
    """Bound this transaction's waits on PostgreSQL: a lock held by a paused replica fails the wait after
    ``seconds``, and the server ends a session left idle in a transaction that long (freeing its locks),
    so a frozen process can never hold a takeover back past ``ha.takeover``."""
    if conn.dialect.name == "postgresql":
        ms = max(int(seconds * 1000), 1)
        conn.execute(sa.text(f"SET LOCAL lock_timeout = {ms}"))
        conn.execute(sa.text(f"SET LOCAL idle_in_transaction_session_timeout = {ms}"))


def check(conn: Connection, fence: Fence) -> None:
    """Raise ``Fenced`` unless ``fence`` is the current, unexpired claim (share-locked until commit)."""
    q = sa.select(claims.c.generation).where(
        claims.c.key == fence.key, claims.c.owner == fence.owner, claims.c.generation == fence.generation,
        claims.c.expires_at > now_expr(conn),
    )
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(read=True)
    if conn.execute(q).first() is None:
        row = conn.execute(sa.select(claims.c.owner, claims.c.generation).where(claims.c.key == fence.key)).first()
        now_held = f"held by {row.owner} at generation {row.generation}" if row else "not held"
        raise errors.Fenced(f"{fence.key}: claim generation {fence.generation} of {fence.owner} is no longer "
                            f"current ({now_held}); write refused")


def _insert(conn: Connection) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql  # noqa: PLC0415 - only a PostgreSQL store loads it (~2 MB)

        return postgresql.insert(claims)
    return sqlite_dialect.insert(claims)


class Claims:
    """The membership and claim operations of one replica (``owner``) on one database."""

    def __init__(self, engine: Engine, owner: str, *, guard_s: float = 5.0) -> None:
        self.engine = engine
        self.owner = owner
        self.guard_s = guard_s

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            guard(conn, self.guard_s)
            yield conn

    def heartbeat(self, *, host: str, pid: int, role: str, started_at: float, ttl: float, ready: bool,
                  note: str) -> dict[str, int]:
        """Say this replica lives for ``ttl`` more seconds; renew its unexpired claims. Returns them
        (``{key: generation}``); a claim that lapsed is not revived (another replica may own it now)."""
        try:
            with self._tx() as c:
                now = db_now(c)
                values = {"heartbeat_at": now, "expires_at": now + ttl, "ready": ready, "note": note[:500]}
                if not c.execute(replicas.update().where(replicas.c.id == self.owner).values(**values)).rowcount:
                    c.execute(replicas.insert().values(id=self.owner, host=host, pid=pid, role=role,
                                                       started_at=started_at, **values))
                c.execute(claims.update().where(claims.c.owner == self.owner, claims.c.expires_at > now)
                          .values(expires_at=now + ttl))
                rows = c.execute(sa.select(claims.c.key, claims.c.generation).where(
                    claims.c.owner == self.owner, claims.c.expires_at > now)).all()
        except sa.exc.SQLAlchemyError as exc:
            raise errors.StoreError(f"heartbeat: {exc}") from exc
        return {str(r.key): int(r.generation) for r in rows}

    def members(self, role: str = "daemon") -> list[str]:
        """The replicas whose heartbeat has not lapsed."""
        try:
            with self._tx() as c:
                rows = c.execute(sa.select(replicas.c.id).where(
                    replicas.c.role == role, replicas.c.expires_at > now_expr(c))).all()
        except sa.exc.SQLAlchemyError as exc:
            raise errors.StoreError(f"reading the replica group: {exc}") from exc
        return sorted(str(r.id) for r in rows)

    def claim(self, keys: Iterable[str], ttl: float, *, taken: set[str] | None = None) -> dict[str, int]:
        """Take each free or lapsed key (a new, higher generation), keep the ones already held;
        returns ``{key: generation}`` of those this replica holds now. Keys whose previous holder was
        another replica are added to ``taken`` (what that one did may be newer than what was planned)."""
        held: dict[str, int] = {}
        try:
            with self._tx() as c:
                now = db_now(c)
                for key in sorted(set(keys)):  # one order for every replica: no deadlock between two claimers
                    ins = _insert(c).values(key=key, owner=self.owner, generation=1, claimed_at=now,
                                            expires_at=now + ttl).on_conflict_do_nothing(index_elements=["key"])
                    if c.execute(ins.returning(claims.c.generation)).first() is not None:
                        held[key] = 1
                        continue
                    before = c.execute(sa.select(claims.c.owner).where(claims.c.key == key)).scalar()
                    moved = c.execute(claims.update().where(claims.c.key == key, claims.c.expires_at <= now).values(
                        owner=self.owner, generation=claims.c.generation + 1, claimed_at=now,
                        expires_at=now + ttl)).rowcount
                    if moved and before != self.owner and taken is not None:
                        taken.add(key)
                    row = c.execute(sa.select(claims).where(claims.c.key == key)).first()
                    if row is not None and row.owner == self.owner and row.expires_at > now:
                        held[key] = int(row.generation)
        except sa.exc.SQLAlchemyError as exc:
            raise errors.StoreError(f"claiming clusters: {exc}") from exc
        return held

    def release(self, held: dict[str, int]) -> None:
        """Give up claims (their rows stay, expired, so the next generation is higher)."""
        if not held:
            return
        with self._tx() as c:
            for key, gen in sorted(held.items()):
                c.execute(claims.update().where(claims.c.key == key, claims.c.owner == self.owner,
                                                claims.c.generation == gen).values(expires_at=0.0))

    def leave(self) -> None:
        """A clean stop: every claim released and the membership row gone, so others take over at once."""
        with self._tx() as c:
            c.execute(claims.update().where(claims.c.owner == self.owner).values(expires_at=0.0))
            c.execute(replicas.delete().where(replicas.c.id == self.owner))

    def forget_dead(self, older_than: float) -> None:
        """Rows of replicas silent for ``older_than`` seconds go (status keeps showing recent deaths)."""
        with self._tx() as c:
            c.execute(replicas.delete().where(replicas.c.expires_at < now_expr(c) - older_than))


def view(engine: Engine) -> dict[str, Any]:
    """Replicas and claims as ``status`` shows them (ages in seconds by the database's clock)."""
    with engine.begin() as c:
        if not sa.inspect(c).has_table("replicas"):
            return {"replicas": [], "claims": []}
        now = db_now(c)
        reps = c.execute(sa.select(replicas).order_by(replicas.c.started_at)).mappings().all()
        held = c.execute(sa.select(claims).where(claims.c.expires_at > now).order_by(claims.c.key)).mappings().all()
    counts: dict[str, int] = {}
    for h in held:
        counts[h["owner"]] = counts.get(h["owner"], 0) + 1
    return {
        "replicas": [{"id": r["id"], "host": r["host"], "pid": r["pid"], "role": r["role"],
                      "live": r["expires_at"] > now, "ready": bool(r["ready"]) and r["expires_at"] > now,
                      "note": r["note"], "heartbeat_age_s": round(now - r["heartbeat_at"], 3),
                      "started_at": r["started_at"], "claims": counts.get(r["id"], 0)} for r in reps],
        "claims": [{"key": h["key"], "owner": h["owner"], "generation": h["generation"],
                    "expires_in_s": round(h["expires_at"] - now, 3)} for h in held],
    }

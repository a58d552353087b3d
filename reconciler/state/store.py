"""Durable state: executions and their steps, history, leases, approvals, pauses, failures.

Written with SQLAlchemy Core so the same statements run on SQLite (WAL mode,
the embedded default) and on PostgreSQL (several daemons sharing work). Every
write is its own short transaction: a ``kill -9`` between two calls loses
nothing that was recorded.

Why it is this long: ``Store`` has one short method per operation on each table (executions, steps, history,
leases, approvals, pauses, failures, the key-value table), and keeping every statement beside the table
definitions is what lets the column migrations and both dialects be checked in one place.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from reconciler import logs
from reconciler.core import errors, model
from reconciler.state import claims, migrate
from reconciler.state import rows as rows_mod

log = logging.getLogger("reconciler.store")  # the name log filters know; kept when the module moved

metadata = sa.MetaData()

kv = sa.Table(
    "kv",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

executions = sa.Table(
    "executions",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("plan_id", sa.String(40), nullable=False),
    sa.Column("change_id", sa.String(40), nullable=False),
    sa.Column("commit", sa.String(64), nullable=False),
    sa.Column("key", sa.String(300), nullable=False, index=True),
    sa.Column("application", sa.String(100), nullable=False, index=True),
    sa.Column("cluster", sa.String(200), nullable=False),
    sa.Column("provider", sa.String(50), nullable=False),
    sa.Column("account", sa.String(100), nullable=False),
    sa.Column("region", sa.String(100), nullable=False),
    sa.Column("action", sa.String(20), nullable=False),
    sa.Column("spec_hash", sa.String(40), nullable=False),
    sa.Column("state", sa.String(20), nullable=False, index=True),
    sa.Column("owner", sa.String(100), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Column("error", sa.Text),
    sa.Column("change", sa.Text, nullable=False),
)

steps = sa.Table(
    "steps",
    metadata,
    sa.Column("execution_id", sa.String(40), primary_key=True),
    sa.Column("idx", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("server_group", sa.String(200), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("started_at", sa.Float),
    sa.Column("ended_at", sa.Float),
    sa.Column("error", sa.Text),
    sa.Column("description", sa.Text, nullable=False, default=""),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.Float, nullable=False, index=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("application", sa.String(100), nullable=False, default=""),
    sa.Column("cluster", sa.String(200), nullable=False, default=""),
    sa.Column("region", sa.String(100), nullable=False, default=""),
    sa.Column("execution_id", sa.String(40), nullable=False, default=""),
    sa.Column("commit", sa.String(64), nullable=False, default=""),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False, default=""),  # JSON: what a notification or tool needs
)

leases = sa.Table(
    "leases",
    metadata,
    sa.Column("key", sa.String(300), primary_key=True),
    sa.Column("owner", sa.String(100), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)

approvals = sa.Table(
    "approvals",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("plan_id", sa.String(40), nullable=False, index=True),
    sa.Column("change_id", sa.String(40), nullable=False, default=""),
    sa.Column("decision", sa.String(20), nullable=False),
    sa.Column("by", sa.String(200), nullable=False),
    sa.Column("comment", sa.Text, nullable=False, default=""),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)

pauses = sa.Table(
    "pauses",
    metadata,
    sa.Column("target", sa.String(200), primary_key=True),
    sa.Column("by", sa.String(200), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("at", sa.Float, nullable=False),
)

failures = sa.Table(
    "failures",
    metadata,
    sa.Column("key", sa.String(300), primary_key=True),
    sa.Column("spec_hash", sa.String(40), primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text, nullable=False, default=""),
    sa.Column("updated_at", sa.Float, nullable=False),
)

env_facts = sa.Table(
    "env_facts",
    metadata,
    sa.Column("application", sa.String(100), primary_key=True),
    sa.Column("environment", sa.String(100), primary_key=True),
    sa.Column("version", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(40), primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("detail", sa.Text, nullable=False, default=""),
)
"""What environment constraints are judged on (reconciler.core.environments.Fact): durable, so a
restart mid-soak keeps the soak's start and an approval stays bound to its version."""

ACTIVE_STATES = model.ACTIVE_STATES


def _event(row: Any) -> dict[str, Any]:
    """A history row as a dict, ``detail`` decoded."""
    out = dict(row)
    try:
        out["detail"] = json.loads(out.get("detail") or "{}")
    except ValueError:
        out["detail"] = {}
    return out


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def make_engine(url: str) -> Engine:
    """A SQLAlchemy engine for ``url``; SQLite files get WAL mode and their directory made."""
    if url.startswith("sqlite:///") and not url.endswith(":memory:"):
        folder = Path(url[len("sqlite:///"):]).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise errors.StoreError(f"state store {redact(url)}: cannot create {folder}: {exc.strerror}") from exc
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    try:
        engine = sa.create_engine(url, future=True, pool_pre_ping=True)
    except (SQLAlchemyError, ImportError) as exc:
        raise errors.StoreError(f"state store {redact(url)}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _clean(message: str | None) -> str | None:
    """Stored messages go through the same redaction as log lines (they are shown by status and history)."""
    return None if message is None else logs.redact(message)


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.rsplit("@", maxsplit=1)[-1]


def _baseline(conn: Connection) -> None:
    """Version 1: the tables of releases before versioned schemas (``create_all`` is a no-op on them)."""
    metadata.create_all(conn)


def _replicas_and_claims(conn: Connection) -> None:
    """Version 2: membership and claims of several replicas on one database (see ``claims``)."""
    claims.metadata.create_all(conn)


def _every_start(conn: Connection) -> None:
    metadata.create_all(conn)
    migrate.add_missing_columns(conn, metadata)


SCHEMA = (
    migrate.Step(1, "baseline", _baseline),
    migrate.Step(2, "replicas and claims", _replicas_and_claims),
)


class Store:
    """All durable state of one reconciler installation."""

    def __init__(self, url: str, *, owner: str | None = None) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.owner = owner or f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._fence = threading.local()
        self.guard_s = 5.0  # fenced transactions: lock and idle limits on PostgreSQL (see claims.guard)
        try:
            self.schema_version = migrate.upgrade(self.engine, SCHEMA, always=_every_start)
        except errors.StoreError as exc:
            raise errors.StoreError(f"state store {redact(url)}: {exc}") from exc

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def fenced(self, fence: claims.Fence | None) -> Iterator[None]:
        """Every transaction of this thread within proves ``fence`` first (``claims.check``), or raises
        ``errors.Fenced`` without writing: how an execution's writes carry its lease generation."""
        before = getattr(self._fence, "value", None)
        self._fence.value = fence
        try:
            yield
        finally:
            self._fence.value = before

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                fence = getattr(self._fence, "value", None)
                if fence is not None:
                    claims.guard(conn, self.guard_s)
                    claims.check(conn, fence)
                yield conn
        except IntegrityError:
            raise
        except SQLAlchemyError as exc:
            raise errors.StoreError(f"state store {redact(self.url)}: {exc}") from exc

    # ------------------------------------------------------------------ kv

    def get(self, key: str, default: Any = None) -> Any:
        with self.tx() as c:
            row = c.execute(sa.select(kv.c.value).where(kv.c.key == key)).first()
        return json.loads(row[0]) if row else default

    def put(self, key: str, value: Any, now: float) -> None:
        self.put_text(key, json.dumps(value, sort_keys=True), now)

    def put_text(self, key: str, data: str, now: float) -> None:
        """``put`` of a value its caller encoded as JSON (the status document, by a faster encoder)."""
        with self.tx() as c:
            updated = c.execute(
                kv.update().where(kv.c.key == key).values(value=data, updated_at=now)
            ).rowcount
            if not updated:
                c.execute(kv.insert().values(key=key, value=data, updated_at=now))

    def delete(self, key: str) -> None:
        with self.tx() as c:
            c.execute(kv.delete().where(kv.c.key == key))

    def get_prefix(self, prefix: str) -> dict[str, Any]:
        """Every key starting with ``prefix`` and its value (progress records of work in flight)."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self.tx() as c:
            rows = c.execute(sa.select(kv.c.key, kv.c.value).where(kv.c.key.like(f"{escaped}%", escape="\\")))
            return {k: json.loads(v) for k, v in rows}

    def writable(self, now: float) -> bool:
        try:
            self.put("heartbeat", now, now)
        except errors.StoreError:
            return False
        return True

    # ------------------------------------------------------------------ leases

    def acquire_lease(self, key: str, now: float, ttl: float) -> bool:
        """Take ``key`` for this owner unless another owner holds an unexpired lease."""
        with self.tx() as c:
            row = c.execute(sa.select(leases).where(leases.c.key == key)).first()
            if row is None:
                try:
                    c.execute(leases.insert().values(key=key, owner=self.owner, expires_at=now + ttl))
                except IntegrityError:
                    return False
                return True
            if row.owner != self.owner and row.expires_at > now:
                return False
            res = c.execute(
                leases.update()
                .where(leases.c.key == key, leases.c.owner == row.owner, leases.c.expires_at == row.expires_at)
                .values(owner=self.owner, expires_at=now + ttl)
            )
            return res.rowcount == 1

    def take_over_lease(self, key: str, dead_owner: str, now: float, ttl: float) -> bool:
        """Take ``key`` from ``dead_owner`` (a process known gone) before its lease expires: a compare and
        swap on the owner, so of two takers one wins, and the lease lasts one ``ttl`` like any other."""
        with self.tx() as c:
            res = c.execute(leases.update().where(leases.c.key == key, leases.c.owner == dead_owner)
                            .values(owner=self.owner, expires_at=now + ttl))
            return res.rowcount == 1

    def renew_lease(self, key: str, now: float, ttl: float) -> bool:
        with self.tx() as c:
            res = c.execute(
                leases.update()
                .where(leases.c.key == key, leases.c.owner == self.owner)
                .values(expires_at=now + ttl)
            )
            return res.rowcount == 1

    def release_lease(self, key: str) -> None:
        with self.tx() as c:
            c.execute(leases.delete().where(leases.c.key == key, leases.c.owner == self.owner))

    def lease_holder(self, key: str, now: float) -> str | None:
        with self.tx() as c:
            row = c.execute(sa.select(leases).where(leases.c.key == key)).first()
        if row is None or row.expires_at <= now:
            return None
        return str(row.owner)

    # ------------------------------------------------------------------ executions

    def start_execution(self, ex: dict[str, Any], step_rows: list[dict[str, Any]], now: float) -> str:
        ex_id = ex.get("id") or uuid.uuid4().hex[:12]
        with self.tx() as c:
            c.execute(
                executions.insert().values(
                    id=ex_id, owner=self.owner, created_at=now, updated_at=now, state=model.ExecState.RUNNING,
                    **{k: v for k, v in ex.items() if k != "id"},
                )
            )
            for i, s in enumerate(step_rows):
                c.execute(steps.insert().values(execution_id=ex_id, idx=i, state=model.StepState.PENDING, attempts=0,
                                                **s))
        return ex_id

    def step_started(self, ex_id: str, idx: int, now: float) -> None:
        with self.tx() as c:
            c.execute(
                steps.update()
                .where(steps.c.execution_id == ex_id, steps.c.idx == idx)
                .values(state=model.StepState.RUNNING, started_at=now, attempts=steps.c.attempts + 1)
            )
            c.execute(executions.update().where(executions.c.id == ex_id).values(updated_at=now))

    def step_ended(self, ex_id: str, idx: int, now: float, *, state: model.StepState, error: str | None = None) -> None:
        with self.tx() as c:
            c.execute(
                steps.update()
                .where(steps.c.execution_id == ex_id, steps.c.idx == idx)
                .values(state=state, ended_at=now, error=_clean(error))
            )
            c.execute(executions.update().where(executions.c.id == ex_id).values(updated_at=now))

    def add_steps(self, ex_id: str, step_rows: list[dict[str, Any]]) -> int:
        """Append steps (rollback) and return the index of the first one."""
        with self.tx() as c:
            last = c.execute(
                sa.select(sa.func.max(steps.c.idx)).where(steps.c.execution_id == ex_id)
            ).scalar()
            start = (last if last is not None else -1) + 1
            for i, s in enumerate(step_rows):
                c.execute(
                    steps.insert().values(execution_id=ex_id, idx=start + i, state=model.StepState.PENDING,
                                          attempts=0, **s)
                )
        return start

    def finish_execution(self, ex_id: str, now: float, *, state: model.ExecState, error: str | None = None) -> None:
        with self.tx() as c:
            c.execute(
                executions.update()
                .where(executions.c.id == ex_id)
                .values(state=state, finished_at=now, updated_at=now, error=_clean(error))
            )

    def active_executions(self) -> list[rows_mod.ActiveExecution]:
        with self.tx() as c:
            rows = c.execute(
                sa.select(executions).where(executions.c.state.in_(ACTIVE_STATES))
            ).mappings().all()
        return [rows_mod.ActiveExecution.of(r) for r in rows]

    def executions(self, *, limit: int = 50, application: str | None = None) -> list[dict[str, Any]]:
        q = sa.select(executions).order_by(executions.c.created_at.desc()).limit(limit)
        if application:
            q = q.where(executions.c.application == application)
        with self.tx() as c:
            rows = c.execute(q).mappings().all()
        return [dict(r) for r in rows]

    def execution(self, ex_id: str) -> dict[str, Any] | None:
        with self.tx() as c:
            row = c.execute(sa.select(executions).where(executions.c.id == ex_id)).mappings().first()
        return dict(row) if row else None

    def steps_of(self, ex_id: str) -> list[dict[str, Any]]:
        with self.tx() as c:
            rows = c.execute(
                sa.select(steps).where(steps.c.execution_id == ex_id).order_by(steps.c.idx)
            ).mappings().all()
        return [dict(r) for r in rows]

    # ------------------------------------------------------------------ history

    def record(
        self,
        kind: str,
        message: str,
        now: float,
        *,
        application: str = "",
        cluster: str = "",
        region: str = "",
        execution_id: str = "",
        commit: str = "",
        detail: Mapping[str, Any] | None = None,
    ) -> int:
        """Append one history event; returns its id (ids only grow: readers tail the table by id)."""
        with self.tx() as c:
            res = c.execute(
                events.insert().values(
                    ts=now, kind=kind, message=logs.redact(message), application=application, cluster=cluster,
                    region=region, execution_id=execution_id, commit=commit,
                    detail=logs.redact(json.dumps(detail, sort_keys=True, default=str)) if detail else "",
                )
            )
            key = res.inserted_primary_key
        return int(key[0]) if key else 0

    def record_many(self, items: Sequence[tuple[str, str, Mapping[str, Any]]], now: float) -> None:
        """Append (kind, message, ``record``'s keyword arguments) events in one transaction: a commit
        that touches every application's status records one event each, not one transaction each."""
        if not items:
            return
        rows = [{"ts": now, "kind": kind, "message": logs.redact(message), "application": kw.get("application", ""),
                 "cluster": kw.get("cluster", ""), "region": kw.get("region", ""),
                 "execution_id": kw.get("execution_id", ""), "commit": kw.get("commit", ""),
                 "detail": logs.redact(json.dumps(kw["detail"], sort_keys=True, default=str))
                 if kw.get("detail") else ""} for kind, message, kw in items]
        with self.tx() as c:
            c.execute(events.insert(), rows)  # in order: ids grow as they were listed

    def history(self, *, limit: int = 50, application: str | None = None,
                kinds: Sequence[str] = ()) -> list[dict[str, Any]]:
        """The newest events first."""
        q = sa.select(events).order_by(events.c.id.desc()).limit(limit)
        if application:
            q = q.where(events.c.application == application)
        if kinds:
            q = q.where(events.c.kind.in_(list(kinds)))
        with self.tx() as c:
            rows = c.execute(q).mappings().all()
        return [_event(r) for r in rows]

    def events_after(
        self, after_id: int, *, limit: int = 100, application: str | None = None,
        kinds: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """Events with an id above ``after_id``, oldest first (the event stream and the outbox tail this)."""
        q = sa.select(events).where(events.c.id > after_id).order_by(events.c.id).limit(limit)
        if application:
            q = q.where(events.c.application == application)
        if kinds:
            q = q.where(events.c.kind.in_(list(kinds)))
        with self.tx() as c:
            rows = c.execute(q).mappings().all()
        return [_event(r) for r in rows]

    def last_event_id(self) -> int:
        with self.tx() as c:
            value = c.execute(sa.select(sa.func.max(events.c.id))).scalar()
        return int(value or 0)

    # ------------------------------------------------------------------ failures (bounded retries)

    def failure_count(self, key: str, spec_hash: str) -> int:
        with self.tx() as c:
            row = c.execute(
                sa.select(failures.c.count).where(failures.c.key == key, failures.c.spec_hash == spec_hash)
            ).first()
        return int(row[0]) if row else 0

    def failures(self) -> dict[tuple[str, str], rows_mod.Failure]:
        with self.tx() as c:
            rows = c.execute(sa.select(failures)).mappings().all()
        return {(r["key"], r["spec_hash"]): rows_mod.Failure.of(r) for r in rows}

    def add_failure(self, key: str, spec_hash: str, error: str, now: float) -> int:
        with self.tx() as c:
            row = c.execute(
                sa.select(failures.c.count).where(failures.c.key == key, failures.c.spec_hash == spec_hash)
            ).first()
            if row is None:
                c.execute(failures.insert().values(
                    key=key, spec_hash=spec_hash, count=1, last_error=logs.redact(error), updated_at=now))
                return 1
            c.execute(
                failures.update()
                .where(failures.c.key == key, failures.c.spec_hash == spec_hash)
                .values(count=row[0] + 1, last_error=logs.redact(error), updated_at=now)
            )
            return int(row[0]) + 1

    def clear_failures(self, key: str, *, keep: str | None = None) -> None:
        """Forget the failures of ``key`` (all of them, or those of every spec hash but ``keep``)."""
        with self.tx() as c:
            q = failures.delete().where(failures.c.key == key)
            if keep is not None:
                q = q.where(failures.c.spec_hash != keep)
            c.execute(q)

    # ------------------------------------------------------------------ environment facts

    def env_facts(self, application: str | None = None) -> list[dict[str, Any]]:
        q = sa.select(env_facts)
        if application is not None:
            q = q.where(env_facts.c.application == application)
        with self.tx() as c:
            return [dict(r) for r in c.execute(q).mappings().all()]

    def put_env_fact(self, application: str, environment: str, version: str, kind: str, at: float,
                     detail: str = "") -> None:
        """Insert or replace one fact (the time of a fact already there is replaced too)."""
        key = (env_facts.c.application == application, env_facts.c.environment == environment,
               env_facts.c.version == version, env_facts.c.kind == kind)
        with self.tx() as c:
            c.execute(env_facts.delete().where(*key))
            c.execute(env_facts.insert().values(application=application, environment=environment, version=version,
                                                kind=kind, at=at, detail=logs.redact(detail)))

    def drop_env_fact(self, application: str, environment: str, version: str, kind: str) -> None:
        with self.tx() as c:
            c.execute(env_facts.delete().where(
                env_facts.c.application == application, env_facts.c.environment == environment,
                env_facts.c.version == version, env_facts.c.kind == kind))

    # ------------------------------------------------------------------ approvals and pauses

    def add_approval(
        self, *, plan_id: str, change_id: str, decision: str, by: str, comment: str, now: float, ttl: float
    ) -> dict[str, Any]:
        row = {
            "plan_id": plan_id, "change_id": change_id, "decision": decision, "by": by,
            "comment": comment, "at": now, "expires_at": now + ttl,
        }
        with self.tx() as c:
            c.execute(approvals.insert().values(**row))
        return row

    def approvals(self) -> list[dict[str, Any]]:
        with self.tx() as c:
            rows = c.execute(sa.select(approvals).order_by(approvals.c.id)).mappings().all()
        return [dict(r) for r in rows]

    def pause(self, target: str, *, by: str, reason: str, now: float) -> None:
        with self.tx() as c:
            c.execute(pauses.delete().where(pauses.c.target == target))
            c.execute(pauses.insert().values(target=target, by=by, reason=reason, at=now))

    def resume(self, target: str) -> bool:
        with self.tx() as c:
            return c.execute(pauses.delete().where(pauses.c.target == target)).rowcount > 0

    def pauses(self) -> dict[str, dict[str, Any]]:
        with self.tx() as c:
            rows = c.execute(sa.select(pauses)).mappings().all()
        return {r["target"]: dict(r) for r in rows}

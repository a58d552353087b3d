"""A small versioned schema migrator, safe when several replicas start at once.

The steps run in one transaction that first takes a PostgreSQL advisory lock
(``pg_advisory_xact_lock``): the first replica to start creates the schema, the
others wait on the lock, then find the version current and do nothing. DDL is
transactional in PostgreSQL, so a replica killed half way leaves the previous
version whole. On SQLite (one host) the file's write lock does the same.
Steps only ever add (tables, columns with defaults): a replica of the previous
release keeps working against a schema one version ahead during a rolling upgrade.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from reconciler.core import errors

log = logging.getLogger("reconciler.store")

LOCK_KEY = 0x7265636F6E63  # "reconc": one advisory lock id for every schema change of this product

schema_version = sa.Table(
    "schema_version",
    sa.MetaData(),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("applied_at", sa.Float, nullable=False),
)


@dataclass(frozen=True, slots=True)
class Step:
    version: int
    name: str
    apply: Callable[[Connection], None]


def lock(conn: Connection) -> None:
    """Serialise schema changes across processes until ``conn``'s transaction ends."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})


def current(conn: Connection) -> int:
    if not sa.inspect(conn).has_table(schema_version.name):
        return 0
    return int(conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0)


def upgrade(engine: Engine, steps: Sequence[Step], *, always: Callable[[Connection], None] | None = None) -> int:
    """Apply the steps above the database's version, under the lock; returns the version now in force.

    ``always`` runs last under the same lock at every start (tables and columns added without a step of
    their own: ``create_all`` and ``add_missing_columns`` are no-ops when nothing is missing).
    """
    try:
        with engine.begin() as conn:
            lock(conn)
            schema_version.create(conn, checkfirst=True)
            have = current(conn)
            for step in steps:
                if step.version <= have:
                    continue
                step.apply(conn)
                conn.execute(schema_version.insert().values(version=step.version, name=step.name,
                                                            applied_at=time.time()))
                log.info("state store: schema version %d (%s)", step.version, step.name)
                have = step.version
            if always is not None:
                always(conn)
    except sa.exc.SQLAlchemyError as exc:
        raise errors.StoreError(f"cannot migrate the state store schema: {exc}") from exc
    newest = max((s.version for s in steps), default=0)
    if have > newest:
        log.warning("state store: schema version %d is newer than this release's %d (a newer replica "
                    "upgraded it; steps only add, so this one keeps working)", have, newest)
    return have


def add_missing_columns(conn: Connection, metadata: sa.MetaData) -> None:
    """Columns added to a table after its first release, added to stores made before them.

    ``create_all`` creates missing tables only; a new column needs a default so
    old rows stay valid. Columns are only ever added, never renamed or dropped.
    """
    inspector = sa.inspect(conn)
    for table in metadata.sorted_tables:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            default = getattr(column.default, "arg", None)
            if not isinstance(default, str):
                raise errors.StoreError(f"{table.name}.{column.name}: a new column needs a text default")
            ddl = column.type.compile(dialect=conn.dialect)
            quote = conn.dialect.identifier_preparer.quote
            conn.execute(sa.text(f"ALTER TABLE {quote(table.name)} ADD COLUMN {quote(column.name)} {ddl} "
                                 f"NOT NULL DEFAULT '{default}'"))
            log.info("state store: added column %s.%s", table.name, column.name)

"""What a server group needs remembered that GCE cannot hold mutably.

A MIG's description and its template's labels are fixed at creation, yet min/max change on
resize, a group without backend services still has an enabled/disabled state, and a disabled
group's autoscaler mode must be restored on enable. Those live here, in the state store, one
row per group; a listing reads one region's rows in a single query.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

_meta = sa.MetaData()
_groups = sa.Table(
    "gcp_group_state", _meta,
    sa.Column("project", sa.String(100), primary_key=True),
    sa.Column("region", sa.String(100), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("enabled", sa.Boolean, nullable=True),
    sa.Column("cap_min", sa.Integer, nullable=True),
    sa.Column("cap_max", sa.Integer, nullable=True),
    sa.Column("autoscaler_mode", sa.String(40), nullable=True),
)


@dataclass(frozen=True, slots=True)
class Record:
    enabled: bool | None = None
    cap_min: int | None = None
    cap_max: int | None = None
    autoscaler_mode: str | None = None


class Records:
    """Per-group rows of one project, in the reconciler's state store (SQLite or PostgreSQL)."""

    def __init__(self, engine: sa.engine.Engine, project: str) -> None:
        self.project = project
        self._engine = engine
        _meta.create_all(self._engine)

    def _key(self, region: str, name: str) -> tuple[sa.ColumnElement[bool], ...]:
        return (_groups.c.project == self.project, _groups.c.region == region, _groups.c.name == name)

    def region(self, region: str) -> dict[str, Record]:
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(_groups).where(_groups.c.project == self.project,
                                                         _groups.c.region == region)).all()
        return {r.name: Record(r.enabled, r.cap_min, r.cap_max, r.autoscaler_mode) for r in rows}

    def get(self, region: str, name: str) -> Record:
        with self._engine.connect() as conn:
            r = conn.execute(sa.select(_groups).where(*self._key(region, name))).first()
        return Record(r.enabled, r.cap_min, r.cap_max, r.autoscaler_mode) if r else Record()

    def put(self, region: str, name: str, **values: object) -> None:
        """Set the given columns, leaving the others as they are."""
        with self._engine.begin() as conn:
            found = conn.execute(sa.select(_groups.c.name).where(*self._key(region, name))).first()
            if found is None:
                conn.execute(_groups.insert().values(project=self.project, region=region, name=name, **values))
            else:
                conn.execute(_groups.update().where(*self._key(region, name)).values(**values))

    def forget(self, region: str, name: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(_groups.delete().where(*self._key(region, name)))

    def close(self) -> None:
        self._engine.dispose()

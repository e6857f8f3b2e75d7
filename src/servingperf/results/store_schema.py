"""The results store's current SQL schema (SQLAlchemy Core), shared by SQLite and PostgreSQL.

Terms. A *run* row is one run's identity and where its raw records live (``run_dir``); its
*fingerprint* (what must match for a fair comparison) and *validity* (whether the client measured
it soundly) are JSON, NULL for runs recorded before version 2; *run labels* are its free labels
(release, commit...) one per row, indexed for filtering; a *KPI* row is one
figure of one instance in one phase of a run, with its unit and direction. ``schema_version`` holds
one row per migration applied; the store's version is the highest. These tables are what the code
reads and writes *now*; :mod:`servingperf.results.store_migrations` builds them step by step from
its own frozen copies, and a test checks that a migrated database matches this file. To change the
schema: edit here, bump ``SCHEMA_VERSION``, add a migration step.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    TypeDecorator,
)

SCHEMA_VERSION = 2


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both backends.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so the value is stored as naive UTC
    and read back with UTC attached. Naive datetimes are refused on the way in: their zone is
    unknowable later.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()}: give a time zone (UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _define_tables(metadata: MetaData) -> tuple[Table, Table, Table, Table]:
    schema_version = Table(
        "schema_version",
        metadata,
        Column("version", Integer, primary_key=True, autoincrement=False),
        Column("applied_at", UtcDateTime, nullable=False),
        Column("description", Text, nullable=False),
        Column("servingperf_version", Text, nullable=False),
    )
    runs = Table(
        "runs",
        metadata,
        Column("run_id", Text, primary_key=True),
        Column("scenario", Text, nullable=False),
        Column("kind", Text, nullable=False),
        Column("started_at", UtcDateTime, nullable=False),
        Column("ended_at", UtcDateTime, nullable=True),
        Column("status", Text, nullable=False),
        Column("run_dir", Text, nullable=False),
        Column("platform", Text, nullable=False),
        Column("hardware", Text, nullable=False),
        Column("servingperf_version", Text, nullable=False),
        Column("labels", JSON, nullable=False),
        Column("fingerprint", JSON, nullable=True),  # what must match for a fair comparison
        Column("validity", JSON, nullable=True),  # verdict, reasons and evidence of the run
        Index("ix_runs_started_at", "started_at"),
        Index("ix_runs_scenario_started_at", "scenario", "started_at"),
    )
    run_labels = Table(
        "run_labels",
        metadata,
        Column("run_id", Text, nullable=False),
        Column("key", Text, nullable=False),
        Column("value", Text, nullable=False),
        PrimaryKeyConstraint("run_id", "key", name="pk_run_labels"),
        ForeignKeyConstraint(
            ["run_id"], ["runs.run_id"], ondelete="CASCADE", name="fk_run_labels_run"
        ),
        Index("ix_run_labels_key_value", "key", "value"),
    )
    kpis = Table(
        "kpis",
        metadata,
        Column("run_id", Text, nullable=False),
        Column("instance", Text, nullable=False),
        Column("model", Text, nullable=False),
        Column("phase", Text, nullable=False),
        Column("name", Text, nullable=False),
        Column("value", Float(precision=53), nullable=True),  # NULL stores NaN (SQLite has none)
        Column("unit", Text, nullable=False),
        Column("better", Text, nullable=False),
        Column("n", Integer, nullable=False),
        PrimaryKeyConstraint("run_id", "instance", "phase", "name", name="pk_kpis"),
        ForeignKeyConstraint(["run_id"], ["runs.run_id"], ondelete="CASCADE", name="fk_kpis_run"),
        Index("ix_kpis_name", "name"),
    )
    return schema_version, runs, run_labels, kpis


# Table definitions are immutable descriptions, not state: SQLAlchemy's usual module-level pattern.
METADATA = MetaData()
SCHEMA_VERSION_TABLE, RUNS, RUN_LABELS, KPIS = _define_tables(METADATA)

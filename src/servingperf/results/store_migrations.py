"""Schema versions of the results store and the steps between them.

Terms. A *migration* turns a store at version ``v - 1`` into version ``v``; ``MIGRATIONS[i]``
produces version ``i + 1``, and an empty database is version 0. Each step runs in its own write
transaction (DDL is transactional on SQLite and PostgreSQL), together with its ``schema_version``
row, so a store is always at exactly one version. Two processes opening a new store at once are
serialised: SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's transaction-scoped advisory lock; the second
finds the work done. A store whose version is higher than the code knows is refused, never
downgraded. Steps are frozen history: never edit one that has shipped; add the next.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    inspect,
    select,
    text,
)

from servingperf import __version__
from servingperf.errors import StoreError
from servingperf.results.store_engine import describe, run_in_transaction
from servingperf.results.store_schema import SCHEMA_VERSION_TABLE

# Arbitrary constant naming the migration lock among PostgreSQL advisory locks.
_PG_MIGRATION_LOCK = 0x73706572_66310001
_OUR_TABLES = frozenset({"schema_version", "runs", "run_labels", "kpis"})


@dataclass(frozen=True, slots=True)
class Migration:
    version: int  # the version this step produces
    description: str
    apply: Callable[[Connection], None]


def _v1_initial(conn: Connection) -> None:
    """Version 1, frozen: the tables as first shipped (store_schema.py describes the current ones)."""
    md = MetaData()
    Table(
        "schema_version",
        md,
        Column("version", Integer, primary_key=True, autoincrement=False),
        Column("applied_at", DateTime(timezone=True), nullable=False),
        Column("description", Text, nullable=False),
        Column("servingperf_version", Text, nullable=False),
    )
    Table(
        "runs",
        md,
        Column("run_id", Text, primary_key=True),
        Column("scenario", Text, nullable=False),
        Column("kind", Text, nullable=False),
        Column("started_at", DateTime(timezone=True), nullable=False),
        Column("ended_at", DateTime(timezone=True), nullable=True),
        Column("status", Text, nullable=False),
        Column("run_dir", Text, nullable=False),
        Column("platform", Text, nullable=False),
        Column("hardware", Text, nullable=False),
        Column("servingperf_version", Text, nullable=False),
        Column("labels", JSON, nullable=False),
        Index("ix_runs_started_at", "started_at"),
        Index("ix_runs_scenario_started_at", "scenario", "started_at"),
    )
    Table(
        "run_labels",
        md,
        Column("run_id", Text, nullable=False),
        Column("key", Text, nullable=False),
        Column("value", Text, nullable=False),
        PrimaryKeyConstraint("run_id", "key", name="pk_run_labels"),
        ForeignKeyConstraint(
            ["run_id"], ["runs.run_id"], ondelete="CASCADE", name="fk_run_labels_run"
        ),
        Index("ix_run_labels_key_value", "key", "value"),
    )
    Table(
        "kpis",
        md,
        Column("run_id", Text, nullable=False),
        Column("instance", Text, nullable=False),
        Column("model", Text, nullable=False),
        Column("phase", Text, nullable=False),
        Column("name", Text, nullable=False),
        Column("value", Float(precision=53), nullable=True),
        Column("unit", Text, nullable=False),
        Column("better", Text, nullable=False),
        Column("n", Integer, nullable=False),
        PrimaryKeyConstraint("run_id", "instance", "phase", "name", name="pk_kpis"),
        ForeignKeyConstraint(["run_id"], ["runs.run_id"], ondelete="CASCADE", name="fk_kpis_run"),
        Index("ix_kpis_name", "name"),
    )
    md.create_all(conn)


def _v2_trust(conn: Connection) -> None:
    """Version 2, frozen: each run's comparability fingerprint and validity verdict (JSON, NULL
    for the runs recorded before)."""
    conn.execute(text("ALTER TABLE runs ADD COLUMN fingerprint JSON"))
    conn.execute(text("ALTER TABLE runs ADD COLUMN validity JSON"))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema: runs, run_labels, kpis", _v1_initial),
    Migration(2, "runs: fingerprint and validity", _v2_trust),
)


def read_version(conn: Connection) -> int:
    """The store's schema version; 0 for a database without our tables.

    Raises StoreError for a database that has some of our table names but no ``schema_version``:
    it is not a servingperf store, and we must not write into it.
    """
    tables = set(inspect(conn).get_table_names())
    if "schema_version" not in tables:
        clash = sorted(tables & _OUR_TABLES)
        if clash:
            raise StoreError(
                f"store {describe(conn.engine.url)}: has table(s) {', '.join(clash)} but no"
                " schema_version: not a servingperf store; use another database or file"
            )
        return 0
    version = conn.execute(select(func.max(SCHEMA_VERSION_TABLE.c.version))).scalar_one()
    return int(version or 0)


def _check_not_newer(version: int, target: int, conn: Connection) -> None:
    if version > target:
        raise StoreError(
            f"store {describe(conn.engine.url)}: schema version {version} is newer than this"
            f" servingperf {__version__} understands ({target}); upgrade servingperf"
        )


def upgrade(engine: Engine, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the store to the last version of ``migrations`` step by step; return that version.

    Raises StoreError if the store is newer than the code, or is not a servingperf store.
    """
    expected = list(range(1, len(migrations) + 1))
    if [m.version for m in migrations] != expected:
        raise ValueError("migrations must produce versions 1, 2, ... in order")
    target = len(migrations)

    def current(conn: Connection) -> int:
        version = read_version(conn)
        _check_not_newer(version, target, conn)
        return version

    if (
        run_in_transaction(engine, current, what="reading the schema version", writes=False)
        == target
    ):
        return target

    def step(conn: Connection) -> int:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        version = current(conn)  # re-read under the lock: another process may have migrated
        if version == target:
            return version
        migration = migrations[version]
        migration.apply(conn)
        conn.execute(
            SCHEMA_VERSION_TABLE.insert().values(
                version=migration.version,
                applied_at=datetime.now(UTC),
                description=migration.description,
                servingperf_version=__version__,
            )
        )
        return migration.version

    for _ in range(target):
        if run_in_transaction(engine, step, what="migrating the schema", writes=True) == target:
            break
    return target

"""The results store: every run's identity, labels and KPIs, in SQLite (default) or PostgreSQL.

Terms. A :class:`StoredRun` is one run as the store knows it: who and what (scenario, kind,
platform, hardware, servingperf version), when, whether it completed, its free labels (``release``,
``commit``...), its comparability fingerprint and validity verdict, and ``run_dir``, where its raw
records stay (Parquet; the store only points to them,
so any stored run can be re-analysed from its directory). A :class:`KpiRow` is one figure of one
instance in one phase, with its unit and direction. A *release* is a value of a label (``release``
by default) shared by one or more runs; releases are ordered by their first run.

Writing a run is idempotent: recording the same ``run_id`` again replaces the run row, its labels
and all its KPIs in one transaction. Concurrent writers lose nothing (see
:mod:`servingperf.results.store_engine`). Errors are :class:`~servingperf.errors.StoreError`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from sqlalchemy import Connection, Engine, Row, delete, exists, func, select
from sqlalchemy.dialects import postgresql, sqlite

from servingperf import __version__
from servingperf.errors import StoreError
from servingperf.model.metrics import Better
from servingperf.results.store_engine import create_store_engine, describe, run_in_transaction
from servingperf.results.store_migrations import upgrade
from servingperf.results.store_schema import KPIS, RUN_LABELS, RUNS

RUN_STATUSES = frozenset({"complete", "incomplete"})
_LABEL_KEY = re.compile(r"[A-Za-z0-9_.-]{1,63}")
_IN_CHUNK = 500  # bound on the ids in one IN (...) clause: SQLite limits bound parameters


@dataclass(frozen=True, slots=True)
class StoredRun:
    """One run in the store. Datetimes are timezone-aware (UTC when read back)."""

    run_id: str
    scenario: str
    kind: str
    started_at: datetime
    status: str  # complete | incomplete
    run_dir: str
    platform: str
    hardware: str
    ended_at: datetime | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    servingperf_version: str = __version__
    fingerprint: Mapping[str, str] | None = None  # None: recorded before fingerprints existed
    validity: Mapping[str, Any] | None = None  # {"verdict": ..., "reasons": [...], ...}

    def __post_init__(self) -> None:
        if not self.run_id:
            raise ValueError("run_id must not be empty")
        if self.status not in RUN_STATUSES:
            raise ValueError(
                f"status {self.status!r}: use one of {', '.join(sorted(RUN_STATUSES))}"
            )
        for name, value in (("started_at", self.started_at), ("ended_at", self.ended_at)):
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} {value.isoformat()} is naive: give a time zone (UTC)")
        for key, label in self.labels.items():
            if not isinstance(key, str) or not _LABEL_KEY.fullmatch(key):
                raise ValueError(f"label key {key!r}: use letters, digits, '_', '.', '-' (<= 63)")
            if not isinstance(label, str):
                raise ValueError(f"label {key!r}: value {label!r} is not a string")


@dataclass(frozen=True, slots=True)
class KpiRow:
    """One figure of one instance in one phase of a run. ``value`` may be NaN (no samples)."""

    run_id: str
    instance: str
    model: str
    phase: str
    name: str
    value: float
    unit: str
    better: Better
    n: int


@dataclass(frozen=True, slots=True)
class Release:
    """A value of the release label and the runs carrying it."""

    value: str
    first_started_at: datetime
    last_started_at: datetime
    runs: int


def open_store(url_or_path: str) -> Store:
    """Open (creating or upgrading as needed) the store at a file path or URL.

    Raises StoreError for a bad URL, an unreachable server, a store newer than this code, or a
    database that is not a servingperf store.
    """
    engine = create_store_engine(url_or_path)
    try:
        version = upgrade(engine)
    except BaseException:
        engine.dispose()
        raise
    return Store(engine, version)


class Store:
    """A results store on an open engine; use :func:`open_store`. Close it (or use ``with``)."""

    def __init__(self, engine: Engine, schema_version: int) -> None:
        self._engine = engine
        self.schema_version = schema_version

    @property
    def location(self) -> str:
        """Where the store is, password hidden."""
        return describe(self._engine.url)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._engine.dispose()

    # -- writing -------------------------------------------------------------------------------

    def record_run(self, run: StoredRun, kpis: Sequence[KpiRow]) -> None:
        """Store ``run`` and its KPIs, replacing whatever was stored under its ``run_id``.

        Raises ValueError if a KPI row belongs to another run or repeats (instance, phase, name).
        """
        seen: set[tuple[str, str, str]] = set()
        for row in kpis:
            if row.run_id != run.run_id:
                raise ValueError(f"KPI {row.name} has run_id {row.run_id!r}, not {run.run_id!r}")
            key = (row.instance, row.phase, row.name)
            if key in seen:
                raise ValueError(f"KPI {row.name} of {row.instance}/{row.phase} given twice")
            seen.add(key)
        run_values = _run_values(run)
        label_rows = [{"run_id": run.run_id, "key": k, "value": v} for k, v in run.labels.items()]
        kpi_rows = [_kpi_values(row) for row in kpis]

        def write(conn: Connection) -> None:
            conn.execute(_upsert_run(conn, run_values))
            conn.execute(delete(RUN_LABELS).where(RUN_LABELS.c.run_id == run.run_id))
            conn.execute(delete(KPIS).where(KPIS.c.run_id == run.run_id))
            if label_rows:
                conn.execute(RUN_LABELS.insert(), label_rows)
            if kpi_rows:
                conn.execute(KPIS.insert(), kpi_rows)

        run_in_transaction(self._engine, write, what=f"recording run {run.run_id}", writes=True)

    # -- reading -------------------------------------------------------------------------------

    def runs(
        self,
        filters: Mapping[str, str] | None = None,
        scenario: str | None = None,
        limit: int | None = None,
        *,
        platform: str | None = None,
        hardware: str | None = None,
    ) -> list[StoredRun]:
        """Runs matching every label in ``filters`` (key -> exact value) and the given fields,
        newest first (by ``started_at``, then ``run_id``)."""
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        query = select(RUNS)
        for column, wanted in (
            ("scenario", scenario),
            ("platform", platform),
            ("hardware", hardware),
        ):
            if wanted is not None:
                query = query.where(RUNS.c[column] == wanted)
        for key, value in (filters or {}).items():
            query = query.where(
                exists().where(
                    RUN_LABELS.c.run_id == RUNS.c.run_id,
                    RUN_LABELS.c.key == key,
                    RUN_LABELS.c.value == value,
                )
            )
        query = query.order_by(RUNS.c.started_at.desc(), RUNS.c.run_id.desc())
        if limit is not None:
            query = query.limit(limit)

        def read(conn: Connection) -> list[StoredRun]:
            return [_stored_run(row) for row in conn.execute(query)]

        return run_in_transaction(self._engine, read, what="listing runs", writes=False)

    def get_run(self, run_id: str) -> StoredRun | None:
        """The run stored under ``run_id``, or None."""

        def read(conn: Connection) -> StoredRun | None:
            row = conn.execute(select(RUNS).where(RUNS.c.run_id == run_id)).first()
            return None if row is None else _stored_run(row)

        return run_in_transaction(self._engine, read, what=f"reading run {run_id}", writes=False)

    def kpis(self, run_ids: Sequence[str], names: Sequence[str] | None = None) -> list[KpiRow]:
        """KPI rows of the given runs (optionally only some KPI names), in the order of
        ``run_ids``, then by instance, phase and name."""
        order = {run_id: i for i, run_id in enumerate(dict.fromkeys(run_ids))}
        wanted_names = list(dict.fromkeys(names)) if names is not None else None
        ids = list(order)

        def read(conn: Connection) -> list[KpiRow]:
            rows: list[KpiRow] = []
            for start in range(0, len(ids), _IN_CHUNK):
                query = select(KPIS).where(KPIS.c.run_id.in_(ids[start : start + _IN_CHUNK]))
                if wanted_names is not None:
                    query = query.where(KPIS.c.name.in_(wanted_names))
                rows.extend(_kpi_row(row) for row in conn.execute(query))
            return rows

        rows = run_in_transaction(self._engine, read, what="reading KPIs", writes=False)
        rows.sort(key=lambda r: (order[r.run_id], r.instance, r.phase, r.name))
        return rows

    def releases(
        self,
        label: str = "release",
        *,
        scenario: str | None = None,
        filters: Mapping[str, str] | None = None,
    ) -> list[Release]:
        """The values of ``label`` over the (matching) runs, oldest first by their first run."""
        first = func.min(RUNS.c.started_at)
        query = (
            select(RUN_LABELS.c.value, first, func.max(RUNS.c.started_at), func.count())
            .join(RUNS, RUNS.c.run_id == RUN_LABELS.c.run_id)
            .where(RUN_LABELS.c.key == label)
            .group_by(RUN_LABELS.c.value)
            .order_by(first, RUN_LABELS.c.value)
        )
        if scenario is not None:
            query = query.where(RUNS.c.scenario == scenario)
        for key, value in (filters or {}).items():
            other = RUN_LABELS.alias()
            query = query.where(
                exists().where(
                    other.c.run_id == RUNS.c.run_id, other.c.key == key, other.c.value == value
                )
            )

        def read(conn: Connection) -> list[Release]:
            return [
                Release(value=value, first_started_at=lo, last_started_at=hi, runs=int(count))
                for value, lo, hi, count in conn.execute(query)
            ]

        return run_in_transaction(self._engine, read, what="listing releases", writes=False)


def _run_values(run: StoredRun) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "scenario": run.scenario,
        "kind": run.kind,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "status": run.status,
        "run_dir": run.run_dir,
        "platform": run.platform,
        "hardware": run.hardware,
        "servingperf_version": run.servingperf_version,
        "labels": dict(run.labels),
        "fingerprint": dict(run.fingerprint) if run.fingerprint is not None else None,
        "validity": dict(run.validity) if run.validity is not None else None,
    }


def _upsert_run(conn: Connection, values: dict[str, Any]) -> Any:
    """INSERT ... ON CONFLICT (run_id) DO UPDATE: concurrent writers of one run queue on its row."""
    if conn.dialect.name == "postgresql":
        pg = postgresql.insert(RUNS).values(values)
        return pg.on_conflict_do_update(
            index_elements=[RUNS.c.run_id],
            set_={k: pg.excluded[k] for k in values if k != "run_id"},
        )
    lite = sqlite.insert(RUNS).values(values)
    return lite.on_conflict_do_update(
        index_elements=[RUNS.c.run_id],
        set_={k: lite.excluded[k] for k in values if k != "run_id"},
    )


def _kpi_values(row: KpiRow) -> dict[str, Any]:
    value = float(row.value)
    return {
        "run_id": row.run_id,
        "instance": row.instance,
        "model": row.model,
        "phase": row.phase,
        "name": row.name,
        "value": None if math.isnan(value) else value,  # SQLite has no NaN
        "unit": row.unit,
        "better": Better(row.better).value,
        "n": int(row.n),
    }


def _stored_run(row: Row[Any]) -> StoredRun:
    m = row._mapping
    return StoredRun(
        run_id=m["run_id"],
        scenario=m["scenario"],
        kind=m["kind"],
        started_at=m["started_at"],
        ended_at=m["ended_at"],
        status=m["status"],
        run_dir=m["run_dir"],
        platform=m["platform"],
        hardware=m["hardware"],
        servingperf_version=m["servingperf_version"],
        labels=dict(m["labels"]),
        fingerprint=dict(m["fingerprint"]) if m["fingerprint"] is not None else None,
        validity=dict(m["validity"]) if m["validity"] is not None else None,
    )


def _kpi_row(row: Row[Any]) -> KpiRow:
    m = row._mapping
    try:
        better = Better(m["better"])
    except ValueError as exc:
        raise StoreError(f"KPI {m['name']} of run {m['run_id']}: unknown direction") from exc
    return KpiRow(
        run_id=m["run_id"],
        instance=m["instance"],
        model=m["model"],
        phase=m["phase"],
        name=m["name"],
        value=math.nan if m["value"] is None else float(m["value"]),
        unit=m["unit"],
        better=better,
        n=int(m["n"]),
    )

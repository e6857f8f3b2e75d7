"""The run directory: everything one run produced, readable long after it.

Layout::

    <run_dir>/run.json            RunInfo: identity, labels, config, environment, phases, status
    <run_dir>/records/*.parquet   request records, streamed in segments (see record_writer)
    <run_dir>/deployments.parquet deployment records (platform runs)
    <run_dir>/metrics/*.parquet   server metrics, streamed: scrapes, Prometheus queries, spans
                                  (see metric_writer)
    <run_dir>/load_health.json    the load generator's own health per phase and process (validity)
    <run_dir>/summary.json        figures derived from the records (recomputable: `servingperf summarize`)
    <run_dir>/report.html, charts/*.png

``run.json`` is rewritten atomically at each phase change, so an interrupted run is still readable;
``status`` says whether it completed. Files written by a newer format version are refused.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from servingperf.errors import RunDirError
from servingperf.model.deployments import DeploymentRecord
from servingperf.results.record_versions import read_segment
from servingperf.results.schema import (
    DEPLOYMENT_SCHEMA,
    METRIC_SAMPLE_SCHEMA,
    METRICS_FORMAT_VERSION,
    QUERY_SCHEMA,
    REQUEST_SCHEMA,
    RUN_FORMAT_VERSION,
    SCRAPE_SCHEMA,
    SPAN_SCHEMA,
)

METRIC_FILES = {
    "scrape": METRIC_SAMPLE_SCHEMA,
    "scrapes": SCRAPE_SCHEMA,
    "prometheus": METRIC_SAMPLE_SCHEMA,
    "queries": QUERY_SCHEMA,
    "spans": SPAN_SCHEMA,
}


@dataclass(slots=True)
class PhaseWindow:
    """When one instance was loaded in one phase; figures use [measure_start_s, measure_end_s]."""

    instance: str
    phase: str
    start_s: float
    measure_start_s: float
    measure_end_s: float | None = None
    end_s: float | None = None


@dataclass(slots=True)
class RunInfo:
    run_id: str
    scenario: str
    kind: str
    started_at: str  # ISO 8601 UTC
    t0_monotonic: float
    labels: dict[str, str]
    config: dict[str, Any]
    environment: dict[str, Any]
    status: str = "running"  # running | complete | incomplete | failed
    ended_at: str | None = None
    status_reason: str | None = None
    phases: list[PhaseWindow] = field(default_factory=list)
    format_version: int = RUN_FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str) -> RunInfo:
        version = data.get("format_version")
        if not isinstance(version, int):
            raise RunDirError(f"{source}: no format_version: not a servingperf run.json")
        if version > RUN_FORMAT_VERSION:
            raise RunDirError(
                f"{source}: written by a newer servingperf (format {version} > {RUN_FORMAT_VERSION});"
                " upgrade servingperf to read it"
            )
        try:
            phases = [PhaseWindow(**p) for p in data.get("phases", [])]
            payload = {k: v for k, v in data.items() if k != "phases"}
            return cls(phases=phases, **payload)
        except TypeError as exc:
            raise RunDirError(f"{source}: malformed run.json: {exc}") from exc


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


class RunDir:
    """Paths and readers of one run directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def run_json(self) -> Path:
        return self.path / "run.json"

    @property
    def records_dir(self) -> Path:
        return self.path / "records"

    @property
    def summary_json(self) -> Path:
        return self.path / "summary.json"

    @property
    def metrics_dir(self) -> Path:
        return self.path / "metrics"

    @property
    def deployments_file(self) -> Path:
        return self.path / "deployments.parquet"

    @property
    def load_health_json(self) -> Path:
        return self.path / "load_health.json"

    def write_load_health(self, entries: list[dict[str, Any]]) -> None:
        write_json_atomic(self.load_health_json, {"version": 1, "phases": entries})

    def read_load_health(self) -> list[dict[str, Any]]:
        """The entries of ``load_health.json``; [] for a run without one (older, or no load)."""
        try:
            data = json.loads(self.load_health_json.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise RunDirError(f"{self.load_health_json}: unreadable: {exc}") from exc
        phases = data.get("phases") if isinstance(data, dict) else None
        if not isinstance(phases, list):
            raise RunDirError(f"{self.load_health_json}: no 'phases' list")
        return [p for p in phases if isinstance(p, dict)]

    def create(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=False)
            self.records_dir.mkdir()
        except FileExistsError as exc:
            raise RunDirError(f"{self.path}: already exists; choose another --out") from exc
        except OSError as exc:
            raise RunDirError(f"{self.path}: cannot create run directory: {exc.strerror}") from exc

    def write_info(self, info: RunInfo) -> None:
        write_json_atomic(self.run_json, info.to_json())

    def read_info(self) -> RunInfo:
        try:
            data = json.loads(self.run_json.read_text())
        except FileNotFoundError as exc:
            raise RunDirError(f"{self.path}: no run.json: not a servingperf run directory") from exc
        except (OSError, ValueError) as exc:
            raise RunDirError(f"{self.run_json}: unreadable: {exc}") from exc
        if not isinstance(data, dict):
            raise RunDirError(f"{self.run_json}: not a JSON object")
        return RunInfo.from_json(data, str(self.run_json))

    def read_records(self) -> pa.Table:
        """All request records, in segment order; an empty table if none were written."""
        if not self.records_dir.is_dir():
            raise RunDirError(f"{self.path}: no records/ directory")
        tables: list[pa.Table] = []
        for part in sorted(self.records_dir.glob("*.parquet")):
            tables += read_segment(part)  # older versions upgraded, newer ones refused
        if not tables:
            return REQUEST_SCHEMA.empty_table()
        return pa.concat_tables(tables)

    def read_metrics(self, kind: str) -> pa.Table:
        """Every segment of one kind of ``metrics/`` file (``scrape``, ``scrapes``,
        ``prometheus``, ``queries``, ``spans``); an empty table when there are none."""
        schema = METRIC_FILES[kind]
        tables = []
        for part in sorted(self.metrics_dir.glob(f"{kind}-*.parquet")):
            try:
                table = pq.read_table(part)
            except (OSError, pa.ArrowInvalid) as exc:
                raise RunDirError(f"{part}: unreadable metrics segment: {exc}") from exc
            _check_version(table.schema, str(part), METRICS_FORMAT_VERSION)
            tables.append(table.select(schema.names).cast(schema))
        if not tables:
            return schema.empty_table()
        return pa.concat_tables(tables)

    def write_deployments(self, records: list[DeploymentRecord]) -> None:
        columns: dict[str, list[Any]] = {name: [] for name in DEPLOYMENT_SCHEMA.names}
        for record in records:
            for name in DEPLOYMENT_SCHEMA.names:
                columns[name].append(getattr(record, name))
        table = pa.Table.from_pydict(columns, schema=DEPLOYMENT_SCHEMA)
        tmp = self.deployments_file.with_name(self.deployments_file.name + ".tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, self.deployments_file)

    def read_deployments(self) -> pa.Table:
        if not self.deployments_file.exists():
            return DEPLOYMENT_SCHEMA.empty_table()
        try:
            table = pq.read_table(self.deployments_file)
        except (OSError, pa.ArrowInvalid) as exc:
            raise RunDirError(f"{self.deployments_file}: unreadable: {exc}") from exc
        _check_version(table.schema, str(self.deployments_file))
        return table

    def read_summary(self) -> dict[str, Any]:
        try:
            data = json.loads(self.summary_json.read_text())
        except FileNotFoundError as exc:
            raise RunDirError(
                f"{self.path}: no summary.json (run `servingperf summarize`)"
            ) from exc
        except (OSError, ValueError) as exc:
            raise RunDirError(f"{self.summary_json}: unreadable: {exc}") from exc
        if not isinstance(data, dict):
            raise RunDirError(f"{self.summary_json}: not a JSON object")
        return data


def _check_version(schema: pa.Schema, source: str, newest: int = RUN_FORMAT_VERSION) -> None:
    meta = schema.metadata or {}
    raw = meta.get(b"servingperf.format_version")
    if raw is None:
        raise RunDirError(f"{source}: not written by servingperf (no format version)")
    if int(raw) > newest:
        raise RunDirError(f"{source}: written by a newer servingperf (format {int(raw)})")


def utc_iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")

"""Put a run directory into the results store (at the end of a run, or later with ``ingest``)."""

from __future__ import annotations

import os
import platform as host_platform
from datetime import datetime
from pathlib import Path
from typing import Any

from servingperf.analysis.fingerprint import fingerprint_of
from servingperf.continuous.kpis import kpi_rows
from servingperf.results.rundir import RunDir
from servingperf.results.store import Store, StoredRun

DEFAULT_STORE = "servingperf-data/results.db"


def store_location(given: str | None) -> str:
    """The store URL or path: the flag, else $SERVINGPERF_STORE, else the default file."""
    return given or os.environ.get("SERVINGPERF_STORE") or DEFAULT_STORE


def hardware_of(environment: dict[str, object]) -> str:
    machine = environment.get("machine") or host_platform.machine()
    cpus = environment.get("usable_cpus") or environment.get("cpu_count")
    memory = environment.get("memory_bytes")
    gib = f"{int(memory) / 2**30:.0f}GiB" if isinstance(memory, int) else "?GiB"
    return f"{machine}/{cpus}cpu/{gib}"


def _validity(summary: dict[str, Any]) -> dict[str, Any] | None:
    """The summary's validity without the per-window evidence (the store keeps the verdict and
    its reasons; the evidence stays in the run directory)."""
    validity = summary.get("validity")
    if not isinstance(validity, dict):
        return None  # summarized before servingperf judged validity
    return {k: v for k, v in validity.items() if k not in ("windows", "calibration")}


def ingest(store: Store, run_dir: RunDir) -> StoredRun:
    """Record the run (idempotent: recording it again replaces its KPIs)."""
    info = run_dir.read_info()
    summary = run_dir.read_summary()
    run = StoredRun(
        run_id=info.run_id,
        scenario=info.scenario,
        kind=info.kind,
        started_at=datetime.fromisoformat(info.started_at),
        ended_at=datetime.fromisoformat(info.ended_at) if info.ended_at else None,
        status="complete" if info.status == "complete" else "incomplete",
        run_dir=str(Path(run_dir.path).resolve()),
        platform=str(info.config.get("platform", {}).get("kind", "")),
        hardware=hardware_of(info.environment),
        labels=info.labels,
        servingperf_version=str(info.environment.get("servingperf", "")),
        fingerprint=fingerprint_of(info.config, info.environment),
        validity=_validity(summary),
    )
    store.record_run(run, kpi_rows(info.run_id, summary))
    return run

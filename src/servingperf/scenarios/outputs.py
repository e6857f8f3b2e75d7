"""Derive a run's outputs from its run directory alone: ``summary.json`` then the report.

Used at the end of every run and by ``servingperf summarize`` / ``servingperf report`` to redraw
them long after, so both paths produce the same files from the same records.
"""

from __future__ import annotations

from typing import Any

from servingperf.analysis.summary import summarize_run
from servingperf.model.specs import SloSpec
from servingperf.report.build import build_report
from servingperf.results.rundir import RunDir, write_json_atomic


def slo_of(config: dict[str, Any]) -> SloSpec | None:
    raw = config.get("slo")
    return SloSpec.model_validate(raw) if isinstance(raw, dict) else None


def write_summary(run_dir: RunDir) -> dict[str, Any]:
    info = run_dir.read_info()
    summary = summarize_run(info, run_dir.read_records(), slo_of(info.config))
    write_json_atomic(run_dir.summary_json, summary)
    return summary


def write_report(run_dir: RunDir) -> None:
    info = run_dir.read_info()
    build_report(run_dir.path, info.to_json(), run_dir.read_summary(), run_dir.read_records())

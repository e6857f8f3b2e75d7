"""Derive a run's outputs from its run directory alone: ``summary.json`` then the report.

Used at the end of every run and by ``servingperf summarize`` / ``servingperf report`` to redraw
them long after, so both paths produce the same files from the same records.

A run whose ``run.json`` still says ``running`` was never closed: its harness was killed (SIGKILL,
a second Ctrl-C, a crash) or is still going. Its outputs treat it as *incomplete* (``run.json``
itself is left as found), and a phase it never closed gets a window from its own records
(:func:`unfinished_windows`), so the records flushed before the end are summarized, not dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ValidationError

from servingperf.analysis.loadtimes import summarize_deployments
from servingperf.analysis.multi_model import summarize_multi_model
from servingperf.analysis.summary import summarize_run
from servingperf.errors import RunDirError
from servingperf.model.specs import MultiModelSpec, SloSpec
from servingperf.report.build import build_report
from servingperf.report.many_model_charts import many_model_charts
from servingperf.report.multi_model_charts import multi_model_charts
from servingperf.results.redact import Redactor
from servingperf.results.rundir import PhaseWindow, RunDir, RunInfo, write_json_atomic

UNFINISHED_REASON = (
    "run.json still says 'running': the harness was killed or is still running; figures cover"
    " the records flushed before that"
)


def slo_of(config: dict[str, Any]) -> SloSpec | None:
    raw = config.get("slo")
    if not isinstance(raw, dict):
        return None
    try:
        return SloSpec.model_validate(raw)
    except ValidationError as exc:
        raise RunDirError(
            f"run.json: config.slo is not a valid SLO: {exc.errors()[0]['msg']}"
        ) from exc


def _check(info: RunInfo, source: Path) -> RunInfo:
    """Refuse values of the wrong type (a hand-edited or corrupted run.json) with one clear error
    here, rather than a crash deep inside the figures."""
    problems = []
    config: object = info.config  # as read: run.json is not type-checked on the way in
    labels: object = info.labels
    if not isinstance(config, dict):
        problems.append("config must be an object")
    if not isinstance(labels, dict):
        problems.append("labels must be an object")
    for i, w in enumerate(info.phases):
        names: tuple[object, object] = (w.instance, w.phase)
        if not all(isinstance(name, str) for name in names):
            problems.append(f"phases[{i}]: instance and phase must be strings")
        for name in ("start_s", "measure_start_s", "measure_end_s", "end_s"):
            value = getattr(w, name)
            optional = name in ("measure_end_s", "end_s")
            if not (_is_number(value) or (optional and value is None)):
                problems.append(f"phases[{i}].{name} must be a number, got {value!r:.40}")
    if problems:
        raise RunDirError(f"{source}: malformed run.json: {problems[0]}")
    return info


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def unfinished_windows(info: RunInfo, records: pa.Table) -> list[PhaseWindow]:
    """Windows for the phases with records but none in ``run.json`` (never closed): from the
    phase's first scheduled request, measured after the configured ramp-up, to its last end."""
    known = {(w.instance, w.phase) for w in info.phases}
    load = info.config.get("load")
    ramp = load.get("ramp_up_s") if isinstance(load, dict) else None
    ramp_s = float(ramp) if isinstance(ramp, int | float) else 0.0
    if records.num_rows == 0:
        return []
    last = pc.max_element_wise(
        pc.fill_null(records["t_end_s"], records["t_scheduled_s"]), records["t_scheduled_s"]
    )
    grouped = (
        pa.table({"i": records["instance"], "p": records["phase"], "s": records["t_scheduled_s"]})
        .append_column("e", last)
        .group_by(["i", "p"])
        .aggregate([("s", "min"), ("e", "max")])
    )
    windows = []
    for row in grouped.to_pylist():
        if (row["i"], row["p"]) in known:
            continue
        start, end = float(row["s_min"]), float(row["e_max"])
        windows.append(PhaseWindow(row["i"], row["p"], start, min(start + ramp_s, end), end, end))
    return windows


def _read(run_dir: RunDir) -> tuple[RunInfo, pa.Table]:
    """run.json (checked, and a never-closed run treated as incomplete) and the records."""
    info = _check(run_dir.read_info(), run_dir.run_json)
    records = run_dir.read_records()
    if info.status == "running":
        info.phases = [*info.phases, *unfinished_windows(info, records)]
        info.status, info.status_reason = "incomplete", UNFINISHED_REASON
    return info, records


def multi_of(config: dict[str, Any]) -> MultiModelSpec:
    raw = config.get("multi_model")
    return MultiModelSpec.model_validate(raw) if isinstance(raw, dict) else MultiModelSpec()


def write_summary(run_dir: RunDir) -> dict[str, Any]:
    info, records = _read(run_dir)
    summary = summarize_run(info, records, slo_of(info.config))
    deployments = run_dir.read_deployments()
    if deployments.num_rows and info.kind == "many-model":
        summary["deployments"] = summarize_deployments(deployments, info.phases, records)
    if info.kind == "multi-model" and summary["instances"]:
        summary["multi_model"] = summarize_multi_model(info, records, multi_of(info.config))
    if info.status_reason:
        summary["status_reason"] = info.status_reason
    write_json_atomic(run_dir.summary_json, summary)
    return summary


def write_report(run_dir: RunDir) -> None:
    info, records = _read(run_dir)
    # Server text in error messages may echo a credential: the page quotes it (failure digest).
    redactor = Redactor.for_scenario(info.config, run_dir.path)
    records = redacted_messages(records, redactor)
    summary = run_dir.read_summary()
    extra: dict[str, Any] = {}
    if "deployments" in summary:
        extra.update(many_model_charts(summary, run_dir.read_deployments()))
    if "multi_model" in summary:
        extra.update(multi_model_charts(summary, records))
    build_report(run_dir.path, info.to_json(), summary, records, extra_specs=extra)


def redacted_messages(records: pa.Table, redactor: Redactor) -> pa.Table:
    """``records`` with secrets masked in ``error_message`` (distinct messages are few: only they
    are looked at, and the table is rebuilt only when one changes)."""
    if "error_message" not in records.column_names or records.num_rows == 0:
        return records
    column = records["error_message"]
    distinct = pc.unique(column.drop_null()).to_pylist()
    changed = {m: redactor.text(m) for m in distinct if redactor.text(m) != m}
    if not changed:
        return records
    cleaned = [changed.get(m, m) if m is not None else None for m in column.to_pylist()]
    index = records.column_names.index("error_message")
    return records.set_column(index, "error_message", pa.array(cleaned, type=column.type))

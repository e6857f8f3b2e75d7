"""Derive a run's outputs from its run directory alone: ``summary.json`` then the report.

Used at the end of every run and by ``servingperf summarize`` / ``servingperf report`` to redraw
them long after, so both paths produce the same files from the same records.

The summary streams the records (:func:`servingperf.analysis.summary.summarize_run_dir`: one
segment at a time, only the columns it needs), so its memory stays bounded however long the run;
only the parts of other kinds that need the whole table (many-model validation counts, the
multi-model comparison) read it. The report reads every record (its charts draw them).

A run whose ``run.json`` still says ``running`` was never closed: its harness was killed (SIGKILL,
a second Ctrl-C, a crash) or is still going. Its outputs treat it as *incomplete* (``run.json``
itself is left as found), and a phase it never closed gets a window from its own records
(:func:`unfinished_windows`), so the records flushed before the end are summarized, not dropped.

A sweep run (``load.schedule.kind: sweep``) also gets ``summary["sweep"]``, what the sweep found
per instance (:func:`servingperf.analysis.sweep.sweep_summary`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import ValidationError

from servingperf.analysis.decomposition import decompose, decomposition_summary
from servingperf.analysis.fingerprint import fingerprint_of
from servingperf.analysis.loadtimes import summarize_deployments
from servingperf.analysis.multi_model import summarize_multi_model
from servingperf.analysis.peers.registry import RunView, view_run
from servingperf.analysis.prefix_cache import prefix_cache_check
from servingperf.analysis.server_metrics import (
    Tolerance,
    agreement,
    controller_evidence,
    evidence_sentence,
)
from servingperf.analysis.summary import summarize_run_dir
from servingperf.analysis.sweep import sweep_summary
from servingperf.analysis.validity import run_validity
from servingperf.datasets.shared_prefix import expected_hit_share
from servingperf.errors import RunDirError
from servingperf.model.specs import AgreementSpec, MultiModelSpec, SloSpec, SweepSpec
from servingperf.model.workload_spec import SharedPrefixSpec
from servingperf.report.build import build_report
from servingperf.report.many_model_charts import many_model_charts
from servingperf.report.multi_model_charts import multi_model_charts
from servingperf.report.server_charts import server_charts
from servingperf.results.record_writer import write_segment
from servingperf.results.redact import Redactor
from servingperf.results.rundir import PhaseWindow, RunDir, RunInfo, write_json_atomic
from servingperf.results.schema import REQUEST_SCHEMA

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


Extents = Mapping[tuple[str, str], tuple[float, float]]
"""(instance, phase) -> (first scheduled time, last end time) of its records."""
_EXTENT_COLUMNS = ("instance", "phase", "t_scheduled_s", "t_end_s")


def phase_extents(tables: Iterable[pa.Table]) -> dict[tuple[str, str], tuple[float, float]]:
    """Each phase's first scheduled and last end time (its last scheduled when later, or when no
    request ended), over every record of ``tables``, aggregated table by table."""
    extents: dict[tuple[str, str], tuple[float, float]] = {}
    for records in tables:
        if records.num_rows == 0:
            continue
        last = pc.max_element_wise(
            pc.fill_null(records["t_end_s"], records["t_scheduled_s"]), records["t_scheduled_s"]
        )
        grouped = (
            pa.table(
                {"i": records["instance"], "p": records["phase"], "s": records["t_scheduled_s"]}
            )
            .append_column("e", last)
            .group_by(["i", "p"])
            .aggregate([("s", "min"), ("e", "max")])
        )
        for row in grouped.to_pylist():
            key = (row["i"], row["p"])
            start, end = float(row["s_min"]), float(row["e_max"])
            if key in extents:
                start, end = min(start, extents[key][0]), max(end, extents[key][1])
            extents[key] = (start, end)
    return extents


def unfinished_windows(info: RunInfo, extents: Extents) -> list[PhaseWindow]:
    """Windows for the phases with records but none in ``run.json`` (never closed): from the
    phase's first scheduled request, measured after the configured ramp-up, to its last end."""
    known = {(w.instance, w.phase) for w in info.phases}
    load = info.config.get("load")
    ramp = load.get("ramp_up_s") if isinstance(load, dict) else None
    ramp_s = float(ramp) if isinstance(ramp, int | float) else 0.0
    windows = []
    for (instance, phase), (start, end) in extents.items():
        if (instance, phase) in known:
            continue
        windows.append(PhaseWindow(instance, phase, start, min(start + ramp_s, end), end, end))
    return windows


def _segments(run_dir: RunDir, columns: tuple[str, ...]) -> Iterator[pa.Table]:
    """``columns`` of every record segment, a batch at a time (bounded memory)."""
    if not run_dir.records_dir.is_dir():
        raise RunDirError(f"{run_dir.path}: no records/ directory")
    for part in sorted(run_dir.records_dir.glob("*.parquet")):
        try:
            for batch in pq.ParquetFile(part).iter_batches(columns=list(columns)):
                yield pa.Table.from_batches([batch])
        except (OSError, pa.ArrowInvalid) as exc:
            raise RunDirError(f"{part}: unreadable record segment: {exc}") from exc


def _closed(info: RunInfo, extents: Extents) -> RunInfo:
    """A never-closed run (``running``) as *incomplete*, with windows for its unclosed phases."""
    if info.status == "running":
        info.phases = [*info.phases, *unfinished_windows(info, extents)]
        info.status, info.status_reason = "incomplete", UNFINISHED_REASON
    return info


def _read_info(run_dir: RunDir) -> RunInfo:
    """run.json, checked, and a never-closed run treated as incomplete (streaming its records)."""
    info = _check(run_dir.read_info(), run_dir.run_json)
    if info.status != "running":
        return info
    return _closed(info, phase_extents(_segments(run_dir, _EXTENT_COLUMNS)))


def _read(run_dir: RunDir) -> tuple[RunInfo, pa.Table]:
    """run.json (checked, and a never-closed run treated as incomplete) and every record."""
    info = _check(run_dir.read_info(), run_dir.run_json)
    records = run_dir.read_records()
    return _closed(info, phase_extents([records])), records


def multi_of(config: dict[str, Any]) -> MultiModelSpec:
    raw = config.get("multi_model")
    return MultiModelSpec.model_validate(raw) if isinstance(raw, dict) else MultiModelSpec()


def sweep_of(config: dict[str, Any]) -> SweepSpec | None:
    """The run's sweep schedule (``config.load.schedule`` of kind ``sweep``), or None."""
    load = config.get("load")
    raw = load.get("schedule") if isinstance(load, dict) else None
    if not isinstance(raw, dict) or raw.get("kind") != "sweep":
        return None
    try:
        return SweepSpec.model_validate(raw)
    except ValidationError as exc:
        raise RunDirError(
            f"run.json: config.load.schedule is not a valid sweep: {exc.errors()[0]['msg']}"
        ) from exc


def write_summary(run_dir: RunDir) -> dict[str, Any]:
    info = _read_info(run_dir)
    summary = summarize_run_dir(run_dir, slo_of(info.config), info)
    deployments = run_dir.read_deployments()
    many = deployments.num_rows > 0 and info.kind == "many-model"
    multi = info.kind == "multi-model" and bool(summary["instances"])
    records = run_dir.read_records() if many or multi else None
    if many:
        summary["deployments"] = summarize_deployments(deployments, info.phases, records)
        evidence = controller_evidence(
            run_dir.read_metrics("prometheus"), run_dir.read_metrics("scrape")
        )
        saturation = summary["deployments"].get("saturation")
        if evidence is not None and isinstance(saturation, dict):
            saturation["controller"] = evidence
            saturation["reasons"] = [*saturation.get("reasons", []), evidence_sentence(evidence)]
    if multi and records is not None:
        summary["multi_model"] = summarize_multi_model(info, records, multi_of(info.config))
    sweep = sweep_of(info.config)
    if sweep is not None:
        summary["sweep"] = sweep_summary(sweep, summary["instances"])
    server = summarize_server_metrics(run_dir, info)
    if server is not None:
        summary["server_metrics"] = server
    if info.status_reason:
        summary["status_reason"] = info.status_reason
    calibration = info.environment.get("client_calibration")
    summary["validity"] = run_validity(
        summary,
        run_dir.read_load_health(),
        calibration if isinstance(calibration, dict) else None,
    )
    summary["fingerprint"] = fingerprint_of(info.config, info.environment)
    write_json_atomic(run_dir.summary_json, summary)
    return summary


SERVER_COLUMNS = (
    "request_id",
    "instance",
    "model",
    "phase",
    "status",
    "streamed",
    "output_tokens",
    "input_tokens",
    "t_sent_s",
    "t_first_token_s",
    "t_end_s",
)
DECOMPOSITION_FILE = "decomposition.parquet"


def read_session(run_dir: RunDir) -> dict[str, Any] | None:
    """``metrics/session.json`` (what the run's server metrics session recorded), or None."""
    path = run_dir.metrics_dir / "session.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{path}: unreadable: {exc}") from exc
    return data if isinstance(data, dict) else None


def agreement_of(config: dict[str, Any]) -> Tolerance:
    raw = config.get("metrics")
    raw = raw.get("agreement") if isinstance(raw, dict) else None
    spec = AgreementSpec.model_validate(raw) if isinstance(raw, dict) else AgreementSpec()
    return Tolerance(rel=spec.mean_rel_tol, abs_s=spec.mean_abs_tol_s)


def server_windows(info: RunInfo, samples: pa.Table) -> list[PhaseWindow]:
    """The agreement windows: the run's phases, except for a many-model run, whose instances are
    validated in phases of no fixed window: each scraped instance from its first scrape to its
    last, all its phases together (phase ``*``)."""
    if info.kind != "many-model":
        return list(info.phases)
    if samples.num_rows == 0:
        return []
    grouped = (
        pa.table({"i": samples["instance"], "t": samples["t_s"]})
        .group_by("i")
        .aggregate([("t", "min"), ("t", "max")])
    )
    return [
        PhaseWindow(row["i"], "*", row["t_min"], row["t_min"], row["t_max"], row["t_max"])
        for row in grouped.to_pylist()
    ]


def planted_hit_share(config: dict[str, Any]) -> float | None:
    """The warm-cache hit share a shared-prefix dataset plants (None for other datasets)."""
    dataset = config.get("dataset")
    if not isinstance(dataset, dict) or dataset.get("source") != "shared-prefix":
        return None
    section = dataset.get("shared_prefix")
    spec = SharedPrefixSpec.model_validate(section if isinstance(section, dict) else {})
    return expected_hit_share(spec.prefix_tokens, spec.suffix_tokens, spec.cache_block_tokens)


def _failed_scrapes(run_dir: RunDir) -> dict[str, int]:
    """Failed scrapes per instance, from ``metrics/scrapes`` (fetch failures, missed ticks and
    pages that did not parse)."""
    failed: dict[str, int] = {}
    for row in run_dir.read_metrics("scrapes").to_pylist():
        if not row.get("ok"):
            name = str(row.get("instance"))
            failed[name] = failed.get(name, 0) + 1
    return failed


def summarize_server_metrics(run_dir: RunDir, info: RunInfo) -> dict[str, Any] | None:
    """``summary["server_metrics"]``: the agreement table, the span decomposition, the gaps
    and warnings of the session; None for a run without server metrics. Writes the per-request
    decomposition to ``metrics/decomposition.parquet`` (derived, like the summary)."""
    session = read_session(run_dir)
    if session is None and not run_dir.metrics_dir.is_dir():
        return None
    samples = run_dir.read_metrics("scrape")
    spans = run_dir.read_metrics("spans")
    tables = list(_segments(run_dir, SERVER_COLUMNS))
    records = (
        pa.concat_tables(tables)
        if tables
        else REQUEST_SCHEMA.empty_table().select(list(SERVER_COLUMNS))
    )
    result: dict[str, Any] = {}
    if samples.num_rows:
        result["agreement"] = agreement(
            records, samples, server_windows(info, samples), agreement_of(info.config)
        )
        expected = planted_hit_share(info.config)
        if expected is not None:
            result["prefix_cache"] = prefix_cache_check(samples, expected)
    if spans.num_rows:
        parts = decompose(records, spans)
        write_segment(parts, run_dir.metrics_dir / DECOMPOSITION_FILE, ("instance", "phase"))
        result["decomposition"] = decomposition_summary(parts, records)
        result["spans"] = spans.num_rows
    if session is not None:
        scrape = session.get("scrape") or {}
        targets = scrape.get("targets") or {}
        # Gaps counted from the stored scrape rows (ok false): the scraper's own count misses a
        # page that arrived but did not parse, which the metric writer records as failed.
        failed = _failed_scrapes(run_dir)
        for name, count in failed.items():
            entry = targets.setdefault(name, {})
            entry["gaps"] = max(int(entry.get("gaps") or 0), count)
        result["scrape"] = {
            "interval_s": scrape.get("interval_s"),
            "period_s": scrape.get("period_s"),
            "targets": len(targets),
            "scrapes": sum(int(t.get("scrapes") or 0) for t in targets.values()),
            "gaps": sum(int(t.get("gaps") or 0) for t in targets.values()),
        }
        result["prometheus"] = session.get("prometheus")
        result["otlp"] = session.get("otlp")
        result["warnings"] = list(session.get("warnings") or [])
        period, interval = scrape.get("period_s"), scrape.get("interval_s")
        if (
            isinstance(period, int | float)
            and isinstance(interval, int | float)
            and period > interval
        ):
            result["warnings"].append(
                f"{len(targets)} instances: each was scraped every {period:g} s, not every"
                f" {interval:g} s (metrics.scrape.max_scrapes_per_s)"
            )
        gaps = {name: t.get("gaps") for name, t in targets.items() if t.get("gaps")}
        if gaps:
            result["warnings"].append(
                f"scrape gaps (failed scrapes) per instance: {json.dumps(gaps)}"
            )
    return result or None


def peer_view(run_dir: RunDir, peer: str) -> RunView:
    """A peer tool's view of the run's records (``servingperf summarize --as PEER``)."""
    info, records = _read(run_dir)
    return view_run(info, records, peer)


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
    if "server_metrics" in summary:
        extra.update(
            server_charts(
                summary,
                info.to_json(),
                records,
                run_dir.read_metrics("scrape"),
                run_dir.read_metrics("prometheus"),
                run_dir.read_deployments(),
                decomposition_table(run_dir),
            )
        )
    build_report(run_dir.path, info.to_json(), summary, records, extra_specs=extra)


def decomposition_table(run_dir: RunDir) -> pa.Table | None:
    path = run_dir.metrics_dir / DECOMPOSITION_FILE
    if not path.exists():
        return None
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise RunDirError(f"{path}: unreadable: {exc}") from exc


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

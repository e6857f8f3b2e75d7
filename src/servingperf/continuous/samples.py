"""Per-request samples of stored runs, read back from their run directories, for the gate.

Distribution KPIs take the per-request values of a run's measured requests; rate KPIs the rates
of 10 equal sub-windows of its measurement window (:func:`servingperf.analysis.gate.windowed_rates`).
A side of the gate keeps them per run (:func:`samples_by_run`), not pooled: the gate resamples
runs as well as requests, so that run-to-run variance enters its interval. The store needs no
run column for that: each stored run points to its own run directory, read one at a time.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from servingperf.analysis import metrics
from servingperf.analysis.gate import windowed_rates
from servingperf.analysis.stats import FloatArray
from servingperf.analysis.summary import measured_records, phase_records, window_bounds, window_key
from servingperf.errors import RunDirError
from servingperf.model.metrics import Kind, gated, metric
from servingperf.results.rundir import RunDir
from servingperf.results.store import StoredRun

GATED_KPIS = tuple(m.name for m in gated())

Samples = dict[str, dict[str, FloatArray]]  # window key -> KPI name -> samples


def run_samples(run: StoredRun) -> Samples:
    run_dir = RunDir(Path(run.run_dir))
    if not run_dir.run_json.exists():
        raise RunDirError(
            f"run {run.run_id}: its run directory {run.run_dir} is gone; the gate needs the"
            " per-request records it held"
        )
    info = run_dir.read_info()
    table = run_dir.read_records()
    out: Samples = {}
    for window in info.phases:
        measured = measured_records(phase_records(table, window), window)
        start, end = window_bounds(window)
        ends = metrics.column(measured, "t_end_s")
        per_kpi: dict[str, FloatArray] = {}
        for name in GATED_KPIS:
            if metric(name).kind is Kind.PER_REQUEST:
                per_kpi[name] = metrics.PER_REQUEST[name](measured)
            elif end > start:
                weight = metrics.RATE_WEIGHTS[name]
                weights = (
                    None if weight is None else np.nan_to_num(metrics.column(measured, weight))
                )
                per_kpi[name] = windowed_rates(ends, start, end, weights=weights)
        out[window_key(window)] = per_kpi
    return out


SamplesByRun = dict[str, dict[str, list[FloatArray]]]  # window key -> KPI -> one array per run


def samples_by_run(runs: list[StoredRun]) -> SamplesByRun:
    """Every run's samples, per window key and KPI, in the order of ``runs``.

    A run without a window (an instance it did not serve) contributes nothing to that key, so the
    list of a key holds only the runs that measured it.
    """
    grouped: SamplesByRun = defaultdict(lambda: defaultdict(list))
    for run in runs:
        for key, per_kpi in run_samples(run).items():
            for name, values in per_kpi.items():
                grouped[key][name].append(values)
    return {key: dict(per_kpi) for key, per_kpi in grouped.items()}

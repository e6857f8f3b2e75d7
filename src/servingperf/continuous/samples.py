"""Per-request samples of stored runs, read back from their run directories, for the gate.

Distribution KPIs pool the per-request values of the measured requests of every run of a side;
rate KPIs take the rates of 10 equal sub-windows of each run's measurement window
(:func:`servingperf.analysis.gate.windowed_rates`).
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
from servingperf.results.rundir import RunDir
from servingperf.results.store import StoredRun

GATED_KPIS = (
    "ttft_s",
    "tpot_s",
    "ntpot_s",
    "e2e_s",
    "output_throughput_tps",
    "request_throughput_rps",
)

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
        tokens = np.nan_to_num(metrics.column(measured, "output_tokens"))
        per_kpi: dict[str, FloatArray] = {
            "ttft_s": metrics.ttft(measured),
            "tpot_s": metrics.tpot(measured),
            "ntpot_s": metrics.ntpot(measured),
            "e2e_s": metrics.e2e(measured),
        }
        if end > start:
            per_kpi["output_throughput_tps"] = windowed_rates(ends, start, end, weights=tokens)
            per_kpi["request_throughput_rps"] = windowed_rates(ends, start, end)
        out[window_key(window)] = per_kpi
    return out


def pooled_samples(runs: list[StoredRun]) -> Samples:
    pooled: dict[str, dict[str, list[FloatArray]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        for key, per_kpi in run_samples(run).items():
            for name, values in per_kpi.items():
                pooled[key][name].append(values)
    return {
        key: {name: np.concatenate(parts) for name, parts in per_kpi.items()}
        for key, per_kpi in pooled.items()
    }

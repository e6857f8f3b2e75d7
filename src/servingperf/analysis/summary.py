"""The run summary (``summary.json``): per instance and phase, the figures of its measurement window.

Selection rules (stated in the README):
- *measured* requests: status ok and ``t_end`` inside the window [measure_start, measure_end];
  every latency figure and every throughput is over this set;
- throughput = tokens (or requests) of measured requests / window length;
- *issued* requests: ``t_sent`` inside the window, any status; error rate = errors / issued, where a
  request still in flight when the phase stopped is ``cut``: issued, but neither ok nor error;
- client lag is over issued requests; goodput counts measured requests meeting every SLO given
  (a request without the figure an SLO needs, e.g. TTFT of a non-streamed call, does not meet it).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from servingperf.analysis import metrics
from servingperf.analysis.stats import describe
from servingperf.model.specs import SloSpec
from servingperf.results.rundir import PhaseWindow, RunInfo

SUMMARY_VERSION = 1
STAT_METRICS = (
    "ttft_s",
    "tpot_s",
    "ntpot_s",
    "itl_s",
    "e2e_s",
    "client_lag_s",
    "output_tokens",
    "input_tokens",
)


def _select(table: pa.Table, mask: np.ndarray) -> pa.Table:
    return table.filter(pa.array(mask, type=pa.bool_()))


def _between(values: np.ndarray, start: float, end: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return (values >= start) & (values <= end)


def window_bounds(window: PhaseWindow) -> tuple[float, float]:
    start = window.measure_start_s
    end = window.measure_end_s if window.measure_end_s is not None else start
    return start, end


def phase_records(table: pa.Table, window: PhaseWindow) -> pa.Table:
    """The records of one instance's phase."""
    mask = pc.and_(
        pc.equal(table.column("instance"), window.instance),
        pc.equal(table.column("phase"), window.phase),
    )
    return table.filter(mask)


def measured_records(table: pa.Table, window: PhaseWindow) -> pa.Table:
    """The *measured* requests of a phase's records: ok and ended inside the window."""
    start, end = window_bounds(window)
    status = np.asarray(table.column("status").to_numpy(zero_copy_only=False), dtype=object)
    mask = (status == "ok") & _between(metrics.column(table, "t_end_s"), start, end)
    return _select(table, mask)


def summarize_window(table: pa.Table, window: PhaseWindow, slo: SloSpec | None) -> dict[str, Any]:
    """Figures of one instance's phase; ``table`` holds that instance's records of that phase."""
    start, end = window_bounds(window)
    length = max(end - start, 0.0)
    status = np.asarray(table.column("status").to_numpy(zero_copy_only=False), dtype=object)
    sent_in = _between(metrics.column(table, "t_sent_s"), start, end)
    measured = measured_records(table, window)
    issued = _select(table, sent_in)
    errors = issued.filter(pc.equal(issued.column("status"), "error"))
    n_issued = issued.num_rows
    n_errors = errors.num_rows
    n_cut = int(pc.sum(pc.equal(issued.column("status"), "cut")).as_py() or 0)
    by_kind = Counter(errors.column("error_kind").to_pylist())

    output_tokens = metrics.column(measured, "output_tokens")
    input_tokens = metrics.column(measured, "input_tokens")
    ttft = metrics.ttft(measured)
    tpot = metrics.tpot(measured)
    e2e = metrics.e2e(measured)
    stats = {
        "ttft_s": describe(ttft),
        "tpot_s": describe(tpot),
        "ntpot_s": describe(metrics.ntpot(measured)),
        "itl_s": describe(metrics.itl(measured)),
        "e2e_s": describe(e2e),
        "client_lag_s": describe(metrics.client_lag(issued)),
        "output_tokens": describe(output_tokens),
        "input_tokens": describe(input_tokens),
    }

    def per_s(total: float) -> float | None:
        return total / length if length > 0 else None

    input_known = measured.num_rows > 0 and not np.isnan(input_tokens).any()
    goodput = None
    if slo is not None and any(v is not None for v in (slo.ttft_s, slo.tpot_s, slo.e2e_s)):
        meets = np.ones(measured.num_rows, dtype=bool)
        with np.errstate(invalid="ignore"):
            for limit, values in ((slo.ttft_s, ttft), (slo.tpot_s, tpot), (slo.e2e_s, e2e)):
                if limit is not None:
                    meets &= values <= limit  # NaN compares False: a missing figure fails the SLO
        goodput = per_s(float(meets.sum()))
    return {
        "model": _first(table, "model"),
        "phase": window.phase,
        "window": {"start_s": start, "end_s": end, "length_s": length},
        "counts": {
            "issued": n_issued,
            "ok": int((sent_in & (status == "ok")).sum()),
            "error": n_errors,
            "cut": n_cut,
            "measured": measured.num_rows,
            "errors_by_kind": dict(sorted(by_kind.items(), key=lambda kv: str(kv[0]))),
        },
        "throughput": {
            "output_tps": per_s(float(np.nansum(output_tokens))),
            "input_tps": per_s(float(input_tokens.sum())) if input_known else None,
            "request_rps": per_s(float(measured.num_rows)),
            "goodput_rps": goodput,
        },
        "error_rate": (n_errors / n_issued) if n_issued else None,
        "stats": {name: (s.to_json() if s else None) for name, s in stats.items()},
    }


def window_key(window: PhaseWindow) -> str:
    """The key of a window in ``summary.json``: the instance, plus the phase unless it is "load"."""
    return window.instance if window.phase in ("load", "") else f"{window.instance}/{window.phase}"


def _first(table: pa.Table, name: str) -> str | None:
    return str(table.column(name)[0].as_py()) if table.num_rows else None


def summarize_run(info: RunInfo, table: pa.Table, slo: SloSpec | None = None) -> dict[str, Any]:
    """``summary.json`` for a run: one entry per (instance, phase) window in ``run.json``."""
    instances: dict[str, Any] = {}
    instance_col = table.column("instance")
    phase_col = table.column("phase")
    for window in info.phases:
        mask = pc.and_(pc.equal(instance_col, window.instance), pc.equal(phase_col, window.phase))
        key = (
            window.instance if window.phase in ("load", "") else f"{window.instance}/{window.phase}"
        )
        entry = summarize_window(table.filter(mask), window, slo)
        entry["instance"] = window.instance
        instances[key] = entry
    totals = Counter(table.column("status").to_pylist())
    return {
        "schema_version": SUMMARY_VERSION,
        "run_id": info.run_id,
        "scenario": info.scenario,
        "kind": info.kind,
        "status": info.status,
        "labels": info.labels,
        "records": {"total": table.num_rows, **dict(sorted(totals.items()))},
        "instances": instances,
    }

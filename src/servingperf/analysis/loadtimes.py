"""Load times of deployed model instances, as the seed reports them (DESIGN.md §3, "Load time").

Terms. The *load time* of an instance is ``ready_at - created_at``, both on the platform's clock
when it has one (``clock_source`` "platform"), else the harness's; instances that never became
ready have none and are counted apart. The *distribution* is described by min, Q1, median, Q3, P90
and max (percentiles by linear interpolation over all values, numpy's default) and the *factor*
max / min. The *seed sentences* restate it ("90% of the instances were ready in less than 63 s
[P90] (+6 s)"): each quantile with its increase over the previous one, as the seed wrote them.
The *duration* of a deployment run is from the first creation to the last readiness. Times of the
curves are seconds since the first creation. The saturation verdict is in
:mod:`servingperf.analysis.deploy_saturation`.

:func:`summarize_deployments` turns ``deployments.parquet`` (and optionally the run's namespace
driver windows and validation records) into the JSON-able ``summary.json["deployments"]``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from servingperf.analysis import deploy_saturation
from servingperf.analysis.stats import Spread, finite_values, spread_of
from servingperf.results.rundir import PhaseWindow

SUMMARY_VERSION = 1
DRIVER_PHASE = "namespace"  # phase name of the namespace driver windows in run.json
MAX_FAILURES_LISTED = 100

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class LoadTimeStats(Spread):
    """The seed's description of a load-time distribution (seconds): the spread, then the
    quartiles and P90."""

    q1: float
    median: float
    q3: float
    p90: float

    @property
    def factor(self) -> float | None:
        """max / min (the seed's "factor of 2.3"); None when min is 0."""
        return self.max / self.min if self.min > 0 else None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "max_min_factor": self.factor}


def load_time_stats(values: npt.ArrayLike) -> LoadTimeStats | None:
    """Describe load times (NaN ignored); None when there are none."""
    array = finite_values(values)
    if array.size == 0:
        return None
    q1, median, q3, p90 = (float(v) for v in np.percentile(array, (25, 50, 75, 90)))
    return LoadTimeStats(**spread_of(array), q1=q1, median=median, q3=q3, p90=p90)


def format_seconds(value: float, reference: float | None = None) -> str:
    """Seconds with the precision the magnitude deserves: 36 s, 4.2 s, 0.35 s.

    ``reference`` (the smallest value of a set) fixes one precision for every value of the set,
    so that the smallest value still shows its significant digits (2.9 s ... 11.0 s).
    """
    scale = abs(reference if reference is not None else value)
    digits = 0 if scale >= 10 else 1 if scale >= 1 else 2
    return f"{value:.{digits}f} s"


def seed_sentences(stats: LoadTimeStats, noun: str = "instances") -> list[str]:
    """The seed's six sentences: min and Q1 plain, then each quantile with its increase."""
    marks = (
        (0, stats.min, "min"),
        (25, stats.q1, "Q1"),
        (50, stats.median, "median"),
        (75, stats.q3, "Q3"),
        (90, stats.p90, "P90"),
        (100, stats.max, "max"),
    )
    sentences = []
    previous: float | None = None
    reference = stats.min if stats.min > 0 else stats.max
    for percent, value, name in marks:
        text = (
            f"{percent}% of the {noun} were ready in less than"
            f" {format_seconds(value, reference)} [{name}]"
        )
        if previous is not None and percent >= 50:
            text += f" (+{format_seconds(value - previous, reference)})"
        sentences.append(text)
        previous = value
    return sentences


@dataclass(frozen=True, slots=True)
class DeploymentPoints:
    """Per-instance figures in creation order (``t_*`` in seconds since the first creation).

    ``load_time_s`` and ``ready_s`` are NaN for instances that never became ready; instances with
    no creation time (refused by the platform) are left out here and counted in the summary.
    """

    instance: tuple[str, ...]
    namespace: tuple[str, ...]
    created_s: FloatArray
    ready_s: FloatArray
    load_time_s: FloatArray
    origin: datetime | None  # created_at of the first instance

    def __len__(self) -> int:
        return len(self.instance)

    @property
    def ready_mask(self) -> npt.NDArray[np.bool_]:
        return ~np.isnan(self.ready_s)


def _seconds_since(values: Sequence[datetime | None], origin: datetime) -> FloatArray:
    return np.array(
        [math.nan if v is None else (v - origin).total_seconds() for v in values],
        dtype=np.float64,
    )


def deployment_points(deployments: pa.Table) -> DeploymentPoints:
    """The created instances of a deployments table, in creation order (ties: harness time, name)."""
    rows = [r for r in deployments.to_pylist() if r["created_at"] is not None]
    rows.sort(
        key=lambda r: (
            r["created_at"],
            r["t_created_s"] if r["t_created_s"] is not None else math.inf,
            r["instance"],
        )
    )
    if not rows:
        empty = np.array([], dtype=np.float64)
        return DeploymentPoints((), (), empty, empty, empty, None)
    origin: datetime = rows[0]["created_at"]
    created = _seconds_since([r["created_at"] for r in rows], origin)
    ready = _seconds_since([r["ready_at"] for r in rows], origin)
    return DeploymentPoints(
        instance=tuple(str(r["instance"]) for r in rows),
        namespace=tuple(str(r["namespace"]) for r in rows),
        created_s=created,
        ready_s=ready,
        load_time_s=ready - created,
        origin=origin,
    )


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _reason_kind(reason: str) -> str:
    """A failure reason without its per-instance detail (log tail in parentheses)."""
    return reason.split(" (", 1)[0].strip() or reason


def _failures(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    failed = [r for r in rows if r["ready_at"] is None and r["failure_reason"] is not None]
    kinds = Counter(_reason_kind(str(r["failure_reason"])) for r in failed)
    listed = [
        {
            "instance": r["instance"],
            "namespace": r["namespace"],
            "status": r["status"],
            "reason": r["failure_reason"],
        }
        for r in failed[:MAX_FAILURES_LISTED]
    ]
    return listed, dict(kinds.most_common())


def _validation(rows: list[dict[str, Any]], records: pa.Table | None) -> dict[str, Any]:
    ok = sum(int(r["validations_ok"] or 0) for r in rows)
    failed = sum(int(r["validations_failed"] or 0) for r in rows)
    ready_rows = [r for r in rows if r["ready_at"] is not None]
    to_first = np.array(
        [
            r["t_first_validated_s"] - r["t_ready_s"]
            for r in ready_rows
            if r["t_first_validated_s"] is not None and r["t_ready_s"] is not None
        ],
        dtype=np.float64,
    )
    result: dict[str, Any] = {
        "queries_ok": ok,
        "queries_failed": failed,
        "instances_validated": sum(1 for r in ready_rows if (r["validations_ok"] or 0) > 0),
        "instances_with_failed_queries": sum(1 for r in rows if (r["validations_failed"] or 0) > 0),
        "ready_to_first_validation_s": (
            {
                "median": float(np.median(to_first)),
                "p90": float(np.percentile(to_first, 90)),
                "max": float(to_first.max()),
            }
            if to_first.size
            else None
        ),
    }
    if records is not None and records.num_rows:
        result["by_phase"] = _records_by_phase(records)
    return result


def _records_by_phase(records: pa.Table) -> dict[str, Any]:
    phases = records.column("phase").to_pylist()
    status = records.column("status").to_pylist()
    kinds = records.column("error_kind").to_pylist()
    sent = records.column("t_sent_s").to_pylist()
    end = records.column("t_end_s").to_pylist()
    out: dict[str, Any] = {}
    for phase in sorted(set(phases)):
        index = [i for i, p in enumerate(phases) if p == phase]
        e2e = np.array(
            [
                end[i] - sent[i]
                for i in index
                if status[i] == "ok" and end[i] is not None and sent[i] is not None
            ],
            dtype=np.float64,
        )
        out[phase] = {
            "queries": len(index),
            "ok": sum(1 for i in index if status[i] == "ok"),
            "error": sum(1 for i in index if status[i] == "error"),
            "cut": sum(1 for i in index if status[i] == "cut"),
            "errors_by_kind": dict(
                sorted(Counter(str(kinds[i]) for i in index if status[i] == "error").items())
            ),
            "e2e_s": (
                {
                    "median": float(np.median(e2e)),
                    "p90": float(np.percentile(e2e, 90)),
                    "max": float(e2e.max()),
                }
                if e2e.size
                else None
            ),
        }
    return out


def _namespaces(rows: list[dict[str, Any]], phases: Sequence[PhaseWindow]) -> dict[str, Any]:
    """Per namespace: counts, median load time, and on the harness's clock (``t_*_s``: seconds
    since the run's start, the origin of the driver windows) first creation, last readiness and
    the driver window."""
    windows = {w.instance: w for w in phases if w.phase == DRIVER_PHASE}
    out: dict[str, Any] = {}
    for namespace in sorted({str(r["namespace"]) for r in rows} | set(windows)):
        members = [r for r in rows if r["namespace"] == namespace]
        created = [r["t_created_s"] for r in members if r["t_created_s"] is not None]
        ready = [r["t_ready_s"] for r in members if r["t_ready_s"] is not None]
        loads = [
            (r["ready_at"] - r["created_at"]).total_seconds()
            for r in members
            if r["ready_at"] is not None and r["created_at"] is not None
        ]
        window = windows.get(namespace)
        out[namespace] = {
            "instances": len(members),
            "ready": sum(1 for r in members if r["ready_at"] is not None),
            "failed": sum(
                1 for r in members if r["ready_at"] is None and r["failure_reason"] is not None
            ),
            "median_load_time_s": float(np.median(loads)) if loads else None,
            "t_first_created_s": min(created) if created else None,
            "t_last_ready_s": max(ready) if ready else None,
            "t_driver_start_s": window.start_s if window else None,
            "t_driver_end_s": window.end_s if window else None,
        }
    return out


def summarize_deployments(
    deployments: pa.Table,
    phases: Sequence[PhaseWindow] = (),
    records: pa.Table | None = None,
) -> dict[str, Any]:
    """``summary.json["deployments"]``: counts, load-time distribution and seed sentences,
    duration, saturation verdict, failures, validation counts and per-namespace figures.

    ``phases`` (``run.json``'s) adds each namespace driver's window; ``records`` adds validation
    query counts and E2E latency by phase. Everything is JSON-able (no NaN).
    """
    rows: list[dict[str, Any]] = deployments.to_pylist()
    points = deployment_points(deployments)
    ready = points.ready_mask
    load_times = points.load_time_s[ready]
    stats = load_time_stats(load_times)
    harness = np.array(
        [
            r["t_ready_s"] - r["t_created_s"]
            for r in rows
            if r["t_ready_s"] is not None and r["t_created_s"] is not None
        ],
        dtype=np.float64,
    )
    harness_stats = load_time_stats(harness)
    clocks = sorted({str(r["clock_source"]) for r in rows})
    failures, failure_kinds = _failures(rows)
    duration = (
        float(np.max(points.ready_s[ready]) - np.min(points.created_s)) if ready.any() else None
    )
    last_ready = (
        max(r["ready_at"] for r in rows if r["ready_at"] is not None) if ready.any() else None
    )
    return {
        "schema_version": SUMMARY_VERSION,
        "clock_source": clocks[0] if len(clocks) == 1 else ("mixed" if clocks else None),
        "counts": {
            "instances": len(rows),
            "created": len(points),
            "ready": int(np.count_nonzero(ready)),
            "failed": sum(
                1 for r in rows if r["ready_at"] is None and r["failure_reason"] is not None
            ),
            "pending": sum(
                1 for r in rows if r["ready_at"] is None and r["failure_reason"] is None
            ),
            "namespaces": len({r["namespace"] for r in rows}),
        },
        "load_time_s": stats.to_json() if stats else None,
        "sentences": seed_sentences(stats) if stats else [],
        "harness_load_time_s": harness_stats.to_json() if harness_stats else None,
        "first_created_at": points.origin.isoformat() if points.origin else None,
        "last_ready_at": last_ready.isoformat() if last_ready else None,
        "duration_s": duration,
        "saturation": deploy_saturation.verdict(
            load_times, points.created_s[ready], points.ready_s[ready]
        ),
        "failures": failures,
        "failure_reasons": failure_kinds,
        "validation": _validation(rows, records),
        "namespaces": _namespaces(rows, phases),
    }

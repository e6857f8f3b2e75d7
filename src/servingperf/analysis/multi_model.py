"""Saturation verdicts of a multi-model run: each instance loaded with the others against alone.

Terms. The *concurrent* phase loads every instance at once, the *sequential* phase each alone (its
*baseline*); both are windows in ``run.json`` (:mod:`servingperf.scenarios.multi_model`). For each
instance and each *figure* below, the *ratio* is the concurrent value / the sequential value, and
the *degradation* is how much worse the concurrent value is: ratio - 1 for latencies (lower is
better), 1 - ratio for throughput (higher is better); negative means better when concurrent.

Figures, over each phase's *measured* requests: status ok and ``t_end`` inside the window
[measure_start, measure_end] (the rule of :mod:`servingperf.analysis.summary`; *issued*: ``t_sent``,
or ``t_scheduled`` for one never sent, inside the window):

- ``output_tps``: output token throughput of the window (tokens of measured requests / window
  length); its samples are the rates of ``SUB_WINDOWS`` equal sub-windows
  (:func:`servingperf.analysis.gate.windowed_rates`), whose mean is the window's rate;
- ``e2e_mean_s`` and ``e2e_p90_s``: mean and 90th percentile of E2E latency, per request;
- ``ttft_trimmed_mean_s``: the 10% trimmed mean of TTFT (the mean of the values between the 10th
  and 90th percentiles), per request. Not the median: closed-loop users of fixed-length answers
  fall into lockstep with a batching engine's steps, and TTFT is then bimodal (a request admitted
  by the step that starts as it arrives, or by the next one); the median of such a mixture jumps
  from one mode to the other when their shares cross one half, so two runs of the same system
  judged the median "inconclusive" about one time in four, while a trimmed mean moves with the
  shares smoothly and still ignores the tails;
- ``tpot_median_s``: the median of TPOT, per request.

Confidence intervals are two-sided percentile bootstraps at ``confidence``: each side's samples
(requests, or sub-window rates) are resampled independently ``bootstrap_samples`` times, the
statistic recomputed, and the interval taken over the replicate ratios; seeded, so the same
records give the same verdict. A figure is:

- ``degraded`` when its degradation is above ``saturation_threshold`` AND the interval excludes 1
  (no change) on the worse side;
- ``not degraded`` when the interval shows the degradation is below the threshold (latencies: its
  upper bound < 1 + threshold; throughput: its lower bound > 1 - threshold);
- ``inconclusive`` otherwise (too few samples: fewer than ``MIN_REQUESTS`` requests or
  ``MIN_WINDOWS`` sub-windows per side; a zero baseline; or an interval too wide to tell);
- ``not applicable`` when neither phase has a value (e.g. TTFT of non-streamed requests).

An instance is ``saturated`` when any figure is degraded, ``not saturated`` when every applicable
figure is not degraded, ``inconclusive`` otherwise; the run is saturated when any instance is,
not saturated when all are not, inconclusive otherwise. Error rates are reported, not judged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from scipy import stats

from servingperf.analysis import metrics
from servingperf.analysis.gate import windowed_rates
from servingperf.model.metrics import METRICS, Better
from servingperf.model.specs import MultiModelSpec
from servingperf.results.rundir import PhaseWindow, RunInfo

FloatArray = npt.NDArray[np.float64]

CONCURRENT = "concurrent"
SEQUENTIAL = "sequential"
SUB_WINDOWS = 10
MIN_REQUESTS = 10
MIN_WINDOWS = 5
SCHEMA_VERSION = 2  # 2: TTFT judged by its trimmed mean (ttft_trimmed_mean_s), not its median

SATURATED = "saturated"
NOT_SATURATED = "not saturated"
INCONCLUSIVE = "inconclusive"
DEGRADED = "degraded"
NOT_DEGRADED = "not degraded"
NOT_APPLICABLE = "not applicable"

# Bound on one resampling matrix (cells), so memory stays ~32 MB whatever the sample count.
_MAX_CELLS = 4_000_000

Statistic = Callable[[FloatArray, int | None], FloatArray]


def _mean(values: FloatArray, axis: int | None) -> FloatArray:
    return np.asarray(np.mean(values, axis=axis), dtype=np.float64)


def _median(values: FloatArray, axis: int | None) -> FloatArray:
    return np.asarray(np.median(values, axis=axis), dtype=np.float64)


def _p90(values: FloatArray, axis: int | None) -> FloatArray:
    return np.asarray(np.quantile(values, 0.9, axis=axis), dtype=np.float64)


TRIM = 0.1  # cut from each end by the trimmed mean


def _trimmed_mean(values: FloatArray, axis: int | None) -> FloatArray:
    return np.asarray(stats.trim_mean(values, TRIM, axis=axis), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class FigureDef:
    """One compared figure: its key in the summary, the metric (unit, direction), the statistic."""

    key: str
    metric: str
    statistic: str
    title: str


FIGURES = (
    FigureDef("output_tps", "output_throughput_tps", "rate", "Output token throughput"),
    FigureDef("e2e_mean_s", "e2e_s", "mean", "Mean E2E latency"),
    FigureDef("e2e_p90_s", "e2e_s", "p90", "P90 E2E latency"),
    FigureDef("ttft_trimmed_mean_s", "ttft_s", "trimmed_mean", "TTFT, 10% trimmed mean"),
    FigureDef("tpot_median_s", "tpot_s", "median", "Median TPOT"),
)
_STATISTICS: dict[str, Statistic] = {
    "rate": _mean,
    "mean": _mean,
    "median": _median,
    "p90": _p90,
    "trimmed_mean": _trimmed_mean,
}


@dataclass(frozen=True, slots=True)
class Comparison:
    """One figure of one instance, concurrent against sequential (terms: module docstring).

    ``*_ci`` are intervals at the stated confidence: of each side's value and of the ratio.
    Values are None where they cannot be computed; ``reason`` says why, or what was decided.
    """

    verdict: str
    reason: str
    better: Better
    n_concurrent: int
    n_sequential: int
    concurrent: float | None = None
    sequential: float | None = None
    ratio: float | None = None
    degradation: float | None = None
    ratio_ci: tuple[float, float] | None = None
    concurrent_ci: tuple[float, float] | None = None
    sequential_ci: tuple[float, float] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "better": self.better.value,
            "n_concurrent": self.n_concurrent,
            "n_sequential": self.n_sequential,
            "concurrent": _num(self.concurrent),
            "sequential": _num(self.sequential),
            "ratio": _num(self.ratio),
            "degradation": _num(self.degradation),
            "ratio_ci": _pair(self.ratio_ci),
            "concurrent_ci": _pair(self.concurrent_ci),
            "sequential_ci": _pair(self.sequential_ci),
        }


def _num(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _pair(pair: tuple[float, float] | None) -> list[float | None] | None:
    return None if pair is None else [_num(pair[0]), _num(pair[1])]


def _finite(values: npt.ArrayLike) -> FloatArray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def bootstrap(
    samples: FloatArray, statistic: Statistic, iterations: int, rng: np.random.Generator
) -> FloatArray:
    """``iterations`` replicates of ``statistic`` over resamples of ``samples``, memory-bounded."""
    n = samples.size
    out = np.empty(iterations, dtype=np.float64)
    batch = max(1, _MAX_CELLS // max(1, n))
    for start in range(0, iterations, batch):
        rows = min(batch, iterations - start)
        out[start : start + rows] = statistic(samples[rng.integers(0, n, size=(rows, n))], 1)
    return out


def compare(
    concurrent: npt.ArrayLike,
    sequential: npt.ArrayLike,
    *,
    statistic: str,
    better: Better,
    threshold: float,
    confidence: float,
    iterations: int,
    min_samples: int,
    seed: int | tuple[int, ...] = 0,
) -> Comparison:
    """Judge one figure from each side's samples (rules in the module docstring). Pure, seeded."""
    conc = _finite(concurrent)
    seq = _finite(sequential)
    n_c, n_s = int(conc.size), int(seq.size)

    def result(verdict: str, reason: str, **values: Any) -> Comparison:
        return Comparison(verdict, reason, better, n_c, n_s, **values)

    if n_c == 0 and n_s == 0:
        return result(NOT_APPLICABLE, "no value in either phase")
    short = [
        f"{side} n={n} < {min_samples}"
        for side, n in ((CONCURRENT, n_c), (SEQUENTIAL, n_s))
        if n < min_samples
    ]
    if short:
        return result(INCONCLUSIVE, f"too few samples: {', '.join(short)}")
    stat = _STATISTICS[statistic]
    c_value = float(stat(conc, None))
    s_value = float(stat(seq, None))
    if not s_value > 0:
        return result(
            INCONCLUSIVE,
            f"sequential value is {s_value:g}: a ratio is undefined",
            concurrent=c_value,
            sequential=s_value,
        )
    ratio = c_value / s_value
    degradation = ratio - 1.0 if better is Better.LOWER else 1.0 - ratio
    rng = np.random.default_rng(seed)
    boot_c = bootstrap(conc, stat, iterations, rng)
    boot_s = bootstrap(seq, stat, iterations, rng)
    alpha = 1.0 - confidence
    quantiles = [alpha / 2, 1 - alpha / 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = boot_c / boot_s
    ratios = ratios[np.isfinite(ratios)]
    c_ci = _interval(boot_c, quantiles)
    s_ci = _interval(boot_s, quantiles)
    values: dict[str, Any] = {
        "concurrent": c_value,
        "sequential": s_value,
        "ratio": ratio,
        "degradation": degradation,
        "concurrent_ci": c_ci,
        "sequential_ci": s_ci,
    }
    if ratios.size < iterations // 2:
        return result(INCONCLUSIVE, "the baseline is 0 in most resamples: no interval", **values)
    low, high = _interval(ratios, quantiles)
    values["ratio_ci"] = (low, high)
    ci_text = f"{confidence:.0%} CI of the ratio [{low:.3f}, {high:.3f}]"
    change = f"ratio {ratio:.3f}, degradation {degradation:+.1%} (threshold {threshold:.0%})"
    if better is Better.LOWER:
        significant, bounded = low > 1.0, high < 1.0 + threshold
    else:
        significant, bounded = high < 1.0, low > 1.0 - threshold
    if degradation > threshold and significant:
        return result(DEGRADED, f"{change}: worse beyond the threshold, {ci_text}", **values)
    if bounded:
        return result(
            NOT_DEGRADED, f"{change}: {ci_text} bounds the degradation below it", **values
        )
    if degradation > threshold:
        why = "beyond the threshold, but the interval contains 1"
    else:
        why = "the interval reaches beyond the threshold"
    return result(INCONCLUSIVE, f"{change}: {why}, {ci_text}", **values)


def _interval(values: FloatArray, quantiles: list[float]) -> tuple[float, float]:
    low, high = (float(x) for x in np.quantile(values, quantiles))
    return low, high


def instance_verdict(figures: Mapping[str, Comparison]) -> tuple[str, str]:
    """The instance's verdict and its reason, from its figures' verdicts (module docstring)."""
    degraded = [k for k, c in figures.items() if c.verdict == DEGRADED]
    applicable = {k: c for k, c in figures.items() if c.verdict != NOT_APPLICABLE}
    if degraded:
        parts = [f"{k} ratio {figures[k].ratio:.3f}" for k in degraded]
        return SATURATED, f"degraded beyond the threshold: {', '.join(parts)}"
    if applicable and all(c.verdict == NOT_DEGRADED for c in applicable.values()):
        return NOT_SATURATED, "every figure's interval bounds its degradation below the threshold"
    if not applicable:
        return INCONCLUSIVE, "no figure could be computed"
    undecided = [k for k, c in applicable.items() if c.verdict == INCONCLUSIVE]
    return INCONCLUSIVE, f"not decided for: {', '.join(undecided)}"


def overall_verdict(verdicts: Mapping[str, str]) -> tuple[str, str]:
    saturated = [name for name, v in verdicts.items() if v == SATURATED]
    if saturated:
        return SATURATED, f"saturated: {', '.join(saturated)}"
    if verdicts and all(v == NOT_SATURATED for v in verdicts.values()):
        return NOT_SATURATED, f"all {len(verdicts)} instances not saturated"
    undecided = [name for name, v in verdicts.items() if v != NOT_SATURATED]
    return INCONCLUSIVE, f"undecided: {', '.join(undecided) or 'no instance'}"


@dataclass(frozen=True, slots=True)
class _Side:
    """One instance's measured requests in one phase, and its window."""

    window: PhaseWindow
    measured: pa.Table
    issued: int
    errors: int
    model: str | None

    @property
    def bounds(self) -> tuple[float, float]:
        return window_bounds(self.window)

    def samples(self, figure: FigureDef) -> FloatArray:
        table = self.measured
        if figure.statistic == "rate":
            start, end = self.bounds
            if not end > start:
                return np.empty(0, dtype=np.float64)
            tokens = np.nan_to_num(metrics.column(table, "output_tokens"), nan=0.0)
            ends = metrics.column(table, "t_end_s")
            return windowed_rates(ends, start, end, weights=tokens, n_windows=SUB_WINDOWS)
        return metrics.PER_REQUEST[figure.metric](table)

    def to_json(self) -> dict[str, Any]:
        start, end = self.bounds
        w = self.window
        return {
            "start_s": w.start_s,
            "measure_start_s": start,
            "measure_end_s": end,
            "end_s": w.end_s,
            "measured": self.measured.num_rows,
            "issued": self.issued,
            "errors": self.errors,
            "error_rate": (self.errors / self.issued) if self.issued else None,
        }


def window_bounds(window: PhaseWindow) -> tuple[float, float]:
    """The measurement window; one without an end is empty."""
    start = window.measure_start_s
    end = window.measure_end_s if window.measure_end_s is not None else start
    return start, end


def _between(values: FloatArray, start: float, end: float) -> npt.NDArray[np.bool_]:
    with np.errstate(invalid="ignore"):
        return (values >= start) & (values <= end)


def _side(records: pa.Table, window: PhaseWindow) -> _Side:
    mine = records.filter(
        pc.and_(
            pc.equal(records.column("instance"), window.instance),
            pc.equal(records.column("phase"), window.phase),
        )
    )
    start, end = window_bounds(window)
    status = np.asarray(mine.column("status").to_pylist(), dtype=object)
    sent = metrics.column(mine, "t_sent_s")
    sent = np.where(np.isnan(sent), metrics.column(mine, "t_scheduled_s"), sent)
    issued = _between(sent, start, end)
    measured = (status == "ok") & _between(metrics.column(mine, "t_end_s"), start, end)
    return _Side(
        window,
        mine.filter(pa.array(measured, type=pa.bool_())),
        int(issued.sum()),
        int((issued & (status == "error")).sum()),
        str(mine.column("model")[0].as_py()) if mine.num_rows else None,
    )


def _phase_span(windows: list[PhaseWindow]) -> dict[str, float | None] | None:
    if not windows:
        return None
    ends = [w.end_s if w.end_s is not None else w.measure_end_s for w in windows]
    known = [end for end in ends if end is not None]
    return {
        "start_s": min(w.start_s for w in windows),
        "end_s": max(known) if known else None,
    }


def summarize_multi_model(info: RunInfo, records: pa.Table, spec: MultiModelSpec) -> dict[str, Any]:
    """The ``multi_model`` part of ``summary.json``: per instance, each figure concurrent against
    sequential with its interval and verdict, the instance's verdict, and the run's."""
    windows: dict[str, dict[str, PhaseWindow]] = {}
    for window in info.phases:
        if window.phase in (CONCURRENT, SEQUENTIAL):
            windows.setdefault(window.instance, {})[window.phase] = window
    instances: dict[str, Any] = {}
    verdicts: dict[str, str] = {}
    for index, (name, phases) in enumerate(windows.items()):
        sides = {phase: _side(records, w) for phase, w in phases.items()}
        entry: dict[str, Any] = {
            "model": next((s.model for s in sides.values() if s.model is not None), None),
            "phases": {phase: side.to_json() for phase, side in sides.items()},
        }
        if CONCURRENT in sides and SEQUENTIAL in sides:
            figures = {
                f.key: compare(
                    sides[CONCURRENT].samples(f),
                    sides[SEQUENTIAL].samples(f),
                    statistic=f.statistic,
                    better=METRICS[f.metric].better,
                    threshold=spec.saturation_threshold,
                    confidence=spec.confidence,
                    iterations=spec.bootstrap_samples,
                    min_samples=MIN_WINDOWS if f.statistic == "rate" else MIN_REQUESTS,
                    seed=(index, position),
                )
                for position, f in enumerate(FIGURES)
            }
            verdict, reason = instance_verdict(figures)
            entry["figures"] = {key: c.to_json() for key, c in figures.items()}
        else:
            missing = SEQUENTIAL if CONCURRENT in sides else CONCURRENT
            verdict, reason = INCONCLUSIVE, f"no {missing} window: nothing to compare"
            entry["figures"] = {}
        entry["verdict"], entry["reason"] = verdict, reason
        instances[name] = entry
        verdicts[name] = verdict
    if not spec.sequential:
        overall, overall_reason = INCONCLUSIVE, "no sequential baseline (multi_model.sequential)"
    else:
        overall, overall_reason = overall_verdict(verdicts)
    by_phase = {
        phase: _phase_span([p[phase] for p in windows.values() if phase in p])
        for phase in (CONCURRENT, SEQUENTIAL)
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "verdict": overall,
        "reason": overall_reason,
        "saturated_instances": sorted(n for n, v in verdicts.items() if v == SATURATED),
        "rules": {
            "saturation_threshold": spec.saturation_threshold,
            "confidence": spec.confidence,
            "bootstrap_samples": spec.bootstrap_samples,
            "sub_windows": SUB_WINDOWS,
            "min_requests": MIN_REQUESTS,
            "min_windows": MIN_WINDOWS,
            "statement": rules_statement(spec),
        },
        "figures": [
            {
                "key": f.key,
                "metric": f.metric,
                "statistic": f.statistic,
                "title": f.title,
                "unit": METRICS[f.metric].unit,
                "better": METRICS[f.metric].better.value,
            }
            for f in FIGURES
        ],
        "phases": by_phase,
        "instances": instances,
    }


def rules_statement(spec: MultiModelSpec) -> str:
    """The verdict rule in one sentence, with the numbers in force (shown in reports)."""
    t = spec.saturation_threshold
    return (
        f"An instance is saturated when a figure is worse concurrent than sequential by more than"
        f" {t:.0%} (latency ratio > {1 + t:.2f}, throughput ratio < {1 - t:.2f}) and the"
        f" {spec.confidence:.0%} bootstrap interval of the ratio excludes 1; not saturated when"
        f" every figure's interval bounds its degradation below {t:.0%}; inconclusive otherwise."
    )

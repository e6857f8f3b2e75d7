"""GuideLLM's statistics: a weighted distribution read off its cumulative probabilities, and the
time-weighted *rate distribution* of events (GuideLLM's requests/s and tokens/s).

Weighted distribution (``DistributionSummary.from_values`` / ``from_pdf`` of
``src/guidellm/schemas/statistics.py``): equal values are merged with their weights summed, zero
weights dropped, weights normalised to probabilities; the q-quantile is the smallest value whose
cumulative probability reaches q (a search on the cumulative sum, not numpy's linear
interpolation); the mean is the probability-weighted mean.

Rate distribution (``rate_distribution_from_timings``): events (time, weight), clipped to
[start, end] when given (a zero-weight event marks each bound); equal times merged, then each run
of times within ``threshold`` (0.1 ms) of its first merged into it; each event gets the local
duration between the midpoints to its neighbours, its rate is weight / duration, and the rates are
summarised as a weighted distribution with the durations as weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from servingperf.analysis.stats import FloatArray

_EPSILON = 1e-6
MERGE_THRESHOLD_S = 1e-4


@dataclass(frozen=True, slots=True)
class Weighted:
    count: int
    mean: float
    median: float
    percentiles: dict[float, float]


def weighted(
    values: FloatArray, weights: FloatArray | None, quantiles: Sequence[float]
) -> Weighted:
    """The weighted distribution of ``values`` (weights 1 if None)."""
    values = np.asarray(values, dtype=np.float64)
    weights = np.ones_like(values) if weights is None else np.asarray(weights, dtype=np.float64)
    if values.size == 0:
        return Weighted(0, 0.0, 0.0, dict.fromkeys(quantiles, 0.0))
    count = round(float(weights.sum()))
    unique, inverse = np.unique(values, return_inverse=True)
    combined = np.zeros_like(unique)
    np.add.at(combined, inverse, weights)
    keep = combined > 0
    unique, combined = unique[keep], combined[keep]
    if unique.size == 0:
        return Weighted(count, 0.0, 0.0, dict.fromkeys(quantiles, 0.0))
    total = combined.sum()
    if total <= _EPSILON:
        combined = np.ones_like(unique)
        total = combined.sum()
    probabilities = combined / total
    cumulative = np.cumsum(probabilities)

    def at(q: float) -> float:
        index = min(int(np.searchsorted(cumulative, q, side="left")), unique.size - 1)
        return float(unique[index])

    mean = float(np.sum(unique * probabilities))
    return Weighted(count, mean, at(0.5), {q: at(q) for q in quantiles})


def merge_close(
    times: FloatArray, weights: FloatArray, threshold: float
) -> tuple[FloatArray, FloatArray]:
    """Equal times merged, then every time within ``threshold`` of a group's first time merged
    into that group (at the group's first time), weights summed; ``times`` sorted."""
    unique, inverse = np.unique(times, return_inverse=True)
    summed = np.zeros_like(unique)
    np.add.at(summed, inverse, weights)
    if threshold <= 0 or unique.size < 2:
        return unique, summed
    group_times: list[float] = []
    group_weights: list[float] = []
    index = 0
    while index < unique.size:
        stop = int(np.searchsorted(unique, unique[index] + threshold, side="right"))
        stop = max(stop, index + 1)
        group_times.append(float(unique[index]))
        group_weights.append(float(summed[index:stop].sum()))
        index = stop
    return np.asarray(group_times), np.asarray(group_weights)


def rate_distribution(
    times: FloatArray,
    weights: FloatArray | None,
    quantiles: Sequence[float],
    start: float | None = None,
    end: float | None = None,
    threshold: float = MERGE_THRESHOLD_S,
) -> Weighted:
    times = np.asarray(times, dtype=np.float64)
    weights = np.ones_like(times) if weights is None else np.asarray(weights, dtype=np.float64)
    if start is not None:
        keep = times >= start
        times, weights = np.insert(times[keep], 0, start), np.insert(weights[keep], 0, 0.0)
    if end is not None:
        keep = times <= end
        times, weights = np.append(times[keep], end), np.append(weights[keep], 0.0)
    order = np.argsort(times, kind="stable")
    merged_times, occurrences = merge_close(times[order], weights[order], threshold)
    if merged_times.size <= 1:
        return weighted(np.empty(0), None, quantiles)
    midpoints = (merged_times[1:] + merged_times[:-1]) / 2
    durations = np.empty_like(merged_times)
    durations[0] = midpoints[0] - merged_times[0]
    durations[1:-1] = midpoints[1:] - midpoints[:-1]
    durations[-1] = max(merged_times[-1] - midpoints[-1], _EPSILON)
    rates = occurrences / durations
    result = weighted(rates, durations, quantiles)
    return Weighted(round(float(occurrences.sum())), result.mean, result.median, result.percentiles)

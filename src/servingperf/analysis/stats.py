"""Descriptive statistics as the README defines them, and the bootstrap resampling the gate uses.

Percentiles interpolate linearly over all samples (numpy's default), never an average of
percentiles; an empty sample describes as ``None``. The resampling part (below) defines its own
terms: side, run, pooled statistic, replicate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

PERCENTILES = (50, 90, 95, 99)

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Spread:
    """What every description of a distribution here starts with: count, extremes, mean; the
    descriptions add their own quantiles (:class:`Stats`; the load times' ``LoadTimeStats``)."""

    n: int
    min: float
    max: float
    mean: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def finite_values(values: npt.ArrayLike) -> FloatArray:
    """The values as float64, NaN left out (an absent figure)."""
    array = np.asarray(values, dtype=np.float64)
    return array[~np.isnan(array)]


def spread_of(array: FloatArray) -> dict[str, Any]:
    """The :class:`Spread` fields of a non-empty array, as keyword arguments."""
    return {
        "n": int(array.size),
        "min": float(array.min()),
        "max": float(array.max()),
        "mean": float(array.mean()),
    }


@dataclass(frozen=True, slots=True)
class Stats(Spread):
    """The README's description of a per-request figure: the spread, then p50 to p99."""

    p50: float
    p90: float
    p95: float
    p99: float


def describe(values: npt.ArrayLike) -> Stats | None:
    array = finite_values(values)
    if array.size == 0:
        return None
    p50, p90, p95, p99 = (float(v) for v in np.percentile(array, PERCENTILES))
    return Stats(**spread_of(array), p50=p50, p90=p90, p95=p95, p99=p99)


# --- Resampling ------------------------------------------------------------------------------
#
# Terms. A *side* is a list of *runs*, each a 1-d array of finite samples (one run's per-request
# values, or its sub-window rates). The *pooled statistic* of a side is the statistic of all its
# samples together (``q`` a quantile in [0, 1], linear interpolation as numpy's default; ``None``
# the mean). A *replicate* is the pooled statistic of one bootstrap resample of the side.

# Upper bound on the cells of one resampling matrix, so memory stays bounded (~32 MB per array)
# whatever the sample count; replicates are computed in batches of this size.
MAX_BOOTSTRAP_CELLS = 4_000_000


def pooled_statistic(values: FloatArray, q: float | None) -> float:
    """The statistic of ``values``: their mean (``q`` None) or their ``q``-quantile."""
    if q is None:
        return float(np.mean(values))
    return float(np.quantile(values, q))


def _row_statistic(rows: FloatArray, counts: npt.NDArray[np.int64], q: float | None) -> FloatArray:
    """Per row, the statistic of its first ``counts[i]`` values; the rest is NaN padding.

    Sorted rows put the padding last, so a quantile is the linear interpolation numpy's default
    uses, at position ``q * (count - 1)`` (the same figure as ``np.quantile`` on the row alone).
    """
    if q is None:
        return np.asarray(np.nansum(rows, axis=1) / counts, dtype=np.float64)
    # NaN sorts last
    ordered = np.sort(rows, axis=1)
    position = q * (counts - 1)
    lo = np.floor(position).astype(np.int64)
    hi = np.minimum(lo + 1, counts - 1)
    frac = position - lo
    index = np.arange(rows.shape[0])
    low, high = ordered[index, lo], ordered[index, hi]
    return np.asarray(low + (high - low) * frac, dtype=np.float64)


def bootstrap_runs(
    runs: Sequence[FloatArray], q: float | None, iterations: int, rng: np.random.Generator
) -> FloatArray:
    """Replicates of the pooled statistic under the two-stage (hierarchical) bootstrap.

    Each replicate draws as many runs as the side has, with replacement, then resamples each
    drawn run's own samples with replacement (as many as it has), and takes the statistic of all
    of them pooled. The spread of the replicates thus holds the variance between runs (machine
    load, placement, a noisy neighbour) as well as the variance between requests within a run,
    which a bootstrap of pooled requests, treating them as independent, cannot see.
    """
    sizes = np.array([r.size for r in runs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    pooled = np.concatenate(runs)
    n_runs, widest = sizes.size, int(sizes.max())
    ragged = bool(np.any(sizes != widest))
    out = np.empty(iterations, dtype=np.float64)
    batch = max(1, MAX_BOOTSTRAP_CELLS // (n_runs * widest))
    slot = np.arange(widest)
    for start in range(0, iterations, batch):
        rows = min(batch, iterations - start)
        drawn = rng.integers(0, n_runs, size=(rows, n_runs))
        drawn_sizes = sizes[drawn][..., None]
        # a uniform index below each drawn run's own size (the min guards float rounding)
        within = (rng.random((rows, n_runs, widest)) * drawn_sizes).astype(np.int64)
        values = pooled[offsets[drawn][..., None] + np.minimum(within, drawn_sizes - 1)]
        if ragged:  # slots beyond a drawn run's size are padding
            values = np.where(slot < drawn_sizes, values, np.nan)
        out[start : start + rows] = _row_statistic(
            values.reshape(rows, n_runs * widest), sizes[drawn].sum(axis=1), q
        )
    return out


@dataclass(frozen=True, slots=True)
class RunSpread:
    """The runs of a side, their statistics' spread widened for a small run count.

    ``measured`` is the pooled statistic of the runs as given. ``runs`` are the side's runs, each
    scaled so that the log-deviation of its statistic from ``measured`` grows by
    ``c = sqrt(R / (R - 1))``; ``log_deviations`` are those widened deviations, one per run. The
    bootstrap's variance of a mean over R drawn runs is (R - 1) / R of the unbiased one, a third
    too small for 3 runs; the widening undoes that, and tends to nothing as runs accumulate.
    ``log_deviations`` is None when the widening is undefined (one run, or a statistic <= 0): the
    runs are then kept as given.
    """

    runs: tuple[FloatArray, ...]
    log_deviations: FloatArray | None
    measured: float


def widen_run_spread(runs: Sequence[FloatArray], q: float | None) -> RunSpread:
    """See :class:`RunSpread`. Scaling a run by k scales its mean and quantiles by k, so run j
    becomes ``x_j * (s_j / s) ** (c - 1)`` and its statistic ``s * (s_j / s) ** c``."""
    measured = pooled_statistic(np.concatenate(runs), q)
    if len(runs) < 2:
        return RunSpread(tuple(runs), None, measured)
    own = np.array([pooled_statistic(r, q) for r in runs], dtype=np.float64)
    if not (measured > 0 and np.all(own > 0) and np.all(np.isfinite(own))):
        return RunSpread(tuple(runs), None, measured)
    widening = math.sqrt(len(runs) / (len(runs) - 1))
    deviations = np.log(own / measured)
    scales = np.exp((widening - 1.0) * deviations)
    widened = tuple(r * scale for r, scale in zip(runs, scales, strict=True))
    return RunSpread(widened, widening * deviations, measured)

"""Is the deployment stack saturated? Two computed tests on the instances that became ready.

Terms. *Creation order* numbers the instances 0..n-1 by creation time. The *trend* is the
Theil-Sen slope of load time against creation order (the median of all pairwise slopes: robust to
a few slow outliers), with its two-sided confidence interval (``CONFIDENCE``, Sen's method); the
*increase over the run* is slope x (n - 1). The *curves* are the cumulative counts of created and
of ready instances over time; their *lag* at level k is the time the k-th instance became ready
minus the time the k-th instance was created (k-th in each order: the horizontal distance between
the two curves). Lag growth compares the lags of the first and of the last quarter of the levels
with a one-sided Mann-Whitney U test (are the late lags larger?).

Verdict (documented in docs/many-model.md), with ``m`` the median load time:

- the trend says *saturated* when the lower confidence bound of the increase over the run exceeds
  ``TREND_FRACTION`` x m (the load time surely grew by more than a quarter of its median);
- the lag *grows* when the Mann-Whitney p-value is below ``LAG_ALPHA`` and the median lag of the last
  quarter exceeds that of the first by more than ``LAG_FRACTION`` x m;
- the stack is *saturated* when either holds; with fewer than ``MIN_INSTANCES`` ready instances the
  verdict is *insufficient data*.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats as scipy_stats

CONFIDENCE = 0.95
TREND_FRACTION = 0.25
LAG_FRACTION = 0.25
LAG_ALPHA = 0.05
MIN_INSTANCES = 8

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Trend:
    """Theil-Sen fit of load time (s) against creation order."""

    n: int
    slope_s: float  # seconds of load time per instance created
    slope_low_s: float
    slope_high_s: float
    intercept_s: float  # fitted load time of the first instance
    confidence: float
    increase_s: float  # slope x (n - 1)
    increase_low_s: float
    increase_high_s: float
    threshold_s: float
    saturated: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class LagGrowth:
    """Lag between the created and ready curves, first quarter of the levels against the last."""

    n: int
    quarter: int  # levels in each compared quarter
    first_median_s: float
    last_median_s: float
    growth_s: float
    p_value: float
    alpha: float
    threshold_s: float
    grows: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def trend(load_times_s: npt.ArrayLike, median_s: float) -> Trend | None:
    """The trend of load times given in creation order; None for fewer than 3 values."""
    y = np.asarray(load_times_s, dtype=np.float64)
    n = int(y.size)
    if n < 3:
        return None
    x = np.arange(n, dtype=np.float64)
    if np.all(y == y[0]):  # no spread: the slope is exactly 0 (scipy's interval needs spread)
        slope = low = high = 0.0
        intercept = float(y[0])
    else:
        fit = scipy_stats.theilslopes(y, x, alpha=CONFIDENCE)
        slope, intercept = float(fit[0]), float(fit[1])
        low, high = float(fit[2]), float(fit[3])
    span = n - 1
    threshold = TREND_FRACTION * median_s
    return Trend(
        n=n,
        slope_s=slope,
        slope_low_s=low,
        slope_high_s=high,
        intercept_s=intercept,
        confidence=CONFIDENCE,
        increase_s=slope * span,
        increase_low_s=low * span,
        increase_high_s=high * span,
        threshold_s=threshold,
        saturated=bool(low * span > threshold),
    )


def curve_lags(created_s: npt.ArrayLike, ready_s: npt.ArrayLike) -> FloatArray:
    """Lag at each level k: k-th smallest ready time minus k-th smallest created time."""
    created = np.sort(np.asarray(created_s, dtype=np.float64))
    ready = np.sort(np.asarray(ready_s, dtype=np.float64))
    if created.size != ready.size:
        raise ValueError("created and ready times must describe the same instances")
    lags: FloatArray = ready - created
    return lags


def lag_growth(
    created_s: npt.ArrayLike, ready_s: npt.ArrayLike, median_s: float
) -> LagGrowth | None:
    """Compare the curve lags of the first and last quarter of the levels; None for fewer than 8."""
    lags = curve_lags(created_s, ready_s)
    n = int(lags.size)
    quarter = n // 4
    if quarter < 2:
        return None
    first, last = lags[:quarter], lags[-quarter:]
    if np.all(first == first[0]) and np.all(last == first[0]):
        p_value = 1.0  # identical samples: no evidence of growth (and scipy would warn)
    else:
        p_value = float(scipy_stats.mannwhitneyu(first, last, alternative="less").pvalue)
    first_median = float(np.median(first))
    last_median = float(np.median(last))
    growth = last_median - first_median
    threshold = LAG_FRACTION * median_s
    return LagGrowth(
        n=n,
        quarter=quarter,
        first_median_s=first_median,
        last_median_s=last_median,
        growth_s=growth,
        p_value=p_value,
        alpha=LAG_ALPHA,
        threshold_s=threshold,
        grows=bool(p_value < LAG_ALPHA and growth > threshold),
    )


def max_loading(created_s: npt.ArrayLike, ready_s: npt.ArrayLike) -> int:
    """The most instances loading at once (created, not yet ready), over instances that became
    ready; a ready event at the same moment as a creation counts first."""
    created = np.asarray(created_s, dtype=np.float64)
    ready = np.asarray(ready_s, dtype=np.float64)
    if created.size == 0:
        return 0
    times = np.concatenate([ready, created])
    steps = np.concatenate([-np.ones(ready.size), np.ones(created.size)])
    order = np.lexsort((steps, times))  # by time, then -1 before +1
    return int(np.max(np.cumsum(steps[order])))


def verdict(
    load_times_in_order_s: npt.ArrayLike,
    created_s: npt.ArrayLike,
    ready_s: npt.ArrayLike,
) -> dict[str, Any]:
    """The saturation verdict and both tests' figures (JSON-able), from the ready instances'
    load times in creation order and their created / ready times (seconds, any common origin)."""
    values = np.asarray(load_times_in_order_s, dtype=np.float64)
    n = int(values.size)
    median = float(np.median(values)) if n else 0.0
    fit = trend(values, median)
    lag = lag_growth(created_s, ready_s, median)
    thresholds = {
        "confidence": CONFIDENCE,
        "trend_fraction_of_median": TREND_FRACTION,
        "lag_fraction_of_median": LAG_FRACTION,
        "lag_alpha": LAG_ALPHA,
        "min_instances": MIN_INSTANCES,
    }
    reasons: list[str] = []
    if n < MIN_INSTANCES or fit is None:
        state, saturated = "insufficient data", None
        reasons.append(f"{n} ready instances; a verdict needs at least {MIN_INSTANCES}")
    else:
        if fit.saturated:
            reasons.append(
                f"load time rose by at least {fit.increase_low_s:.3g} s over the run"
                f" ({CONFIDENCE:.0%} confidence), more than {fit.threshold_s:.3g} s"
                f" ({TREND_FRACTION:.0%} of the median)"
            )
        if lag is not None and lag.grows:
            reasons.append(
                f"the lag between the created and ready curves grew from {lag.first_median_s:.3g} s"
                f" to {lag.last_median_s:.3g} s (p = {lag.p_value:.2g})"
            )
        saturated = bool(reasons)
        state = "saturated" if saturated else "not saturated"
        if not saturated:
            reasons.append(
                f"load-time increase over the run {fit.increase_s:.3g} s"
                f" [{fit.increase_low_s:.3g}, {fit.increase_high_s:.3g}], threshold"
                f" {fit.threshold_s:.3g} s; lag growth "
                + (f"{lag.growth_s:.3g} s (p = {lag.p_value:.2g})" if lag else "not testable")
            )
    return {
        "verdict": state,
        "saturated": saturated,
        "reasons": reasons,
        "trend": fit.to_json() if fit else None,
        "lag": lag.to_json() if lag else None,
        "max_loading_at_once": max_loading(created_s, ready_s),
        "thresholds": thresholds,
    }

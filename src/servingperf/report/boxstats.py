"""Box-plot statistics, computed in Python from every value so that no chart sample distorts them.

Terms. Q1, median and Q3 are percentiles 25, 50 and 75 with linear interpolation (numpy's default,
DESIGN.md §3). The whiskers are Tukey's: the lowest value >= Q1 - 1.5 IQR and the highest value
<= Q3 + 1.5 IQR, IQR = Q3 - Q1; values beyond them are outliers, counted but not drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

WHISKER_IQR = 1.5


@dataclass(frozen=True, slots=True)
class BoxStats:
    n: int
    min: float
    whisker_low: float
    q1: float
    median: float
    q3: float
    whisker_high: float
    max: float
    mean: float
    p90: float
    p99: float
    outliers: int


def box_stats(values: npt.ArrayLike) -> BoxStats | None:
    """The box of the finite entries of ``values``; ``None`` when there is none (nothing to draw)."""
    data = np.asarray(values, dtype=np.float64)
    data = data[np.isfinite(data)]
    if data.size == 0:
        return None
    q1, median, q3, p90, p99 = (float(v) for v in np.percentile(data, [25, 50, 75, 90, 99]))
    iqr = q3 - q1
    low_fence, high_fence = q1 - WHISKER_IQR * iqr, q3 + WHISKER_IQR * iqr
    inside = data[(data >= low_fence) & (data <= high_fence)]
    return BoxStats(
        n=int(data.size),
        min=float(data.min()),
        whisker_low=float(inside.min()),
        q1=q1,
        median=median,
        q3=q3,
        whisker_high=float(inside.max()),
        max=float(data.max()),
        mean=float(data.mean()),
        p90=p90,
        p99=p99,
        outliers=int(data.size - inside.size),
    )

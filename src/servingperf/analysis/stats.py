"""Descriptive statistics as the README defines them: percentiles by linear interpolation over all
samples (numpy's default), never an average of percentiles; an empty sample describes as ``None``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

PERCENTILES = (50, 90, 95, 99)

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Stats:
    n: int
    min: float
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def describe(values: npt.ArrayLike) -> Stats | None:
    array = np.asarray(values, dtype=np.float64)
    array = array[~np.isnan(array)]
    if array.size == 0:
        return None
    p50, p90, p95, p99 = np.percentile(array, PERCENTILES)
    return Stats(
        n=int(array.size),
        min=float(array.min()),
        mean=float(array.mean()),
        p50=float(p50),
        p90=float(p90),
        p95=float(p95),
        p99=float(p99),
        max=float(array.max()),
    )

"""What a peer view is made of, and the descriptive statistics most peers share.

A :class:`PeerFigure` is one headline figure as the peer names and scales it (``median_ttft_ms``),
with the servingperf figure it corresponds to (``ttft_s.p50``), so a table can put the two side by
side. A :class:`Divergence` is one row of "where and why the peer's definition differs from
ours"; ``gap`` says what servingperf would have to record for the view to be exact (empty when
the view is exact from the records we keep).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from servingperf.analysis.stats import FloatArray


@dataclass(frozen=True, slots=True)
class Source:
    """Where a peer's definitions were read: repository, commit and files."""

    tool: str
    version: str
    repository: str
    commit: str
    files: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PeerFigure:
    name: str  # the peer's own name for the figure
    value: float | None
    unit: str
    ours: str | None = None  # the servingperf figure it corresponds to: "<metric>.<stat>"


@dataclass(frozen=True, slots=True)
class Divergence:
    aspect: str
    ours: str
    theirs: str
    gap: str = ""  # data servingperf does not record that an exact view would need


@dataclass(frozen=True, slots=True)
class WindowView:
    """A peer's figures for one (instance, phase) window."""

    key: str
    figures: tuple[PeerFigure, ...]
    counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "counts": dict(self.counts),
            "figures": [
                {"name": f.name, "value": f.value, "unit": f.unit, "ours": f.ours}
                for f in self.figures
            ],
        }


def scaled(values: FloatArray, factor: float) -> FloatArray:
    scaled_values: FloatArray = np.asarray(values, dtype=np.float64) * factor
    return scaled_values


def numpy_stats(
    prefix: str,
    values: FloatArray,
    unit: str,
    ours: str | None,
    percentiles: Sequence[float],
    *,
    empty_as_zero: bool = False,
    names: dict[str, str] | None = None,
) -> list[PeerFigure]:
    """mean, std, median and ``percentiles`` of ``values`` with numpy's defaults (linear
    interpolation, population std), named ``<stat>_<prefix>`` as vLLM does unless ``names``
    maps a statistic to another name. ``empty_as_zero``: an empty sample reports 0 (vLLM's
    ``np.mean(x or 0)``), else None."""
    array = np.asarray(values, dtype=np.float64)
    array = array[~np.isnan(array)]
    names = names or {}
    figures: dict[str, float | None]
    if array.size == 0 and not empty_as_zero:
        figures = {"mean": None, "std": None, "median": None}
        figures.update({f"p{_label(p)}": None for p in percentiles})
    else:
        data = array if array.size else np.zeros(1)
        figures = {
            "mean": float(np.mean(data)),
            "std": float(np.std(data)),
            "median": float(np.median(data)),
        }
        figures.update({f"p{_label(p)}": float(np.percentile(data, p)) for p in percentiles})
    ours_stat = {"mean": "mean", "median": "p50", "p50": "p50", "p90": "p90", "p95": "p95"}
    ours_stat["p99"] = "p99"
    result = []
    for stat, value in figures.items():
        name = names.get(stat, f"{stat}_{prefix}")
        mapped = ours_stat.get(stat)
        result.append(
            PeerFigure(name, value, unit, f"{ours}.{mapped}" if ours and mapped else None)
        )
    return result


def _label(p: float) -> str:
    return f"{p:g}".replace(".", "p")

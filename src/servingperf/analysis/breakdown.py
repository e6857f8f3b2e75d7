"""Figures of a window broken down by a key of its measured requests: the model id they named
(LoRA adapters) or their conversation turn.

Terms. A *group* is the measured requests of one window sharing a key value. Each group gets its
request count, its output-token and request throughputs over the whole window (so the groups'
throughputs add up to the window's), and the statistics of its per-request figures (TTFT, TTFO,
TPOT, E2E), by the definitions of the window's own (:mod:`servingperf.analysis.metrics`). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from servingperf.analysis.stats import FloatArray, describe

GROUP_FIGURES = ("ttft_s", "ttfo_s", "tpot_s", "e2e_s")


def breakdown(
    keys: npt.NDArray[np.object_],
    figures: Mapping[str, FloatArray],
    output_tokens: FloatArray,
    window_s: float,
) -> dict[str, dict[str, Any]]:
    """Per key value (as text, sorted; a missing key is left out): n, throughputs, statistics."""
    groups: dict[str, dict[str, Any]] = {}
    present = np.array([k is not None for k in keys], dtype=bool)
    for key in sorted({str(k) for k in keys[present]}, key=_natural):
        rows = present & (keys.astype(str) == key)
        tokens = float(np.nansum(output_tokens[rows]))
        groups[key] = {
            "n": int(rows.sum()),
            "output_tps": tokens / window_s if window_s > 0 else None,
            "request_rps": float(rows.sum()) / window_s if window_s > 0 else None,
            "stats": {
                name: (s.to_json() if (s := describe(figures[name][rows])) else None)
                for name in GROUP_FIGURES
                if name in figures
            },
        }
    return groups


def _natural(key: str) -> tuple[int, float | str]:
    """Numbers in numeric order (turns 2 before 10), then text."""
    try:
        return (0, float(key))
    except ValueError:
        return (1, key)

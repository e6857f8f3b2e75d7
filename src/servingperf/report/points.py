"""Chart points: the per-request figures the charts draw, derived from the request records.

Terms. *Elapsed* is end - sent for any request that has both, failed ones included (a failure's
time to fail); E2E is the same for successful requests only. A *figure* is one per-request value
of a metric of DESIGN.md §3 (E2E, TTFT, TPOT, NTPOT); it is NaN where the definition does not
apply (a failed request, TPOT of a non-streamed request or of one with N < 2, ...). A request is
*measured* when it succeeded and ended inside its instance's measurement window
(``summary.json``'s ``instances.*.window``), the population whose statistics the summary reports;
the distribution charts draw measured requests only, the timeline draws all.
A *sample* is a deterministic subset of row indices that caps how many points one chart carries.

The figures are recomputed from the raw timestamps (the report reads stored records only) with the
analysis layer's formulas (:mod:`servingperf.analysis.metrics`), and the measured set is the
summary's (:mod:`servingperf.analysis.summary`), so a box plot's n is the KPI table's n.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from servingperf.analysis import metrics
from servingperf.errors import RunDirError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
StrArray = npt.NDArray[np.object_]

REQUIRED_COLUMNS = (
    "request_id",
    "instance",
    "model",
    "phase",
    "streamed",
    "requested_output_tokens",
    "output_tokens",
    "t_sent_s",
    "t_first_token_s",
    "t_end_s",
    "status",
    "error_kind",
)


@dataclass(frozen=True, slots=True)
class RequestFigures:
    """Column arrays, one entry per request record, in record order."""

    request_id: StrArray
    instance: StrArray
    model: StrArray
    status: StrArray
    error_kind: StrArray
    t_sent_s: FloatArray
    requested_output_tokens: FloatArray
    output_tokens: FloatArray
    elapsed_s: FloatArray
    e2e_s: FloatArray
    ttft_s: FloatArray
    tpot_s: FloatArray
    ntpot_s: FloatArray
    measured: BoolArray

    def __len__(self) -> int:
        return len(self.request_id)


def _strings(table: pa.Table, name: str) -> StrArray:
    return np.asarray(table.column(name).to_pylist(), dtype=object)


def _measured(table: pa.Table, status: StrArray, summary: Mapping[str, Any]) -> BoolArray:
    """Successful requests that ended inside the window of their (instance, phase) summary entry.

    Summary entries are keyed ``instance`` or ``instance/phase`` and name both inside; a summary
    without entries (nothing summarised yet) counts every successful request.
    """
    ok: BoolArray = status == "ok"
    entries: Mapping[str, Any] = summary.get("instances") or {}
    if not entries:
        return ok
    instance = _strings(table, "instance")
    phase = _strings(table, "phase")
    end = metrics.column(table, "t_end_s")
    mask = np.zeros(len(status), dtype=np.bool_)
    for key, entry in entries.items():
        window = entry.get("window")
        if not window:
            continue
        rows = instance == str(entry.get("instance", key))
        if entry.get("phase") is not None:
            rows &= phase == str(entry["phase"])
        with np.errstate(invalid="ignore"):
            inside = (end >= float(window["start_s"])) & (end <= float(window["end_s"]))
        mask |= rows & ok & inside
    return mask


def request_figures(records: pa.Table, summary: Mapping[str, Any]) -> RequestFigures:
    """Derive every per-request figure the charts need, vectorised (runs have 10^5+ rows).

    The formulas are :mod:`servingperf.analysis.metrics`'s, masked to successful requests.
    Raises ``RunDirError`` naming the missing columns when ``records`` lacks one: a records file
    written by another tool or a broken run directory, not a bug here.
    """
    missing = [name for name in REQUIRED_COLUMNS if name not in records.column_names]
    if missing:
        raise RunDirError(f"request records lack column(s) {', '.join(missing)}")
    status = _strings(records, "status")
    ok = status == "ok"
    nan = np.full(len(status), np.nan)
    elapsed = metrics.e2e(records)
    return RequestFigures(
        request_id=_strings(records, "request_id"),
        instance=_strings(records, "instance"),
        model=_strings(records, "model"),
        status=status,
        error_kind=_strings(records, "error_kind"),
        t_sent_s=metrics.column(records, "t_sent_s"),
        requested_output_tokens=metrics.column(records, "requested_output_tokens"),
        output_tokens=metrics.column(records, "output_tokens"),
        elapsed_s=elapsed,
        e2e_s=np.where(ok, elapsed, nan),
        ttft_s=np.where(ok, metrics.ttft(records), nan),
        tpot_s=np.where(ok, metrics.tpot(records), nan),
        ntpot_s=np.where(ok, metrics.ntpot(records), nan),
        measured=_measured(records, status, summary),
    )


def sample_indices(
    candidates: BoolArray,
    cap: int,
    *,
    keep: BoolArray | None = None,
    keep_share: float = 0.5,
    seed: int = 0,
) -> IntArray:
    """Indices of at most ``cap`` candidate rows, sorted, the same on every call.

    Rows flagged in ``keep`` (e.g. failed requests, which a uniform sample would lose) are taken
    first, up to ``keep_share`` of the cap (so that a run failing half its requests still shows
    its successes); the remaining room is filled by a uniform sample of the other rows. Every draw
    uses a fixed seed, so a report redrawn from the same run shows the same points.
    """
    if cap < 0:
        raise ValueError(f"cap must be >= 0, not {cap}")
    rows = np.flatnonzero(candidates)
    if len(rows) <= cap:
        return rows.astype(np.int64)
    rng = np.random.default_rng(seed)
    if keep is None:
        chosen = rng.choice(rows, size=cap, replace=False)
    else:
        kept = rows[keep[rows]]
        others = rows[~keep[rows]]
        room_kept = max(int(cap * keep_share), cap - len(others))
        if len(kept) > room_kept:
            kept = rng.choice(kept, size=room_kept, replace=False)
        filler = rng.choice(others, size=min(cap - len(kept), len(others)), replace=False)
        chosen = np.concatenate([kept, filler])
    return np.sort(chosen).astype(np.int64)

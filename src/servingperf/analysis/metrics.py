"""Per-request figures derived from raw records, exactly as DESIGN.md §3 and the README define them.

Terms: N is a request's ``output_tokens`` (the usage count, else the streamed count, or as the
scenario chose: ``token_source`` says which).
TTFT = t_first_token - t_sent (streamed requests only; absent, never zero, for non-streamed ones);
TTFO = t_first_content - t_sent likewise (the first content token: reasoning tokens left out).
E2E = t_end - t_sent. TPOT = (t_end - t_first_token) / (N - 1) for streamed requests with N >= 2.
NTPOT = E2E / N for N >= 1. ITL = each gap between consecutive token-bearing chunks divided by the
tokens in the later chunk, pooled over requests. Client lag = t_sent - t_scheduled.
Every function takes a pyarrow table of request records and returns float64 arrays with NaN where a
figure does not apply, so selections stay aligned with the table's rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from servingperf.analysis.stats import FloatArray
from servingperf.model.metrics import Kind, metric, of_kind
from servingperf.model.specs import SloSpec


def column(table: pa.Table, name: str) -> FloatArray:
    """A numeric column as float64 with NaN for nulls."""
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)


def ttft(table: pa.Table) -> FloatArray:
    streamed = np.asarray(table.column("streamed").to_numpy(zero_copy_only=False), dtype=bool)
    values = column(table, "t_first_token_s") - column(table, "t_sent_s")
    return np.where(streamed, values, np.nan)


def ttfo(table: pa.Table) -> FloatArray:
    """Time to the first content token: TTFT with reasoning tokens left out."""
    streamed = np.asarray(table.column("streamed").to_numpy(zero_copy_only=False), dtype=bool)
    values = column(table, "t_first_content_s") - column(table, "t_sent_s")
    return np.where(streamed, values, np.nan)


def e2e(table: pa.Table) -> FloatArray:
    return column(table, "t_end_s") - column(table, "t_sent_s")


def tpot(table: pa.Table) -> FloatArray:
    tokens = column(table, "output_tokens")
    decode = column(table, "t_end_s") - column(table, "t_first_token_s")
    with np.errstate(divide="ignore", invalid="ignore"):
        values = decode / (tokens - 1)
    return np.where(tokens >= 2, values, np.nan)


def ntpot(table: pa.Table) -> FloatArray:
    tokens = column(table, "output_tokens")
    with np.errstate(divide="ignore", invalid="ignore"):
        values = e2e(table) / tokens
    return np.where(tokens >= 1, values, np.nan)


def client_lag(table: pa.Table) -> FloatArray:
    return column(table, "t_sent_s") - column(table, "t_scheduled_s")


def itl(table: pa.Table) -> FloatArray:
    """Pooled inter-token latencies of all requests in ``table`` (one sample per chunk after the first)."""
    return itl_where(table, None)


def itl_where(table: pa.Table, rows: npt.NDArray[np.bool_] | None) -> FloatArray:
    """``itl`` of the rows where ``rows`` is true (all rows if None), without copying them out:
    the same samples, in the same order, as ``itl(table.filter(rows))``."""
    offsets_col = table.column("chunk_offsets_s").combine_chunks()
    tokens_col = table.column("chunk_tokens").combine_chunks()
    if len(offsets_col) == 0:
        return np.empty(0, dtype=np.float64)
    values = np.asarray(pc.list_flatten(offsets_col).to_numpy(zero_copy_only=False), np.float64)
    tokens = np.asarray(pc.list_flatten(tokens_col).to_numpy(zero_copy_only=False), np.float64)
    if values.size < 2:
        return np.empty(0, dtype=np.float64)
    lengths = np.asarray(pc.list_value_length(offsets_col).fill_null(0).to_numpy(), dtype=np.int64)
    starts = np.cumsum(lengths) - lengths  # index of each request's first chunk in the flat array
    first = np.zeros(values.size, dtype=bool)
    first[starts[lengths > 0]] = True
    gaps = np.diff(values)
    keep = ~first[1:]
    if rows is not None:
        keep &= np.repeat(np.asarray(rows, dtype=bool), lengths)[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        result = gaps[keep] / tokens[1:][keep]
    return result[np.isfinite(result)]


def output_tokens(table: pa.Table) -> FloatArray:
    return column(table, "output_tokens")


def input_tokens(table: pa.Table) -> FloatArray:
    return column(table, "input_tokens")


PerRequestFigure = Callable[[pa.Table], FloatArray]

PER_REQUEST: Mapping[str, PerRequestFigure] = MappingProxyType(
    {
        "ttft_s": ttft,
        "ttfo_s": ttfo,
        "tpot_s": tpot,
        "ntpot_s": ntpot,
        "e2e_s": e2e,
        "output_tokens": output_tokens,
        "input_tokens": input_tokens,
    }
)
"""The computation of every ``per_request`` figure of :data:`servingperf.model.metrics.METRICS`,
in its display order."""

RATE_WEIGHTS: Mapping[str, str | None] = MappingProxyType(
    {
        "output_throughput_tps": "output_tokens",
        "input_throughput_tps": "input_tokens",
        "request_throughput_rps": None,
    }
)
"""What each completed request adds to a throughput: a column's value, or 1 (None)."""


def _check_declarations() -> None:
    declared = [m.name for m in of_kind(Kind.PER_REQUEST)]
    if list(PER_REQUEST) != declared:
        raise RuntimeError(
            f"per-request figures declared {declared} but computed {list(PER_REQUEST)}:"
            " servingperf.model.metrics and servingperf.analysis.metrics disagree"
        )
    slo = [name for name in SloSpec.model_fields if name not in PER_REQUEST]
    if slo:
        raise RuntimeError(f"SLOs on figures that are not per-request figures: {slo}")
    unknown = [name for name in RATE_WEIGHTS if metric(name).kind is not Kind.RATE]
    if unknown:
        raise RuntimeError(f"throughput weights for figures that are not rates: {unknown}")


_check_declarations()

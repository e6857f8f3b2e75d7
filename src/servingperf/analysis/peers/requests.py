"""Per-request arrays of one phase's records, in the shape the peer views need.

Times are absolute offsets from the run's t0 (``t_*`` columns): a chunk's arrival time is
``t_sent_s`` plus its offset. ``chunk_starts[i]`` indexes request i's first chunk in the flat
``chunk_times`` / ``chunk_tokens`` arrays, which hold every token-bearing chunk of every request in
record order (``chunk_starts[i + 1]`` ends it). NaN marks a time or count a record lacks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from servingperf.analysis.metrics import column
from servingperf.analysis.stats import FloatArray

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Requests:
    status: npt.NDArray[np.str_]
    streamed: BoolArray
    scheduled: FloatArray
    sent: FloatArray
    first: FloatArray
    end: FloatArray
    output_tokens: FloatArray
    input_tokens: FloatArray
    chunk_times: FloatArray
    chunk_tokens: FloatArray
    chunk_starts: IntArray  # len = requests + 1

    @classmethod
    def of(cls, table: pa.Table) -> Requests:
        offsets = table.column("chunk_offsets_s").combine_chunks()
        tokens = table.column("chunk_tokens").combine_chunks()
        lengths = np.asarray(pc.list_value_length(offsets).fill_null(0).to_numpy(), np.int64)
        starts = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
        flat = np.asarray(pc.list_flatten(offsets).to_numpy(zero_copy_only=False), np.float64)
        flat_tokens = np.asarray(pc.list_flatten(tokens).to_numpy(zero_copy_only=False), np.float64)
        sent = column(table, "t_sent_s")
        return cls(
            status=np.asarray(table.column("status").to_pylist(), dtype=np.str_),
            streamed=np.asarray(table.column("streamed").to_numpy(zero_copy_only=False), bool),
            scheduled=column(table, "t_scheduled_s"),
            sent=sent,
            first=column(table, "t_first_token_s"),
            end=column(table, "t_end_s"),
            output_tokens=column(table, "output_tokens"),
            input_tokens=column(table, "input_tokens"),
            chunk_times=flat + np.repeat(sent, lengths),
            chunk_tokens=flat_tokens,
            chunk_starts=starts,
        )

    def __len__(self) -> int:
        return int(self.status.size)

    @property
    def chunks(self) -> IntArray:
        """Token-bearing chunks per request."""
        counts: IntArray = np.diff(self.chunk_starts)
        return counts

    @property
    def ok(self) -> BoolArray:
        return np.asarray(self.status == "ok")

    @property
    def error(self) -> BoolArray:
        return np.asarray(self.status == "error")

    @property
    def cut(self) -> BoolArray:
        return np.asarray(self.status == "cut")

    def last_chunk(self) -> FloatArray:
        """Arrival time of each request's last token-bearing chunk (NaN without one)."""
        counts = self.chunks
        result = np.full(len(self), np.nan)
        has = counts > 0
        result[has] = self.chunk_times[self.chunk_starts[1:][has] - 1]
        return result

    def first_chunk(self) -> FloatArray:
        counts = self.chunks
        result = np.full(len(self), np.nan)
        has = counts > 0
        result[has] = self.chunk_times[self.chunk_starts[:-1][has]]
        return result

    def owners(self) -> IntArray:
        """The request index of every chunk."""
        owner: IntArray = np.repeat(np.arange(len(self)), self.chunks)
        return owner

    def streamed_tokens(self) -> FloatArray:
        """Tokens streamed per request (the sum of its chunks' tokens)."""
        weights = np.nan_to_num(self.chunk_tokens)
        total = np.bincount(self.owners(), weights=weights, minlength=len(self))
        return np.asarray(total, dtype=np.float64)

    def chunk_gaps(self, rows: BoolArray) -> FloatArray:
        """Gaps between consecutive chunks of the requests where ``rows``, pooled in order."""
        if self.chunk_times.size < 2:
            return np.empty(0)
        owner = self.owners()
        same = owner[1:] == owner[:-1]
        keep = same & np.asarray(rows, bool)[owner[1:]]
        gaps: FloatArray = np.diff(self.chunk_times)[keep]
        return gaps

    def token_times(self, rows: BoolArray) -> tuple[FloatArray, IntArray]:
        """Every output token's arrival time (each chunk's tokens at the chunk's time), pooled
        over the requests where ``rows``, and each token's request index."""
        tokens = np.maximum(np.nan_to_num(self.chunk_tokens), 0).astype(np.int64)
        owner = self.owners()
        chosen = np.asarray(rows, bool)[owner]
        times = np.repeat(self.chunk_times[chosen], tokens[chosen])
        owners = np.repeat(owner[chosen], tokens[chosen])
        return times, owners

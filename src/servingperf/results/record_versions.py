"""Reading request record segments of any format version this build knows, as the current one.

A segment carries its format version in its Arrow metadata (``servingperf.format_version``); a
segment newer than this build is refused, one without a version is not ours. Older segments are
upgraded on read, column by column, never rewritten: a reader asks for columns, and a column a
version lacks is derived from the columns that version kept (:data:`_DERIVED`), so that a
summary reading a handful of columns of a version 1 run still works.

Version 1 to 2: ``usage_output_tokens`` is ``output_tokens`` where ``token_source`` was
``usage``; ``stream_output_tokens`` is the sum of ``chunk_tokens`` of a streamed request (what
version 1 counted); ``chunk_token_source`` and ``token_mismatch`` are unknown (null): version 1
did not say how chunks were counted, so comparing its counts would flag its own undercounting.

Versions 1 and 2 to 3: ``reasoning_tokens``, ``session`` and ``turn`` are null (not recorded; no
multi-turn session).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from servingperf.errors import RunDirError
from servingperf.results.schema import REQUEST_SCHEMA, RUN_FORMAT_VERSION

VERSION_KEY = b"servingperf.format_version"


def _usage_v1(table: pa.Table) -> pa.Array:
    from_usage = pc.equal(table.column("token_source"), "usage")
    return pc.if_else(from_usage, table.column("output_tokens"), pa.scalar(None, pa.int32()))


def _stream_v1(table: pa.Table) -> pa.Array:
    chunks = table.column("chunk_tokens").combine_chunks()
    flat = np.asarray(pc.list_flatten(chunks).to_numpy(zero_copy_only=False), dtype=np.int64)
    parents = np.asarray(pc.list_parent_indices(chunks).to_numpy(), dtype=np.int64)
    totals = np.bincount(parents, weights=flat, minlength=len(chunks)).astype(np.int32)
    return pc.if_else(table.column("streamed"), pa.array(totals), pa.scalar(None, pa.int32()))


def _unknown(kind: pa.DataType) -> Callable[[pa.Table], pa.Array]:
    return lambda table: pa.nulls(table.num_rows, kind)


Derivation = tuple[tuple[str, ...], Callable[[pa.Table], pa.Array]]

# Columns of version 3 that version 2 lacks: unknown, and no multi-turn session.
_SINCE_3: dict[str, Derivation] = {
    "reasoning_tokens": ((), _unknown(pa.int32())),
    "session": ((), _unknown(pa.string())),
    "turn": ((), _unknown(pa.int32())),
}

# version -> new column -> (the columns it is derived from, how)
_DERIVED: dict[int, dict[str, Derivation]] = {
    1: {
        "usage_output_tokens": (("token_source", "output_tokens"), _usage_v1),
        "stream_output_tokens": (("streamed", "chunk_tokens"), _stream_v1),
        "chunk_token_source": ((), _unknown(pa.string())),
        "token_mismatch": ((), _unknown(pa.bool_())),
        **_SINCE_3,
    },
    2: _SINCE_3,
}


def segment_version(schema: pa.Schema, source: str) -> int:
    """The format version of a segment; RunDirError when it is not ours or newer than us."""
    raw = (schema.metadata or {}).get(VERSION_KEY)
    if raw is None:
        raise RunDirError(f"{source}: not written by servingperf (no format version)")
    try:
        version = int(raw)
    except ValueError as exc:
        raise RunDirError(f"{source}: unreadable format version {raw!r}") from exc
    if version > RUN_FORMAT_VERSION:
        raise RunDirError(
            f"{source}: written by a newer servingperf (format {version} >"
            f" {RUN_FORMAT_VERSION}); upgrade servingperf to read it"
        )
    return version


def _needed(version: int, columns: Sequence[str]) -> list[str]:
    """The stored columns to read for ``columns`` of a ``version`` segment."""
    derived = _DERIVED.get(version, {})
    needed: list[str] = []
    for name in columns:
        sources = derived[name][0] if name in derived else (name,)
        needed += [source for source in sources if source not in needed]
    return needed or ["status"]  # a column to count the rows by


def upgrade(table: pa.Table, version: int, columns: Sequence[str]) -> pa.Table:
    """``columns`` of ``table`` (a ``version`` segment's stored columns) in the current schema."""
    derived = _DERIVED.get(version, {})
    arrays = []
    for name in columns:
        arrays.append(derived[name][1](table) if name in derived else table.column(name))
    schema = pa.schema([REQUEST_SCHEMA.field(name) for name in columns])
    return pa.Table.from_arrays(arrays, names=list(columns)).cast(schema)


def read_segment(
    part: Path, columns: Sequence[str] | None = None, batch_rows: int | None = None
) -> Iterator[pa.Table]:
    """``columns`` (default: all) of one segment in the current schema, ``batch_rows`` rows at a
    time (default: the whole segment at once); RunDirError naming the file when unreadable."""
    wanted = list(REQUEST_SCHEMA.names if columns is None else columns)
    try:
        parquet = pq.ParquetFile(part)
        version = segment_version(parquet.schema_arrow, str(part))
        needed = _needed(version, wanted)
        if batch_rows is None:
            yield upgrade(parquet.read(columns=needed), version, wanted)
            return
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=needed):
            yield upgrade(pa.Table.from_batches([batch]), version, wanted)
    except (OSError, pa.ArrowInvalid, KeyError) as exc:
        raise RunDirError(f"{part}: unreadable record segment: {exc}") from exc

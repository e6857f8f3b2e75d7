"""Streams request records to Parquet while the run goes (never only at the end).

Records are buffered and written by a background thread as numbered *segment* files
(``records/part-w<worker>-<writer>-<seq>.parquet``; ``<writer>`` is random per writer, so
phases and instances loaded by workers of the same number never overwrite each other), each a
complete Parquet file written to a temporary name
and renamed, so a reader never sees half a file and a SIGKILL loses at most the records of the last
flush interval. The engine's hot path only appends to a deque (atomic, no lock, no thread wake-up
per record); the thread drains it every ``_POLL_S`` and converts the records to Arrow in pieces
of at most ``_PIECE`` records, letting go of the GIL between pieces. The conversion holds the GIL
throughout (pyarrow reads Python objects), so one big batch stalls the event loop for
milliseconds, and an open-loop send waits that long (measured: records drained every 100 ms made
trace-replay lateness p99 2.2 ms in 100 ms clusters; docs/benchmarks.md).
"""

from __future__ import annotations

import collections
import secrets
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from servingperf.errors import RunDirError
from servingperf.model.records import RequestRecord
from servingperf.results.background import lower_thread_priority
from servingperf.results.schema import REQUEST_SCHEMA

_POLL_S = 0.01  # how often the thread drains the deque
_PIECE = 32  # records converted per GIL hold
_REPETITIVE = (  # text columns with few distinct values
    "instance",
    "model",
    "phase",
    "token_source",
    "chunk_token_source",
    "status",
    "error_kind",
    "error_message",
    "finish_reason",
)


def records_to_table(records: list[RequestRecord]) -> pa.Table:
    """Columnar conversion with the fixed schema (column order = ``REQUEST_SCHEMA``)."""
    columns = {name: [getattr(r, name) for r in records] for name in REQUEST_SCHEMA.names}
    return pa.Table.from_pydict(columns, schema=REQUEST_SCHEMA)


def write_segment(table: pa.Table, path: Path, repetitive: tuple[str, ...] = _REPETITIVE) -> None:
    """One segment file, written under a temporary name and renamed. Dictionary encoding only
    for the ``repetitive`` text columns: tried on the unique ids and the float columns it costs
    several times the rest of the write and saves nothing."""
    tmp = path.with_name(path.name + ".tmp")
    dictionary = [name for name in repetitive if name in table.schema.names]
    pq.write_table(table, tmp, compression="zstd", use_dictionary=dictionary)
    tmp.replace(path)


class ParquetRecordWriter:
    """A record sink: ``write`` is cheap and thread-safe; ``close`` flushes and joins."""

    def __init__(
        self,
        directory: Path,
        worker: int = 0,
        flush_interval_s: float = 2.0,
        flush_records: int = 20_000,
    ) -> None:
        self._directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._worker = worker
        self._interval = flush_interval_s
        self._max = flush_records
        self._pending: collections.deque[RequestRecord] = collections.deque()
        self._stop = threading.Event()
        self._sequence = 0
        self._writer_token = secrets.token_hex(4)
        self.written = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="record-writer", daemon=True)
        self._thread.start()

    def write(self, record: RequestRecord) -> None:
        self._pending.append(record)

    def _run(self) -> None:
        """Drain the deque every ``_POLL_S`` into Arrow (the records' Python objects die young:
        the garbage collector never sees them pile up), write a segment every flush."""
        lower_thread_priority()
        tables: list[pa.Table] = []
        rows = 0
        pending = self._pending
        deadline = time.monotonic() + self._interval
        while True:
            stopping = self._stop.wait(_POLL_S)
            while pending:
                batch: list[RequestRecord] = []
                while pending and len(batch) < _PIECE:
                    batch.append(pending.popleft())
                try:
                    tables.append(records_to_table(batch))
                except BaseException as exc:  # surfaced by close(), as a failed write
                    self._error = exc
                rows += len(batch)
                del batch
                time.sleep(0)  # lets the event loop's thread take the GIL between pieces
            if stopping or rows >= self._max or time.monotonic() >= deadline:
                self._flush(tables, rows)
                tables, rows = [], 0
                deadline = time.monotonic() + self._interval
            if stopping:
                return

    def _flush(self, tables: list[pa.Table], rows: int) -> None:
        if not tables:
            return
        try:
            self._sequence += 1
            name = f"part-w{self._worker:03d}-{self._writer_token}-{self._sequence:06d}.parquet"
            write_segment(pa.concat_tables(tables), self._directory / name)
            self.written += rows
        except BaseException as exc:  # surfaced by close(): a lost segment must not pass silently
            self._error = exc

    def close(self) -> None:
        """Flush what is buffered and stop the thread; re-raise a write failure as an error."""
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()
        if self._error is not None:
            raise RunDirError(f"writing request records failed: {self._error}") from self._error

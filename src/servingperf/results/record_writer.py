"""Streams request records to Parquet while the run goes (never only at the end).

Records are buffered and written by a background thread as numbered *segment* files
(``records/part-w<worker>-<writer>-<seq>.parquet``; ``<writer>`` is random per writer, so
phases and instances loaded by workers of the same number never overwrite each other), each a
complete Parquet file written to a temporary name
and renamed, so a reader never sees half a file and a SIGKILL loses at most the records of the last
flush interval. The engine's hot path only appends to a queue.
"""

from __future__ import annotations

import queue
import secrets
import threading
import time
from dataclasses import fields
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from servingperf.errors import RunDirError
from servingperf.model.records import RequestRecord
from servingperf.results.schema import REQUEST_SCHEMA

_FIELDS = tuple(f.name for f in fields(RequestRecord))
_STOP = object()


def records_to_table(records: list[RequestRecord]) -> pa.Table:
    """Columnar conversion with the fixed schema (column order = ``REQUEST_SCHEMA``)."""
    columns = {name: [getattr(r, name) for r in records] for name in _FIELDS}
    return pa.Table.from_pydict(columns, schema=REQUEST_SCHEMA)


def write_segment(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, compression="zstd")
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
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._sequence = 0
        self._writer_token = secrets.token_hex(4)
        self.written = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="record-writer", daemon=True)
        self._thread.start()

    def write(self, record: RequestRecord) -> None:
        self._queue.put(record)

    def _run(self) -> None:
        buffer: list[RequestRecord] = []
        deadline = time.monotonic() + self._interval
        while True:
            timeout = max(0.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is _STOP:
                self._flush(buffer)
                return
            if isinstance(item, RequestRecord):
                buffer.append(item)
            if len(buffer) >= self._max or time.monotonic() >= deadline:
                self._flush(buffer)
                buffer = []
                deadline = time.monotonic() + self._interval

    def _flush(self, buffer: list[RequestRecord]) -> None:
        if not buffer:
            return
        try:
            self._sequence += 1
            name = f"part-w{self._worker:03d}-{self._writer_token}-{self._sequence:06d}.parquet"
            write_segment(records_to_table(buffer), self._directory / name)
            self.written += len(buffer)
        except BaseException as exc:  # surfaced by close(): a lost segment must not pass silently
            self._error = exc

    def close(self) -> None:
        """Flush what is buffered and stop the thread; re-raise a write failure as an error."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        if self._error is not None:
            raise RunDirError(f"writing request records failed: {self._error}") from self._error

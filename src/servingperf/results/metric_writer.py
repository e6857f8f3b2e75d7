"""Streams server metrics to ``metrics/*.parquet`` while the run goes, as records are streamed.

Files (schemas in :mod:`servingperf.results.schema`), numbered segments written under a temporary
name and renamed, so a reader never sees half a file and a SIGKILL loses at most the last flush
interval: ``scrape-<writer>-<seq>.parquet`` (samples scraped from instances),
``scrapes-<writer>-<seq>.parquet`` (one row per scrape attempt: the gaps),
``prometheus-<writer>-<seq>.parquet`` (samples of Prometheus range queries),
``queries-<writer>-<seq>.parquet`` (one row per query run), ``spans-<writer>-<seq>.parquet``
(server spans received over OTLP).

The event loop only appends to a deque: a scrape hands over the raw exposition text, and this
writer's thread parses it (prometheus-client's parser is pure Python: parsing in the loop would
delay the load it runs beside). A text that does not parse becomes a failed scrape (a gap).
"""

from __future__ import annotations

import collections
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from servingperf.errors import RunDirError
from servingperf.results.background import lower_thread_priority
from servingperf.results.exposition import ExpositionParser, FamilyFilter
from servingperf.results.record_writer import write_segment
from servingperf.results.schema import (
    METRIC_SAMPLE_SCHEMA,
    QUERY_SCHEMA,
    SCRAPE_SCHEMA,
    SPAN_SCHEMA,
)

_POLL_S = 0.1
# text columns with few distinct values (dictionary-encoded: a label set repeats every scrape)
_REPETITIVE = ("source", "instance", "name", "labels", "url", "error", "query_set", "phase")
_SCHEMAS = {
    "scrape": METRIC_SAMPLE_SCHEMA,
    "scrapes": SCRAPE_SCHEMA,
    "prometheus": METRIC_SAMPLE_SCHEMA,
    "queries": QUERY_SCHEMA,
    "spans": SPAN_SCHEMA,
}


@dataclass(frozen=True, slots=True)
class ScrapeResult:
    """One scrape attempt as the event loop saw it (text None: it failed, ``error`` says why)."""

    t_s: float
    instance: str
    url: str
    duration_s: float
    text: str | None
    error: str | None = None


class MetricWriter:
    """A metrics sink: every ``put_*`` is cheap and thread-safe; ``close`` flushes and joins."""

    def __init__(
        self,
        directory: Path,
        family_filter: FamilyFilter | None = None,
        flush_interval_s: float = 5.0,
    ) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._parser = ExpositionParser(family_filter)
        self._last: dict[str, tuple[str, list[tuple[str, str, float | None, float]]]] = {}
        self._interval = flush_interval_s
        self._pending: collections.deque[tuple[str, Any]] = collections.deque()
        self._stop = threading.Event()
        self._token = secrets.token_hex(4)
        self._sequence = 0
        self._error: BaseException | None = None
        self.scrapes_ok = 0
        self.scrapes_failed = 0
        self.samples_written = 0
        self.parse_cpu_s = 0.0  # thread CPU time spent parsing expositions (benchmarks read it)
        self._thread = threading.Thread(target=self._run, name="metric-writer", daemon=True)
        self._thread.start()

    def put_scrape(self, result: ScrapeResult) -> None:
        self._pending.append(("scrape", result))

    def put_samples(self, rows: list[dict[str, Any]]) -> None:
        """Rows of METRIC_SAMPLE_SCHEMA from a Prometheus query (``source`` "prometheus")."""
        self._pending.append(("prometheus", rows))

    def put_query(self, row: dict[str, Any]) -> None:
        self._pending.append(("queries", [row]))

    def put_spans(self, rows: list[dict[str, Any]]) -> None:
        self._pending.append(("spans", rows))

    def _run(self) -> None:
        lower_thread_priority()  # parsing a scrape must not hold the load loop's core
        buffers: dict[str, list[Any]] = {kind: [] for kind in _SCHEMAS}
        deadline = time.monotonic() + self._interval
        pending = self._pending
        while True:
            stopping = self._stop.wait(_POLL_S)
            while pending:
                kind, item = pending.popleft()
                try:
                    if kind == "scrape":
                        self._parse(item, buffers)
                    else:
                        buffers[kind].extend(item)
                except Exception as exc:  # surfaced by close(): a lost sample must not pass
                    self._error = exc
            if stopping or time.monotonic() >= deadline:
                self._flush(buffers)
                buffers = {kind: [] for kind in _SCHEMAS}
                deadline = time.monotonic() + self._interval
            if stopping:
                return

    def _parse(self, result: ScrapeResult, buffers: dict[str, list[Any]]) -> None:
        error = result.error
        count = 0
        if result.text is not None:
            started = time.thread_time()
            try:
                last = self._last.get(result.instance)
                if last is not None and last[0] == result.text:  # an idle server: nothing moved
                    rows = last[1]
                else:
                    rows = self._parser.iter_samples(result.text)
                    self._last[result.instance] = (result.text, rows)
            except ValueError as exc:
                error = str(exc)[:300]
            else:
                buffers["scrape"].append((result.t_s, result.instance, rows))
                count = len(rows)
            self.parse_cpu_s += time.thread_time() - started
        ok = error is None
        if ok:
            self.scrapes_ok += 1
        else:
            self.scrapes_failed += 1
        buffers["scrapes"].append(
            {
                "t_s": result.t_s,
                "instance": result.instance,
                "url": result.url,
                "ok": ok,
                "duration_s": result.duration_s,
                "samples": count,
                "error": error,
            }
        )

    def _flush(self, buffers: dict[str, list[Any]]) -> None:
        for kind, rows in buffers.items():
            if not rows:
                continue
            try:
                schema = _SCHEMAS[kind]
                if kind == "scrape":
                    table = _scrape_table(rows)
                else:
                    columns = {name: [row.get(name) for row in rows] for name in schema.names}
                    table = pa.Table.from_pydict(columns, schema=schema)
                self._sequence += 1
                name = f"{kind}-{self._token}-{self._sequence:06d}.parquet"
                write_segment(table, self.directory / name, _REPETITIVE)
                if kind in ("scrape", "prometheus"):
                    self.samples_written += table.num_rows
            except BaseException as exc:  # surfaced by close()
                self._error = exc

    def close(self) -> None:
        """Flush what is buffered and stop the thread; re-raise a write failure as an error."""
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()
        if self._error is not None:
            raise RunDirError(f"writing server metrics failed: {self._error}") from self._error


def _scrape_table(
    scrapes: list[tuple[float, str, list[tuple[str, str, float | None, float]]]],
) -> pa.Table:
    """The samples of several scrapes as one METRIC_SAMPLE_SCHEMA table (columns built per
    scrape, not per sample: a scrape's time and instance repeat over its samples)."""
    t_s: list[float] = []
    instances: list[str] = []
    names: list[str] = []
    labels: list[str] = []
    les: list[float | None] = []
    values: list[float] = []
    for t, instance, samples in scrapes:
        n = len(samples)
        t_s += [t] * n
        instances += [instance] * n
        if n:
            name, label, le, value = zip(*samples, strict=True)
            names += name
            labels += label
            les += le
            values += value
    return pa.Table.from_pydict(
        {
            "t_s": t_s,
            "source": ["scrape"] * len(t_s),
            "instance": instances,
            "name": names,
            "labels": labels,
            "le": les,
            "value": values,
        },
        schema=METRIC_SAMPLE_SCHEMA,
    )

"""What the engine writes to: a record sink and a progress sink, both injected.

The engine never imports Rich or a file format: the CLI passes a progress sink that draws, the
scenario passes a record sink that streams Parquet; tests pass lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from servingperf.model.records import RequestRecord


class RecordSink(Protocol):
    def write(self, record: RequestRecord) -> None: ...


@dataclass(slots=True)
class LoadCounters:
    """Live counts for progress display; figures for reports come from records, not from these."""

    instance: str
    phase: str
    issued: int = 0
    ok: int = 0
    errors: int = 0
    cut: int = 0
    output_tokens: int = 0
    in_flight: int = 0


class ProgressSink(Protocol):
    def phase_started(self, counters: LoadCounters, duration_s: float) -> None: ...

    def tick(self, counters: LoadCounters, elapsed_s: float) -> None: ...

    def phase_ended(self, counters: LoadCounters) -> None: ...


class NullProgress:
    """Progress sink that shows nothing (tests, quiet mode)."""

    def phase_started(self, counters: LoadCounters, duration_s: float) -> None:
        return None

    def tick(self, counters: LoadCounters, elapsed_s: float) -> None:
        return None

    def phase_ended(self, counters: LoadCounters) -> None:
        return None


class ListSink:
    """Record sink that keeps records in memory (tests, small validation phases)."""

    def __init__(self) -> None:
        self.records: list[RequestRecord] = []

    def write(self, record: RequestRecord) -> None:
        self.records.append(record)


@dataclass(frozen=True, slots=True)
class PhaseOutputs:
    """Where a phase's results go: its records (``sink``), the live ``progress``, the run's
    ``counters``, and ``t0``, the run's time origin (``time.monotonic()``) record times count
    from. One value, handed down from the scenario to the loop that issues the requests."""

    sink: RecordSink
    progress: ProgressSink
    counters: LoadCounters
    t0: float

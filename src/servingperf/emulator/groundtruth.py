"""Server-side ground truth: what the emulator did for each generation request, and when.

One :class:`GroundTruthRecord` per request to a generation endpoint (rejected ones included), with
times in seconds on ``time.monotonic()`` (CLOCK_MONOTONIC, the clock the client uses on the same
host, so the two can be compared directly). ``arrival`` is when the handler started;
``admitted`` when the engine put the sequence in its batch; ``first_token_written`` when the first
token-bearing chunk had been handed to the transport (right after ``await response.write``; for a
non-streaming response that is the whole body); ``token_written`` one time per token-bearing
chunk; ``end`` after the last byte of the response. ``output_tokens`` counts tokens actually
written. ``status`` is the HTTP status sent; ``outcome`` is ``ok``, ``rejected`` (an error status),
``disconnected`` (the client went away first) or ``aborted`` (the server stopped first), and with
injected faults (:mod:`servingperf.emulator.faults`) also ``dropped`` (the server closed the
connection mid-response) or ``crashed`` (in flight when the server crashed). ``fault`` is the label
of the fault injected into the request, None for none.

The :class:`GroundTruthLog` keeps records in memory and, when given a path, appends each as one
JSON line, flushed at once, so a reader never sees half a record and a killed server loses none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, Any

from servingperf.errors import ConfigError


@dataclass(slots=True)
class GroundTruthRecord:
    """The server's view of one request (terms in the module docstring)."""

    request_id: str
    model: str
    endpoint: str
    streamed: bool
    arrival: float
    admitted: float | None = None
    first_token_written: float | None = None
    token_written: list[float] = field(default_factory=list)
    end: float | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens the prefix cache served (no prefill)
    adapter_load_s: float = 0.0  # the LoRA adapter load its admission paid (0: hit or none)
    reasoning_tokens: int = 0  # output tokens sent as reasoning (chat), included in output_tokens
    output_tokens: int = 0
    finish_reason: str | None = None
    status: int = 200
    outcome: str = "ok"
    fault: str | None = None

    def to_json(self) -> str:
        # Not dataclasses.asdict: it deep-copies every list, a cost paid once per request.
        return json.dumps({name: getattr(self, name) for name in _FIELDS}, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> GroundTruthRecord:
        data: dict[str, Any] = json.loads(line)
        return cls(**data)


_FIELDS = tuple(f.name for f in fields(GroundTruthRecord))


class GroundTruthLog:
    """Collects records in memory and optionally appends them to a JSONL file."""

    def __init__(self, path: Path | None = None) -> None:
        self.records: list[GroundTruthRecord] = []
        self._file: IO[str] | None = None
        if path is not None:
            try:
                self._file = path.open("a", encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"cannot open the ground truth file {path}: {exc}") from exc

    def add(self, record: GroundTruthRecord) -> None:
        self.records.append(record)
        if self._file is not None:
            self._file.write(record.to_json() + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_ground_truth(path: Path) -> list[GroundTruthRecord]:
    """Read a ground truth JSONL file back (tests and benchmarks match records by request id)."""
    with path.open(encoding="utf-8") as f:
        return [GroundTruthRecord.from_json(line) for line in f if line.strip()]

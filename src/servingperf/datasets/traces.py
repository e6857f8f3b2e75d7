"""Request traces: when each request of a recorded workload arrived, and how long it was.

A *trace* is a list of :class:`TraceRequest` in arrival order: the offset of its arrival from the
trace's first request, its input and output lengths in tokens, and optionally the *hash ids* of
its prompt's blocks (requests sharing a leading run of hash ids share that prompt prefix). Three
file formats are read, each with errors that name the file, the line and the field:

- ``mooncake``: the Mooncake trace (JSONL; ``timestamp`` in milliseconds since the first
  request, ``input_length``, ``output_length``, optional ``hash_ids``: one id per block of
  ``block_tokens`` prompt tokens, 512 in the published traces);
- ``azure``: the Azure LLM inference trace (CSV with the header ``TIMESTAMP,ContextTokens,
  GeneratedTokens``; ``TIMESTAMP`` a date and time, fractional seconds allowed);
- ``jsonl``: servingperf's own (JSONL; ``t_s`` seconds, ``input_tokens``, ``output_tokens``,
  optional ``hash_ids``).

Rows out of time order are sorted (stable), so a trace cut and concatenated still replays; the
offsets then start at 0. Nothing here sleeps or sends: :mod:`servingperf.datasets.trace_prompts`
turns a trace into prompts, the open-loop engine replays it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from servingperf.errors import ConfigError

MAX_TRACE_TOKENS = 10_000_000
"""Largest input or output length a trace row may give."""

FORMATS = ("mooncake", "azure", "jsonl")


@dataclass(frozen=True, slots=True)
class TraceRequest:
    """One recorded request: arrival offset (s), lengths (tokens), prompt block ids."""

    t_s: float
    input_tokens: int
    output_tokens: int
    hash_ids: tuple[int, ...] | None = None


def read_trace(path: Path, trace_format: str) -> tuple[TraceRequest, ...]:
    """The requests of the trace file at ``path``, in arrival order, offsets from the first."""
    readers: dict[str, Callable[[Iterator[tuple[int, str]], str], list[TraceRequest]]] = {
        "mooncake": _mooncake,
        "azure": _azure,
        "jsonl": _own_jsonl,
    }
    reader = readers.get(trace_format)
    if reader is None:
        raise ConfigError(f"trace format {trace_format!r}: known formats: {', '.join(FORMATS)}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"trace file {path}: cannot be read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"trace file {path}: not UTF-8 text ({exc.reason})") from exc
    rows = reader(enumerate(text.splitlines(), start=1), str(path))
    if not rows:
        raise ConfigError(f"trace file {path}: no requests (empty, or only blank lines)")
    rows.sort(key=lambda r: r.t_s)
    first = rows[0].t_s
    return tuple(
        TraceRequest(r.t_s - first, r.input_tokens, r.output_tokens, r.hash_ids) for r in rows
    )


def _json_rows(
    lines: Iterator[tuple[int, str]], source: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    for number, line in lines:
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise ConfigError(f"{where}: not JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise ConfigError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        yield where, obj


def _number(obj: dict[str, Any], key: str, where: str) -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{where}: {key!r} must be a number >= 0, got {value!r}")
    return float(value)


def _tokens(value: Any, key: str, where: str, *, at_least: int) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not at_least <= value:
        raise ConfigError(f"{where}: {key!r} must be a whole number >= {at_least}, got {value!r}")
    if value > MAX_TRACE_TOKENS:
        raise ConfigError(f"{where}: {key!r} is {value}, more than {MAX_TRACE_TOKENS}")
    return value


def _hash_ids(obj: dict[str, Any], where: str) -> tuple[int, ...] | None:
    raw = obj.get("hash_ids")
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(
        isinstance(h, int) and not isinstance(h, bool) for h in raw
    ):
        raise ConfigError(f"{where}: 'hash_ids' must be a list of integers")
    return tuple(raw)


def _mooncake(lines: Iterator[tuple[int, str]], source: str) -> list[TraceRequest]:
    return [
        TraceRequest(
            _number(obj, "timestamp", where) / 1000.0,
            _tokens(obj.get("input_length"), "input_length", where, at_least=1),
            _tokens(obj.get("output_length"), "output_length", where, at_least=1),
            _hash_ids(obj, where),
        )
        for where, obj in _json_rows(lines, source)
    ]


def _own_jsonl(lines: Iterator[tuple[int, str]], source: str) -> list[TraceRequest]:
    return [
        TraceRequest(
            _number(obj, "t_s", where),
            _tokens(obj.get("input_tokens"), "input_tokens", where, at_least=1),
            _tokens(obj.get("output_tokens"), "output_tokens", where, at_least=1),
            _hash_ids(obj, where),
        )
        for where, obj in _json_rows(lines, source)
    ]


AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def _azure(lines: Iterator[tuple[int, str]], source: str) -> list[TraceRequest]:
    numbered = [(n, line) for n, line in lines if line.strip()]
    if not numbered:
        return []
    reader = csv.reader(io.StringIO("\n".join(line for _, line in numbered)))
    header = [h.strip() for h in next(reader)]
    missing = [c for c in AZURE_COLUMNS if c not in header]
    if missing:
        raise ConfigError(
            f"{source}:{numbered[0][0]}: the header lacks {', '.join(missing)}; an Azure LLM"
            f" inference trace starts with {','.join(AZURE_COLUMNS)}"
        )
    at = {name: header.index(name) for name in AZURE_COLUMNS}
    rows: list[TraceRequest] = []
    for (number, _), cells in zip(numbered[1:], reader, strict=True):
        where = f"{source}:{number}"
        if len(cells) < len(header):
            raise ConfigError(f"{where}: {len(cells)} fields, the header has {len(header)}")
        rows.append(
            TraceRequest(
                _azure_time(cells[at["TIMESTAMP"]], where),
                _tokens(cells[at["ContextTokens"]], "ContextTokens", where, at_least=1),
                _tokens(cells[at["GeneratedTokens"]], "GeneratedTokens", where, at_least=1),
            )
        )
    return rows


def _azure_time(text: str, where: str) -> float:
    """Seconds since the epoch of an Azure trace time stamp: ``2023-11-16 18:15:46.6805900``
    (seven fractional digits, more than ``datetime`` parses: cut to microseconds)."""
    raw = text.strip()
    head, dot, fraction = raw.partition(".")
    try:
        moment = datetime.fromisoformat(head)
        micros = int((fraction + "000000")[:6]) if dot else 0
    except ValueError:
        raise ConfigError(
            f"{where}: 'TIMESTAMP' {raw!r} is not a date and time like 2023-11-16 18:15:46.68"
        ) from None
    return moment.replace(tzinfo=UTC).timestamp() + micros / 1e6  # offsets only: any zone

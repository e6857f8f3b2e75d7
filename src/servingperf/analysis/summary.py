"""The run summary (``summary.json``): per instance and phase, the figures of its measurement window.

Selection rules (stated in the README):
- *measured* requests: status ok and ``t_end`` inside the window [measure_start, measure_end];
  every latency figure and every throughput is over this set;
- throughput = tokens (or requests) of measured requests / window length;
- *issued* requests: ``t_sent`` (``t_scheduled`` for one never sent) inside the window, any
  status; error rate = errors / issued, where a
  request still in flight when the phase stopped is ``cut``: issued, but neither ok nor error;
- client lag is over issued requests (``behind`` counts those sent more than 10 ms after their
  scheduled time, for the validity verdict); goodput counts measured requests meeting every SLO given
  (a request without the figure an SLO needs, e.g. TTFT of a non-streamed call, does not meet it);
- token counts (``token_counts``, ``token_mismatch_rate``): of the measured requests, those whose
  streamed and usage counts were compared and those where they differ, over measured requests.

Scale. Records are summarised batch by batch (``summarize_run_dir`` reads one Parquet segment at a
time, and only the columns it needs), keeping per-request figures of measured requests (a few
float64 columns) but never the pooled ITL samples, of which there is one per token chunk: their
statistics, past ``IN_MEMORY_SAMPLES`` of them, come from an exact radix selection that re-reads
the batches (:func:`describe_large`): the same numbers as numpy's percentiles over all samples,
never estimates. The figures are those of summarising one table at once.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from servingperf.analysis import metrics
from servingperf.analysis.breakdown import GROUP_FIGURES, breakdown
from servingperf.analysis.stats import PERCENTILES, FloatArray, Stats, describe
from servingperf.analysis.validity import BEHIND_S
from servingperf.errors import RunDirError
from servingperf.model.metrics import Kind, MetricDef, distributions
from servingperf.model.specs import SloSpec
from servingperf.results.record_versions import read_segment
from servingperf.results.rundir import PhaseWindow, RunDir, RunInfo
from servingperf.results.schema import REQUEST_SCHEMA

SUMMARY_VERSION = 1
# Phases that time orchestration, not load: they get no figures of their own.
NON_LOAD_PHASES = frozenset({"namespace"})
STAT_METRICS = tuple(m.name for m in distributions())
GROUP_KEYS = {"model": "by_model", "turn": "by_turn"}  # record column -> summary section
# The columns a summary reads (the others, request ids and messages, are never loaded).
COLUMNS = (
    "instance",
    "model",
    "phase",
    "status",
    "error_kind",
    "streamed",
    "output_tokens",
    "input_tokens",
    "t_scheduled_s",
    "t_sent_s",
    "t_first_token_s",
    "t_first_content_s",
    "t_end_s",
    "chunk_offsets_s",
    "chunk_tokens",
    "token_source",
    "stream_output_tokens",
    "usage_output_tokens",
    "token_mismatch",
    "turn",
)
_BATCH_ROWS = 1_000_000
# Pooled ITL samples kept in memory (128 MiB); past that, described by radix selection.
IN_MEMORY_SAMPLES = 16_000_000
_DIGITS = (20, 16, 16, 12)  # radix selection: key bits resolved by each pass over the samples
_COLLECT = 4_000_000  # a key range holding at most this many samples is collected and sorted
_READ_ROWS = 262_144  # records decoded at a time from a segment
# What re-reading the records for ITL needs.
_LIST_COLUMNS = ("chunk_offsets_s", "chunk_tokens")
ITL_COLUMNS = ("instance", "phase", "status", "t_end_s", "chunk_offsets_s", "chunk_tokens")

Batches = Callable[[Sequence[str]], Iterator[pa.Table]]
"""Yields the records again at each call, at least the columns asked for (the ITL statistics
may need several passes)."""


def _group_keys(column: pa.ChunkedArray) -> npt.NDArray[np.object_]:
    """A key column as objects, nulls as None; a column of one value (the common case: one
    model, no turns) without converting it row by row."""
    distinct = pc.unique(column)
    if len(distinct) <= 1:
        value = distinct[0].as_py() if len(distinct) else None
        return np.full(len(column), value, dtype=object)
    return np.asarray(column.to_pylist(), dtype=object)


def _between(values: FloatArray, start: float, end: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return (values >= start) & (values <= end)


def _mask(array: np.ndarray) -> pa.Array:
    return pa.array(array, type=pa.bool_())


def _status_is(table: pa.Table, value: str) -> np.ndarray:
    return np.asarray(pc.equal(table.column("status"), value).to_numpy(zero_copy_only=False))


def summary_value(entry: Mapping[str, Any], definition: MetricDef, statistic: str) -> Any:
    """One figure of a ``summary.json`` instance entry: a distribution's ``statistic``, or a
    rate's value (``statistic`` ``"value"``); None where the summary has none."""
    if definition.distribution:
        return ((entry.get("stats") or {}).get(definition.name) or {}).get(statistic)
    if definition.summary_key is not None:
        return (entry.get("throughput") or {}).get(definition.summary_key)
    return entry.get(definition.name)


def window_bounds(window: PhaseWindow) -> tuple[float, float]:
    start = window.measure_start_s
    end = window.measure_end_s if window.measure_end_s is not None else start
    return start, end


def window_key(window: PhaseWindow) -> str:
    """The key of a window in ``summary.json``: the instance, plus the phase unless it is "load"."""
    return window.instance if window.phase in ("load", "") else f"{window.instance}/{window.phase}"


def phase_records(table: pa.Table, window: PhaseWindow) -> pa.Table:
    """The records of one instance's phase."""
    return _rows_of(table, window)


def measured_records(table: pa.Table, window: PhaseWindow) -> pa.Table:
    """The *measured* requests of a phase's records: ok and ended inside the window."""
    start, end = window_bounds(window)
    inside = _between(metrics.column(table, "t_end_s"), start, end)
    return table.filter(_mask(_status_is(table, "ok") & inside))


@dataclass
class _Window:
    """What one (instance, phase) window gathers, batch by batch."""

    window: PhaseWindow
    slo: SloSpec | None
    model: str | None = None
    issued: int = 0
    ok: int = 0
    errors: int = 0
    cut: int = 0
    behind: int = 0  # issued requests sent more than BEHIND_S after their scheduled time
    measured: int = 0
    goodput: int = 0
    kinds: Counter[Any] = field(default_factory=Counter)
    tokens: TokenCounts = field(default_factory=lambda: TokenCounts())
    per_request: dict[str, list[FloatArray]] = field(default_factory=dict)
    group_keys: dict[str, list[npt.NDArray[np.object_]]] = field(default_factory=dict)
    lag: list[FloatArray] = field(default_factory=list)
    itl: list[FloatArray] = field(default_factory=list)
    itl_count: int = 0
    itl_sum: float = 0.0
    itl_min: float = math.inf
    itl_max: float = -math.inf
    itl_top: np.ndarray = field(  # histogram of the first radix digit of every ITL sample
        default_factory=lambda: np.zeros(1 << _DIGITS[0], dtype=np.int64)
    )

    @property
    def start(self) -> float:
        return window_bounds(self.window)[0]

    @property
    def end(self) -> float:
        return window_bounds(self.window)[1]

    def measured_mask(self, table: pa.Table) -> npt.NDArray[np.bool_]:
        ok = _status_is(table, "ok")
        inside: npt.NDArray[np.bool_] = _between(
            metrics.column(table, "t_end_s"), self.start, self.end
        )
        return ok & inside

    def add(self, table: pa.Table) -> None:
        """Account this window's rows of one batch."""
        if table.num_rows == 0:
            return
        if self.model is None:
            self.model = _first(table, "model")
        ok = _status_is(table, "ok")
        sent = metrics.column(table, "t_sent_s")
        # a request never sent (e.g. it could not connect) is issued at its scheduled time
        sent = np.where(np.isnan(sent), metrics.column(table, "t_scheduled_s"), sent)
        sent_in = _between(sent, self.start, self.end)
        measured_mask = ok & _between(metrics.column(table, "t_end_s"), self.start, self.end)
        scalars = table.drop_columns([c for c in _LIST_COLUMNS if c in table.column_names])
        measured = scalars.filter(_mask(measured_mask))  # never copies the chunk lists
        issued = scalars.filter(_mask(sent_in))
        error_rows = issued.filter(pc.equal(issued.column("status"), "error"))
        self.issued += issued.num_rows
        self.ok += int((sent_in & ok).sum())
        self.errors += error_rows.num_rows
        self.cut += int(pc.sum(pc.equal(issued.column("status"), "cut")).as_py() or 0)
        self.kinds.update(error_rows.column("error_kind").to_pylist())
        self.measured += measured.num_rows
        self.tokens.add(measured)
        figures = {name: figure(measured) for name, figure in metrics.PER_REQUEST.items()}
        for name, values in figures.items():
            self.per_request.setdefault(name, []).append(values)
        for key in GROUP_KEYS:
            if key in measured.column_names:
                self.group_keys.setdefault(key, []).append(_group_keys(measured.column(key)))
        lag = metrics.client_lag(issued)
        with np.errstate(invalid="ignore"):
            self.behind += int((lag > BEHIND_S).sum())
        self.lag.append(lag)
        if self.slo is not None and self._has_slo():
            meets = np.ones(measured.num_rows, dtype=bool)
            with np.errstate(invalid="ignore"):
                for name, limit in self._slo_limits():
                    meets &= figures[name] <= limit  # NaN compares False: a missing figure fails
            self.goodput += int(meets.sum())
        itl = metrics.itl_where(table, measured_mask)
        self.itl_count += itl.size
        if itl.size:
            self.itl_sum += float(itl.sum())
            self.itl_min = min(self.itl_min, float(itl.min()))
            self.itl_max = max(self.itl_max, float(itl.max()))
            self.itl_top += _first_digits(itl)
        if self.itl_count <= IN_MEMORY_SAMPLES:
            self.itl.append(itl)
        else:
            self.itl = []  # too many to keep: described from further passes instead

    def _slo_limits(self) -> list[tuple[str, float]]:
        """(per-request figure, limit) of every SLO given."""
        if self.slo is None:
            return []
        limits = self.slo.model_dump(exclude_none=True)
        return [(name, float(limit)) for name, limit in limits.items()]

    def _has_slo(self) -> bool:
        return bool(self._slo_limits())

    def result(self, itl_again: Callable[[], Iterator[FloatArray]]) -> dict[str, Any]:
        length = max(self.end - self.start, 0.0)

        def joined(name: str) -> FloatArray:
            parts = self.per_request.get(name, [])
            return np.concatenate(parts) if parts else np.empty(0, dtype=np.float64)

        def per_s(total: float) -> float | None:
            return total / length if length > 0 else None

        output_tokens = joined("output_tokens")
        input_tokens = joined("input_tokens")
        if self.itl_count <= IN_MEMORY_SAMPLES:
            itl_stats = describe(np.concatenate(self.itl) if self.itl else np.empty(0))
        else:
            itl_stats = describe_large(
                itl_again, self.itl_count, self.itl_sum, self.itl_min, self.itl_max, self.itl_top
            )
        lag = np.concatenate(self.lag) if self.lag else np.empty(0)
        by_kind = {Kind.POOLED: lambda _: itl_stats, Kind.ISSUED: lambda _: describe(lag)}
        stats = {
            m.name: by_kind.get(m.kind, lambda name: describe(joined(name)))(m.name)
            for m in distributions()
        }
        input_known = self.measured > 0 and not np.isnan(input_tokens).any()
        return {
            "model": self.model,
            "phase": self.window.phase,
            "window": {"start_s": self.start, "end_s": self.end, "length_s": length},
            "counts": {
                "issued": self.issued,
                "ok": self.ok,
                "error": self.errors,
                "cut": self.cut,
                "behind": self.behind,
                "measured": self.measured,
                "errors_by_kind": dict(sorted(self.kinds.items(), key=lambda kv: str(kv[0]))),
            },
            "throughput": {
                "output_tps": per_s(float(np.nansum(output_tokens))),
                "input_tps": per_s(float(input_tokens.sum())) if input_known else None,
                "request_rps": per_s(float(self.measured)),
                "goodput_rps": per_s(float(self.goodput)) if self._has_slo() else None,
            },
            "error_rate": (self.errors / self.issued) if self.issued else None,
            "token_mismatch_rate": (
                self.tokens.mismatched / self.measured if self.measured else None
            ),
            "token_counts": self.tokens.to_json(),
            "stats": {name: (s.to_json() if s else None) for name, s in stats.items()},
            **self._breakdowns(joined, length),
        }

    def _breakdowns(
        self, joined: Callable[[str], FloatArray], length: float
    ) -> dict[str, dict[str, Any]]:
        """``by_model`` when the window's requests named several models (LoRA adapters),
        ``by_turn`` when they were conversation turns (:mod:`servingperf.analysis.breakdown`)."""
        out: dict[str, dict[str, Any]] = {}
        figures = {name: joined(name) for name in GROUP_FIGURES if name in self.per_request}
        for key, section in GROUP_KEYS.items():
            parts = self.group_keys.get(key)
            if not parts:
                continue
            keys = np.concatenate(parts)
            distinct = {k for k in keys if k is not None}
            if (key == "model" and len(distinct) > 1) or (key == "turn" and distinct):
                out[section] = breakdown(keys, figures, joined("output_tokens"), length)
        return out


@dataclass
class TokenCounts:
    """How the measured requests of a window counted their output tokens: N's source per
    request, and the streamed count against the usage count where both are known (a successful
    streamed request with a usage block); ``*_tokens`` sum each count over the mismatched ones,
    so that a reader sees by how much the usage inflates (or deflates) the throughput."""

    compared: int = 0
    mismatched: int = 0
    stream_tokens: int = 0
    usage_tokens: int = 0
    n_from: Counter[str] = field(default_factory=Counter)

    def add(self, measured: pa.Table) -> None:
        if measured.num_rows == 0:
            return
        self.n_from.update(str(v) for v in measured.column("token_source").to_pylist())
        flags = measured.column("token_mismatch")
        self.compared += len(flags) - flags.null_count
        mismatched = measured.filter(pc.fill_null(flags, False))
        self.mismatched += mismatched.num_rows
        self.stream_tokens += int(pc.sum(mismatched.column("stream_output_tokens")).as_py() or 0)
        self.usage_tokens += int(pc.sum(mismatched.column("usage_output_tokens")).as_py() or 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "compared": self.compared,
            "mismatched": self.mismatched,
            "mismatched_stream_tokens": self.stream_tokens,
            "mismatched_usage_tokens": self.usage_tokens,
            "n_from": dict(sorted(self.n_from.items())),
        }


def _first(table: pa.Table, name: str) -> str | None:
    return str(table.column(name)[0].as_py()) if table.num_rows else None


def _rows_of(table: pa.Table, window: PhaseWindow) -> pa.Table:
    instances, phases = table.column("instance"), table.column("phase")
    if table.num_rows and _only(instances, window.instance) and _only(phases, window.phase):
        return table  # the usual case: a batch of one instance's phase, no copy
    mask = pc.and_(
        pc.equal(table.column("instance"), window.instance),
        pc.equal(table.column("phase"), window.phase),
    )
    return table.filter(mask)


def _only(column: pa.ChunkedArray, value: str) -> bool:
    bounds = pc.min_max(column)
    return bool(bounds["min"].as_py() == value == bounds["max"].as_py())


def _summarize(
    windows: list[PhaseWindow], batches: Batches, slo: SloSpec | None
) -> tuple[dict[int, dict[str, Any]], Counter[Any], int]:
    """Every window's entry, the status totals and the record count, from ``batches``."""
    gathered = [_Window(window, slo) for window in windows]
    totals: Counter[Any] = Counter()
    rows = 0
    for batch in batches(COLUMNS):
        rows += batch.num_rows
        counts = pc.value_counts(batch.column("status"))
        for item in counts.to_pylist():
            totals[item["values"]] += item["counts"]
        for item in gathered:
            item.add(_rows_of(batch, item.window))

    def itl_of(item: _Window) -> Callable[[], Iterator[FloatArray]]:
        def again() -> Iterator[FloatArray]:
            for batch in batches(ITL_COLUMNS):
                rows = _rows_of(batch, item.window)
                yield metrics.itl_where(rows, item.measured_mask(rows))

        return again

    return {i: item.result(itl_of(item)) for i, item in enumerate(gathered)}, totals, rows


def summarize_window(table: pa.Table, window: PhaseWindow, slo: SloSpec | None) -> dict[str, Any]:
    """Figures of one instance's phase; ``table`` holds that instance's records of that phase."""
    item = _Window(window, slo)
    item.add(table)
    return item.result(lambda: iter([metrics.itl_where(table, item.measured_mask(table))]))


def _entries(
    info: RunInfo, results: dict[int, dict[str, Any]], totals: Counter[Any], rows: int
) -> dict[str, Any]:
    instances: dict[str, Any] = {}
    for index, window in enumerate(info.phases):
        if window.phase in NON_LOAD_PHASES:
            continue
        key = window_key(window)
        entry = results[index]
        entry["instance"] = window.instance
        instances[key] = entry
    return {
        "schema_version": SUMMARY_VERSION,
        "run_id": info.run_id,
        "scenario": info.scenario,
        "kind": info.kind,
        "status": info.status,
        "labels": info.labels,
        "records": {"total": rows, **dict(sorted(totals.items()))},
        "instances": instances,
    }


def summarize_run(info: RunInfo, table: pa.Table, slo: SloSpec | None = None) -> dict[str, Any]:
    """``summary.json`` for a run: one entry per (instance, phase) window in ``run.json``."""

    def batches(columns: Sequence[str]) -> Iterator[pa.Table]:
        for offset in range(0, max(table.num_rows, 1), _BATCH_ROWS):
            yield table.slice(offset, _BATCH_ROWS)

    results, totals, rows = _summarize(list(info.phases), batches, slo)
    return _entries(info, results, totals, rows)


def summarize_run_dir(
    run_dir: RunDir, slo: SloSpec | None = None, info: RunInfo | None = None
) -> dict[str, Any]:
    """``summarize_run`` reading the records segment by segment, only the columns it needs:
    bounded memory however many records the run has. ``info`` replaces ``run.json`` (a
    never-closed run's windows, as the caller reconstructed them)."""
    info = run_dir.read_info() if info is None else info
    parts = sorted(run_dir.records_dir.glob("*.parquet")) if run_dir.records_dir.is_dir() else []
    if not run_dir.records_dir.is_dir():
        raise RunDirError(f"{run_dir.path}: no records/ directory")

    def batches(columns: Sequence[str]) -> Iterator[pa.Table]:
        if not parts:
            yield _empty().select(list(columns))
        for part in parts:
            yield from _read_segment(part, columns)

    results, totals, rows = _summarize(list(info.phases), batches, slo)
    return _entries(info, results, totals, rows)


def _empty() -> pa.Table:
    return REQUEST_SCHEMA.empty_table().select(list(COLUMNS))


def _read_segment(part: Any, columns: Sequence[str]) -> Iterator[pa.Table]:
    return read_segment(part, columns, _READ_ROWS)


def iter_tables(tables: Iterable[pa.Table]) -> Batches:
    """Batches from tables already in memory (tests, small runs)."""
    kept = list(tables)
    return lambda columns: iter(kept)


# --- exact statistics of samples too many to hold ---------------------------------------------


def _keys(values: FloatArray) -> np.ndarray:
    """uint64 keys ordered as the floats are (IEEE 754 bit trick; no NaN reaches here)."""
    bits = values.view(np.int64)
    signed = np.where(bits < 0, bits ^ np.int64(0x7FFFFFFFFFFFFFFF), bits)
    return signed.view(np.uint64) ^ np.uint64(1 << 63)


def _value(key: int) -> float:
    signed = np.array([key ^ (1 << 63)], dtype=np.uint64).view(np.int64)
    bits = np.where(signed < 0, signed ^ np.int64(0x7FFFFFFFFFFFFFFF), signed)
    return float(bits.view(np.float64)[0])


def _order_statistics(
    samples: Callable[[], Iterator[FloatArray]],
    ranks: list[int],
    first_digits: np.ndarray | None = None,
) -> dict[int, float]:
    """The value at each 0-based rank of the sorted samples: a most-significant-digit radix
    selection, one pass over the samples per digit of the keys (``_DIGITS``), until a rank's key
    range is small enough to be collected and sorted (or its whole key is known)."""
    found: dict[int, float] = {}
    # per rank: known high bits of its key, how many bits are known, rank within that range,
    # and whether the next pass collects the range
    state: dict[int, tuple[int, int, int, bool]] = {rank: (0, 0, rank, False) for rank in ranks}
    known_first = first_digits is not None
    while len(found) < len(ranks):
        pending = sorted({(*state[r][:2], state[r][3]) for r in ranks if r not in found})
        histograms: dict[tuple[int, int, bool], np.ndarray] = {}
        if known_first and first_digits is not None:
            histograms[(0, 0, False)] = first_digits
            pending = []  # the first digit is already counted: no pass needed for it
            known_first = False
        collected: dict[tuple[int, int, bool], list[FloatArray]] = {key: [] for key in pending}
        for values in samples() if pending else ():
            keys = _keys(values)
            for key in pending:
                prefix, known, collect = key
                if known:
                    match = (keys >> np.uint64(64 - known)) == np.uint64(prefix)
                if collect:
                    collected[key].append(values[match])
                    continue
                width = _digit_width(known)
                inside = keys[match] if known else keys
                shift = np.uint64(64 - known - width)
                digits = ((inside >> shift) & np.uint64((1 << width) - 1)).astype(np.intp)
                counts = np.bincount(digits, minlength=1 << width)
                if key in histograms:
                    histograms[key] += counts
                else:
                    histograms[key] = counts
        for rank in [r for r in ranks if r not in found]:
            prefix, known, within, collect = state[rank]
            key = (prefix, known, collect)
            if collect:
                found[rank] = float(np.sort(np.concatenate(collected[key]))[within])
                continue
            width = _digit_width(known)
            histogram = histograms.get(key, np.zeros(1 << width, dtype=np.int64))
            cumulative = np.cumsum(histogram)
            digit = int(np.searchsorted(cumulative, within, side="right"))
            within -= int(cumulative[digit - 1]) if digit else 0
            count = int(histogram[digit])
            prefix, known = (prefix << width) | digit, known + width
            if known == 64:
                found[rank] = _value(prefix)
            state[rank] = (prefix, known, within, count <= _COLLECT)
    return found


def _digit_width(known: int) -> int:
    total = 0
    for width in _DIGITS:
        if total == known:
            return width
        total += width
    raise ValueError(f"no digit starts at bit {known}")


def _first_digits(values: FloatArray) -> np.ndarray:
    width = _DIGITS[0]
    digits = (_keys(values) >> np.uint64(64 - width)).astype(np.intp)
    return np.bincount(digits, minlength=1 << width)


def describe_large(
    samples: Callable[[], Iterator[FloatArray]],
    count: int,
    total: float,
    low: float,
    high: float,
    first_digits: np.ndarray | None = None,
) -> Stats | None:
    """``describe`` of the concatenation of ``samples()`` (``count`` finite floats summing to
    ``total``, from ``low`` to ``high``) without holding it. Percentiles are exactly numpy's
    default ("linear") ones, interpolated from order statistics found by radix selection
    (``first_digits``, the histogram of the keys' first digit, saves one pass); the mean is
    total / count, equal to numpy's up to the rounding of the summation order."""
    if count == 0:
        return None
    quantiles = np.true_divide(np.asarray(PERCENTILES, dtype=np.float64), 100)
    virtual = (count - 1) * quantiles
    previous = np.floor(virtual)
    following = previous + 1
    above = virtual >= count - 1
    previous[above] = count - 1
    following[above] = count - 1
    ranks = sorted({int(i) for i in (*previous, *following)})
    order = _order_statistics(samples, ranks, first_digits)
    low_v = np.asarray([order[int(i)] for i in previous])
    high_v = np.asarray([order[int(i)] for i in following])
    gamma = virtual - np.where(above, -1.0, previous)
    difference = high_v - low_v
    result = low_v + difference * gamma
    result = np.where(gamma >= 0.5, high_v - difference * (1 - gamma), result)
    p50, p90, p95, p99 = (float(v) for v in result)
    return Stats(n=count, min=low, mean=total / count, p50=p50, p90=p90, p95=p95, p99=p99, max=high)

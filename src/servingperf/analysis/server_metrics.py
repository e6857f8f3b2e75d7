"""Server metrics against the client's records (pure): the agreement table and the series and
distributions the report draws.

Terms. A *window* is one phase of one instance, [start_s, end_s] on the run's clock (``run.json``
``phases``). Its server figures are *deltas* of the server's cumulative series between the last
scrape at or before the window's start and the last one after its end before the instance's next
window (the harness scrapes at every phase boundary, so they bracket the phase with no other load
between, and a server that records a request a moment after answering it is counted); only label
sets of
the instance's model (``model_name`` = the model id its records carry) count. The client side is
every record of the instance in the phase, ramp-up and drained ones included, because the server
counted every request it saw.

Agreement rows (vLLM's metric names; the emulator exposes the same):

- ``requests``: client ``ok`` records vs ``request_success_total`` of every finished reason but
  ``abort`` and ``error``; ``output_tokens`` / ``input_tokens``: the client's usage counts of its
  ok records vs ``request_generation_tokens_sum`` / ``request_prompt_tokens_sum`` (finished
  requests only, so a request cut by the client never enters them). Counts must match exactly.
  With requests *cut* in the window (no ``load.drain_s``, or a drain too short), a request the
  server finished just before the client gave up is ok on the server and cut on the client, and
  one the server was still generating is counted by neither (vLLM 0.32 records a client abort in no
  finished-request metric): the server's count must then lie in [client, client + cut].
- ``ttft_mean_s`` (streamed records with a first token, cut ones included, vs
  ``time_to_first_token_seconds``, observed at every first token) and ``e2e_mean_s`` (ok records vs
  ``e2e_request_latency_seconds``): means must agree within ``max(abs_tol_s, rel_tol x server)``
  (defaults 50 ms, 10 %): the client's clock adds what the server's does not see: the network,
  the API server's own HTTP handling, tokenisation and detokenisation, and the client's reading
  (measured here: about 1 ms for the emulator; 24-28 ms for vLLM's CPU build with 4 users on a
  loaded 2-core machine, its API server and engine sharing the cores).
- ``queue_mean_s`` (``request_queue_time_seconds``): the client cannot see queueing; the row is
  server-only, compared with the spans' own queue time when spans were received.

Verdict of a window: ``agree`` when every comparable row agrees, ``disagree`` when one does not,
``unknown`` without a scrape on each side of the window (a gap at a boundary) or without server
series of these names (a server that is not vLLM-compatible).
"""

from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from servingperf.results.rundir import PhaseWindow

SUCCESS = "vllm:request_success_total"
NOT_SUCCESS = frozenset({"abort", "error"})
_NAMES = (
    SUCCESS,
    "vllm:request_generation_tokens_sum",
    "vllm:request_prompt_tokens_sum",
    "vllm:time_to_first_token_seconds_sum",
    "vllm:time_to_first_token_seconds_count",
    "vllm:e2e_request_latency_seconds_sum",
    "vllm:e2e_request_latency_seconds_count",
    "vllm:request_queue_time_seconds_sum",
    "vllm:request_queue_time_seconds_count",
)
GAUGES = ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc")
DISTRIBUTIONS = {
    "ttft_s": "vllm:time_to_first_token_seconds",
    "itl_s": "vllm:inter_token_latency_seconds",
    "e2e_s": "vllm:e2e_request_latency_seconds",
    "queue_s": "vllm:request_queue_time_seconds",
}


@dataclass(frozen=True, slots=True)
class Tolerance:
    rel: float = 0.10
    abs_s: float = 0.050


def _label_filter(model: str | None) -> Any:
    def keep(labels: dict[str, str]) -> bool:
        return model is None or labels.get("model_name", model) == model

    return keep


def by_instance(samples: pa.Table, names: Iterable[str]) -> dict[str, pa.Table]:
    """The samples of ``names``, split by instance in one pass (a many-model run has thousands
    of instances: filtering the whole table once per instance would be quadratic)."""
    wanted = pa.array(sorted(set(names)), type=pa.string())
    table = samples.filter(pc.is_in(samples["name"], value_set=wanted))
    if table.num_rows == 0:
        return {}
    table = table.take(pc.sort_indices(table["instance"]))
    instances = np.asarray(table["instance"].to_numpy(zero_copy_only=False), dtype=object)
    starts = np.flatnonzero(np.r_[True, instances[1:] != instances[:-1]])
    ends = np.r_[starts[1:], len(instances)]
    return {
        str(instances[a]): table.slice(int(a), int(b - a))
        for a, b in zip(starts, ends, strict=True)
    }


class ServerSeries:
    """The scraped samples of one instance as Python data: (name, labels, le) -> [(t_s, value)]."""

    def __init__(self, samples: pa.Table, instance: str, names: Iterable[str]) -> None:
        wanted = pa.array(sorted(set(names)), type=pa.string())
        mask = pc.and_(
            pc.equal(samples["instance"], instance), pc.is_in(samples["name"], value_set=wanted)
        )
        table = samples.filter(mask)
        labels_cache: dict[str, dict[str, str]] = {}
        self.series: dict[tuple[str, str, float | None], list[tuple[float, float]]] = defaultdict(
            list
        )
        self.labels: dict[str, dict[str, str]] = labels_cache
        columns = table.select(["t_s", "name", "labels", "le", "value"]).to_pydict()
        for t, name, labels, le, value in zip(
            columns["t_s"],
            columns["name"],
            columns["labels"],
            columns["le"],
            columns["value"],
            strict=True,
        ):
            if labels not in labels_cache:
                labels_cache[labels] = json.loads(labels)
            self.series[(name, labels, le)].append((t, value))
        for points in self.series.values():
            points.sort()
        self.times = sorted({t for points in self.series.values() for t, _ in points})

    def bracket(
        self, start_s: float, end_s: float, next_start_s: float | None = None
    ) -> tuple[float, float] | None:
        """The last scrape at or before ``start_s``, and the last one after ``end_s`` but before
        ``next_start_s`` (the instance's next window; None: the last scrape of all): nothing
        loads the server in between, and a server may record a request's figures a moment after
        its last byte (vLLM does), so the latest quiet scrape counts it surely."""
        before = [t for t in self.times if t <= start_s]
        after = [
            t for t in self.times if t >= end_s and (next_start_s is None or t <= next_start_s)
        ]
        if not before or not after:
            return None
        return before[-1], after[-1]

    def value_at(self, key: tuple[str, str, float | None], t: float) -> float | None:
        points = self.series.get(key)
        if not points:
            return None
        found = None
        for at, value in points:
            if at <= t + 1e-9:
                found = value
            else:
                break
        return found

    def delta(
        self, name: str, t0: float, t1: float, model: str | None, **match: str
    ) -> float | None:
        """Sum over the model's label sets of value(t1) - value(t0); None if no such series."""
        keep = _label_filter(model)
        total: float | None = None
        for key in self.series:
            if key[0] != name or key[2] is not None:
                continue
            labels = self.labels[key[1]]
            if not keep(labels) or any(labels.get(k) != v for k, v in match.items()):
                continue
            end = self.value_at(key, t1)
            begin = self.value_at(key, t0) or 0.0
            if end is None:
                continue
            total = (total or 0.0) + max(0.0, end - begin)  # a restart resets: never negative
        return total

    def success(self, t0: float, t1: float, model: str | None) -> tuple[float, float] | None:
        """(finished requests, aborted or failed ones) between two scrapes."""
        keep = _label_filter(model)
        ok = bad = 0.0
        found = False
        for key in self.series:
            if key[0] != SUCCESS:
                continue
            labels = self.labels[key[1]]
            if not keep(labels):
                continue
            end = self.value_at(key, t1)
            if end is None:
                continue
            found = True
            change = max(0.0, end - (self.value_at(key, t0) or 0.0))
            if labels.get("finished_reason") in NOT_SUCCESS:
                bad += change
            else:
                ok += change
        return (ok, bad) if found else None


def _mean(total: float | None, count: float | None) -> float | None:
    if total is None or not count:
        return None
    return total / count


def _count_row(name: str, client: int, server: float | None, cut: int) -> dict[str, Any]:
    row: dict[str, Any] = {"figure": name, "client": client, "server": server}
    if server is None:
        row.update(verdict="unknown", rule="no server series")
        return row
    server_n = round(server)
    if cut == 0:
        row.update(rule="exact", verdict="agree" if server_n == client else "disagree")
    else:
        row.update(
            rule=f"client <= server <= client + {cut} cut",
            verdict="agree" if client <= server_n <= client + cut else "disagree",
        )
    return row


def _mean_row(
    name: str, client: float | None, server: float | None, tolerance: Tolerance
) -> dict[str, Any]:
    row: dict[str, Any] = {"figure": name, "client": client, "server": server}
    if client is None or server is None:
        row.update(verdict="unknown", rule="no samples on one side")
        return row
    bound = max(tolerance.abs_s, tolerance.rel * abs(server))
    row.update(
        difference=client - server,
        rule=f"|client - server| <= {bound:.4g} s",
        verdict="agree" if abs(client - server) <= bound else "disagree",
    )
    return row


def _client_figures(records: pa.Table) -> dict[str, Any]:
    status = records["status"].to_pylist()
    ok = [s == "ok" for s in status]
    out_tokens = records["output_tokens"].to_pylist()
    in_tokens = records["input_tokens"].to_pylist()
    sent = records["t_sent_s"].to_pylist()
    first = records["t_first_token_s"].to_pylist()
    end = records["t_end_s"].to_pylist()
    streamed = records["streamed"].to_pylist()
    e2e = [e - s for o, s, e in zip(ok, sent, end, strict=True) if o and s is not None and e]
    ttft = [
        f - s
        for st, s, f in zip(streamed, sent, first, strict=True)
        if st and s is not None and f is not None
    ]
    return {
        "ok": sum(ok),
        "cut": sum(1 for s in status if s == "cut"),
        "output_tokens": sum(t or 0 for o, t in zip(ok, out_tokens, strict=True) if o),
        "input_tokens": (
            None
            if any(o and t is None for o, t in zip(ok, in_tokens, strict=True))
            else sum(t or 0 for o, t in zip(ok, in_tokens, strict=True) if o)
        ),
        "ttft_mean_s": float(np.mean(ttft)) if ttft else None,
        "e2e_mean_s": float(np.mean(e2e)) if e2e else None,
    }


def window_agreement(
    records: pa.Table,
    series: ServerSeries,
    window: PhaseWindow,
    tolerance: Tolerance,
    next_start_s: float | None = None,
) -> dict[str, Any]:
    """The agreement entry of one window (rows and verdict; terms in the module docstring)."""
    end_s = window.end_s if window.end_s is not None else window.measure_end_s or window.start_s
    entry: dict[str, Any] = {
        "instance": window.instance,
        "phase": window.phase,
        "start_s": window.start_s,
        "end_s": end_s,
    }
    mask = pc.equal(records["instance"], window.instance)
    if window.phase != "*":  # "*": every phase of the instance (a many-model run)
        mask = pc.and_(mask, pc.equal(records["phase"], window.phase))
    mine = records.filter(mask)
    models = pc.unique(mine["model"]).to_pylist() if mine.num_rows else []
    model = models[0] if len(models) == 1 else None
    entry["model"] = model
    bracket = series.bracket(window.start_s, end_s, next_start_s)
    if bracket is None:
        entry.update(verdict="unknown", reason="no scrape on each side of the window", rows=[])
        return entry
    t0, t1 = bracket
    entry["scrapes_s"] = [t0, t1]
    client = _client_figures(mine)
    success = series.success(t0, t1, model)
    rows = [
        _count_row(
            "requests", client["ok"], None if success is None else success[0], client["cut"]
        ),
        _count_row(
            "output_tokens",
            client["output_tokens"],
            series.delta("vllm:request_generation_tokens_sum", t0, t1, model),
            client["cut"],
        ),
    ]
    if client["input_tokens"] is not None:
        rows.append(
            _count_row(
                "input_tokens",
                client["input_tokens"],
                series.delta("vllm:request_prompt_tokens_sum", t0, t1, model),
                client["cut"],
            )
        )
    means = (("ttft_mean_s", "time_to_first_token"), ("e2e_mean_s", "e2e_request_latency"))
    for figure, family in means:
        server_mean = _mean(
            series.delta(f"vllm:{family}_seconds_sum", t0, t1, model),
            series.delta(f"vllm:{family}_seconds_count", t0, t1, model),
        )
        rows.append(_mean_row(figure, client[figure], server_mean, tolerance))
    queue = _mean(
        series.delta("vllm:request_queue_time_seconds_sum", t0, t1, model),
        series.delta("vllm:request_queue_time_seconds_count", t0, t1, model),
    )
    rows.append(
        {"figure": "queue_mean_s", "client": None, "server": queue, "verdict": "server only"}
    )
    entry["rows"] = rows
    entry["cut"] = client["cut"]
    entry["server_aborted"] = None if success is None else success[1]
    judged = [r["verdict"] for r in rows if r["verdict"] in ("agree", "disagree")]
    if success is None:
        entry.update(verdict="unknown", reason="no vllm:request_success_total series")
    elif "disagree" in judged:
        entry["verdict"] = "disagree"
    elif judged:
        entry["verdict"] = "agree"
    else:
        entry["verdict"] = "unknown"
    return entry


def agreement(
    records: pa.Table,
    samples: pa.Table,
    windows: list[PhaseWindow],
    tolerance: Tolerance,
) -> dict[str, Any]:
    """``summary["server_agreement"]``: one entry per window of an instance that was scraped,
    and the run's verdict (``disagree`` if any window disagrees, ``agree`` if every judged one
    agrees, ``unknown`` otherwise)."""
    parts = by_instance(samples, _NAMES)
    scraped = set(pc.unique(samples["instance"]).to_pylist()) if samples.num_rows else set()
    series_of: dict[str, ServerSeries] = {}
    entries = []
    starts: dict[str, list[float]] = {}
    for window in windows:
        starts.setdefault(window.instance, []).append(window.start_s)
    for window in windows:
        if window.instance not in scraped:
            continue
        if window.instance not in series_of:
            part = parts.get(window.instance, samples.slice(0, 0))
            series_of[window.instance] = ServerSeries(part, window.instance, _NAMES)
        later = [s for s in starts[window.instance] if s > window.start_s]
        entries.append(
            window_agreement(
                records,
                series_of[window.instance],
                window,
                tolerance,
                min(later) if later else None,
            )
        )
    verdicts = [e["verdict"] for e in entries]
    if "disagree" in verdicts:
        verdict = "disagree"
    elif verdicts and all(v == "agree" for v in verdicts):
        verdict = "agree"
    elif "agree" in verdicts:
        verdict = "agree"  # the judged windows agree; the others say why they are unknown
    else:
        verdict = "unknown"
    return {
        "verdict": verdict,
        "tolerance": {"rel": tolerance.rel, "abs_s": tolerance.abs_s},
        "windows": entries,
    }


def gauge_series(
    samples: pa.Table, instance: str, model: str | None
) -> dict[str, list[tuple[float, float]]]:
    """Per gauge (running, waiting, KV usage) and for ``batch_tokens`` (mean tokens per engine
    step between consecutive scrapes), the instance's time series summed over the model's
    label sets."""
    names = (*GAUGES, "vllm:iteration_tokens_total_sum", "vllm:iteration_tokens_total_count")
    series = ServerSeries(samples, instance, names)
    keep = _label_filter(model)
    out: dict[str, list[tuple[float, float]]] = {}
    for name in GAUGES:
        summed: dict[float, float] = defaultdict(float)
        for key, points in series.series.items():
            if key[0] == name and keep(series.labels[key[1]]):
                for t, v in points:
                    summed[t] += v
        if summed:
            out[name.removeprefix("vllm:")] = sorted(summed.items())
    sums = _summed(series, "vllm:iteration_tokens_total_sum", keep)
    counts = _summed(series, "vllm:iteration_tokens_total_count", keep)
    batch = []
    times = sorted(set(sums) & set(counts))
    for a, b in itertools.pairwise(times):
        steps = counts[b] - counts[a]
        if steps > 0:
            batch.append((b, (sums[b] - sums[a]) / steps))
    if batch:
        out["batch_tokens"] = batch
    return out


def _summed(series: ServerSeries, name: str, keep: Any) -> dict[float, float]:
    summed: dict[float, float] = defaultdict(float)
    for key, points in series.series.items():
        if key[0] == name and key[2] is None and keep(series.labels[key[1]]):
            for t, v in points:
                summed[t] += v
    return summed


def bucket_distribution(
    samples: pa.Table, instance: str, family: str, t0: float, t1: float, model: str | None
) -> list[tuple[float, float]]:
    """The histogram ``family``'s bucket counts observed between the scrapes at ``t0`` and
    ``t1``, per bucket (not cumulative): [(upper bound, count)], +inf last."""
    series = ServerSeries(samples, instance, [f"{family}_bucket"])
    keep = _label_filter(model)
    cumulative: dict[float, float] = defaultdict(float)
    for key in series.series:
        if key[2] is None or not keep(series.labels[key[1]]):
            continue
        end = series.value_at(key, t1) or 0.0
        begin = series.value_at(key, t0) or 0.0
        cumulative[key[2]] += max(0.0, end - begin)
    bounds = sorted(cumulative)
    out = []
    previous = 0.0
    for bound in bounds:
        out.append((bound, max(0.0, cumulative[bound] - previous)))
        previous = cumulative[bound]
    return out


def client_distribution(values: Iterable[float], bounds: list[float]) -> list[float]:
    """``values`` counted into the same buckets (``le`` semantics) as a server histogram."""
    counts = [0.0] * len(bounds)
    finite = np.asarray([b for b in bounds if math.isfinite(b)])
    for value in values:
        index = int(np.searchsorted(finite, value, side="left"))
        counts[min(index, len(bounds) - 1)] += 1
    return counts


def _named_points(table: pa.Table, name: str) -> list[tuple[float, float]]:
    """(t_s, value) of every finite sample named ``name``, summed over label sets per time."""
    if table.num_rows == 0:
        return []
    mine = table.filter(pc.equal(table["name"], name))
    summed: dict[float, float] = defaultdict(float)
    for t, v in zip(mine["t_s"].to_pylist(), mine["value"].to_pylist(), strict=True):
        if v is not None and math.isfinite(v):
            summed[t] += v
    return sorted(summed.items())


def controller_evidence(prometheus: pa.Table, scraped: pa.Table) -> dict[str, Any] | None:
    """What the controllers' metrics say over a many-model run, for the saturation verdict to
    cite: the work-queue depth (its peak and when; its mean) and the reconcile time p90 (first,
    last and highest value of the window), from the ``kserve`` query set's results, else from
    a controller's raw ``workqueue_depth`` scraped directly. None without any."""
    depth = _named_points(prometheus, "workqueue_depth")
    source = "prometheus"
    if not depth:
        depth = _named_points(scraped, "workqueue_depth")
        source = "scrape"
    reconcile = _named_points(prometheus, "controller_reconcile_time_p90_s")
    if not depth and not reconcile:
        return None
    out: dict[str, Any] = {"source": source}
    if depth:
        peak_t, peak = max(depth, key=lambda p: (p[1], -p[0]))
        out["workqueue_depth"] = {
            "max": peak,
            "t_max_s": peak_t,
            "mean": float(np.mean([v for _, v in depth])),
            "points": len(depth),
        }
    if reconcile:
        out["reconcile_time_p90_s"] = {
            "first": reconcile[0][1],
            "last": reconcile[-1][1],
            "max": max(v for _, v in reconcile),
        }
    return out


def evidence_sentence(evidence: dict[str, Any]) -> str:
    """The controllers' evidence as one sentence of the saturation verdict's reasons."""
    parts = []
    depth = evidence.get("workqueue_depth")
    if depth:
        parts.append(
            f"the controllers' work-queue depth peaked at {depth['max']:.3g}"
            f" ({depth['t_max_s']:.1f} s into the run; mean {depth['mean']:.2g})"
        )
    reconcile = evidence.get("reconcile_time_p90_s")
    if reconcile:
        parts.append(
            f"reconcile time p90 went from {reconcile['first']:.3g} s to {reconcile['last']:.3g} s"
            f" (highest {reconcile['max']:.3g} s)"
        )
    return "controller evidence: " + "; ".join(parts)

"""Chart specs of the server metrics: Vega-Lite dicts with their data inline (pure).

The charts (names are the PNG file stems):

- ``server_timeline_<instance>`` (or ``server_timeline`` summed over instances when a run has more
  than ``PER_INSTANCE_LIMIT``): the server's running and waiting requests, the client's requests
  in flight at the same moments, KV-cache usage and tokens per engine step (batch tokens),
  against the time since the run start: the client timeline's axis; phases shaded;
- ``server_distributions_<instance>``: per phase window, the server's TTFT, ITL and E2E histogram
  (bucket counts observed in the window) beside the client's same figure counted into the same
  buckets, as fractions; the server's queue time alone (the client cannot see it);
- ``request_decomposition``: mean queue, prefill, decode and other time of the requests joined
  to a server span, stacked per instance and phase (runs with spans);
- ``controller_evidence`` (many-model runs with controller metrics): created and ready
  instances over time above the controllers' work-queue depth and reconcile time, one time axis.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from servingperf.analysis.decomposition import PARTS
from servingperf.analysis.loadtimes import deployment_points
from servingperf.analysis.server_metrics import (
    DISTRIBUTIONS,
    GAUGES,
    ServerSeries,
    bucket_distribution,
    by_instance,
    client_distribution,
    gauge_series,
)

Spec = dict[str, Any]
WIDTH = 560
ROW_HEIGHT = 110
PER_INSTANCE_LIMIT = 8
SERIES_TITLES = {
    "num_requests_running": "running (server)",
    "num_requests_waiting": "waiting (server)",
    "client_in_flight": "in flight (client)",
    "kv_cache_usage_perc": "KV-cache usage (0-1)",
    "batch_tokens": "tokens per engine step",
}
CONTROLLER_NAMES = {
    "workqueue_depth": "work-queue depth",
    "controller_reconcile_time_p90_s": "reconcile time p90 (s)",
    "controller_reconcile_time_mean_s": "reconcile time mean (s)",
}


def _num(value: float, digits: int = 6) -> float | None:
    return float(f"{value:.{digits}g}") if math.isfinite(value) else None


def _in_flight(records: pa.Table, instance: str | None, times: list[float]) -> list[float]:
    """Client requests sent and not yet ended at each of ``times``."""
    table = records if instance is None else records.filter(pc.equal(records["instance"], instance))
    sent = np.asarray(table["t_sent_s"].to_numpy(zero_copy_only=False), dtype=float)
    end = np.asarray(table["t_end_s"].to_numpy(zero_copy_only=False), dtype=float)
    known = np.isfinite(sent)
    started = np.sort(sent[known])
    ended = np.sort(np.where(np.isfinite(end[known]), end[known], np.inf))
    t = np.asarray(times, dtype=float)
    counts = np.searchsorted(started, t, side="right") - np.searchsorted(ended, t, side="right")
    return [float(c) for c in counts]


def _phases(run_info: Mapping[str, Any], instance: str | None) -> list[dict[str, Any]]:
    out = []
    for w in run_info.get("phases") or []:
        if instance is not None and w.get("instance") != instance:
            continue
        end = w.get("end_s") if w.get("end_s") is not None else w.get("measure_end_s")
        if end is None:
            continue
        out.append({"phase": w.get("phase"), "start_s": w.get("start_s"), "end_s": end})
    return out


def _model(records: pa.Table, instance: str) -> str | None:
    models = pc.unique(records.filter(pc.equal(records["instance"], instance))["model"])
    return str(models[0].as_py()) if len(models) == 1 else None


def server_timeline(
    name: str,
    series: Mapping[str, list[tuple[float, float]]],
    in_flight: list[tuple[float, float]],
    phases: list[dict[str, Any]],
) -> Spec:
    values = [
        {"series": SERIES_TITLES.get(key, key), "t_s": _num(t, 5), "value": _num(v, 5)}
        for key, points in series.items()
        for t, v in points
    ]
    values += [
        {"series": SERIES_TITLES["client_in_flight"], "t_s": _num(t, 5), "value": v}
        for t, v in in_flight
    ]
    rows = [SERIES_TITLES[k] for k in SERIES_TITLES if k in series or k == "client_in_flight"]
    group = {
        SERIES_TITLES["num_requests_running"]: "requests",
        SERIES_TITLES["num_requests_waiting"]: "requests",
        SERIES_TITLES["client_in_flight"]: "requests",
        SERIES_TITLES["kv_cache_usage_perc"]: "KV-cache usage (0-1)",
        SERIES_TITLES["batch_tokens"]: "tokens per engine step",
    }
    for row in values:
        label = str(row["series"])
        row["panel"] = group.get(label, label)
    panels = list(dict.fromkeys(group[r] for r in rows if r in group))
    return {
        "title": {
            "text": f"Server metrics over time: {name}",
            "subtitle": [
                "scraped from the instance's /metrics (vLLM names), on the client timeline's axis",
                "in flight (client) = requests sent and not yet answered, from the records",
            ],
            "anchor": "start",
        },
        "data": {"values": values},
        "facet": {"row": {"field": "panel", "type": "nominal", "title": None, "sort": panels}},
        "resolve": {"scale": {"y": "independent"}},
        "spec": {
            "width": WIDTH * 2,
            "height": ROW_HEIGHT,
            "layer": [
                {
                    "mark": {"type": "line", "interpolate": "step-after", "point": False},
                    "encoding": {
                        "x": {
                            "field": "t_s",
                            "type": "quantitative",
                            "title": "Time since the run start (s)",
                        },
                        "y": {"field": "value", "type": "quantitative", "title": None},
                        "color": {"field": "series", "type": "nominal", "title": "Series"},
                        "tooltip": [
                            {"field": "series"},
                            {"field": "t_s", "format": ".2f"},
                            {"field": "value", "format": ".4~g"},
                        ],
                    },
                }
            ],
        },
        "_phases": phases,
    }


def _with_phases(spec: Spec) -> Spec:
    """Phases are kept out of the facet data: drawn as rules in the subtitle only (a faceted
    spec cannot layer another data source), so they move to the subtitle text."""
    phases = spec.pop("_phases", [])
    if phases:
        listed = "; ".join(
            f"{p['phase']} {float(p['start_s']):.1f}-{float(p['end_s']):.1f} s" for p in phases
        )
        spec["title"]["subtitle"] = [*spec["title"]["subtitle"][:1], f"phases: {listed}"]
    return spec


def server_distributions(
    name: str,
    samples: pa.Table,
    records: pa.Table,
    instance: str,
    windows: list[dict[str, Any]],
) -> Spec | None:
    model = _model(records, instance)
    values = []
    series = ServerSeries(samples, instance, ["vllm:num_requests_running"])
    mine = records.filter(pc.equal(records["instance"], instance))
    for window in windows:
        bracket = series.bracket(float(window["start_s"]), float(window["end_s"]))
        if bracket is None:
            continue
        phase_records = mine.filter(pc.equal(mine["phase"], window["phase"]))
        client = _client_values(phase_records)
        for figure, family in DISTRIBUTIONS.items():
            buckets = bucket_distribution(samples, instance, family, *bracket, model)
            if not buckets:
                continue
            bounds = [b for b, _ in buckets]
            server_total = sum(c for _, c in buckets) or 1.0
            labels = [_bucket_label(bounds, i) for i in range(len(bounds))]
            for label, (_, count) in zip(labels, buckets, strict=True):
                values.append(
                    {
                        "phase": window["phase"],
                        "figure": figure,
                        "bucket": label,
                        "side": "server",
                        "fraction": _num(count / server_total, 4),
                    }
                )
            if client.get(figure):
                counts = client_distribution(client[figure], bounds)
                total = sum(counts) or 1.0
                for label, count in zip(labels, counts, strict=True):
                    values.append(
                        {
                            "phase": window["phase"],
                            "figure": figure,
                            "bucket": label,
                            "side": "client",
                            "fraction": _num(count / total, 4),
                        }
                    )
    values = _trimmed(values)
    if not values:
        return None
    return {
        "title": {
            "text": f"Server and client distributions: {name}",
            "subtitle": [
                "server: the histogram's bucket counts observed in the phase (vLLM buckets);"
                " client: its records' values counted into the same buckets",
                "queue_s: the server's alone (the client cannot see queueing)",
            ],
            "anchor": "start",
        },
        "data": {"values": values},
        "facet": {
            "row": {"field": "phase", "type": "nominal", "title": "Phase"},
            "column": {"field": "figure", "type": "nominal", "title": None},
        },
        "resolve": {"scale": {"x": "independent"}},
        "spec": {
            "width": 220,
            "height": 140,
            "mark": {"type": "bar", "binSpacing": 0},
            "encoding": {
                "x": {
                    "field": "bucket",
                    "type": "ordinal",
                    "title": "bucket (upper bound, s)",
                    "sort": None,
                },
                "y": {
                    "field": "fraction",
                    "type": "quantitative",
                    "title": "fraction",
                    "stack": None,
                },
                "opacity": {"value": 0.55},
                "color": {"field": "side", "type": "nominal", "title": "Side"},
                "tooltip": [{"field": "side"}, {"field": "bucket"}, {"field": "fraction"}],
            },
        },
    }


def _trimmed(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per phase and figure, only the buckets from the first to the last holding anything on
    either side (vLLM's buckets span 1 ms to hours: most are empty)."""
    order: dict[tuple[Any, Any], list[Any]] = {}
    used: dict[tuple[Any, Any], set[Any]] = {}
    for row in values:
        key = (row["phase"], row["figure"])
        buckets = order.setdefault(key, [])
        if row["bucket"] not in buckets:
            buckets.append(row["bucket"])
        if row["fraction"]:
            used.setdefault(key, set()).add(row["bucket"])
    keep: dict[tuple[Any, Any], set[Any]] = {}
    for key, buckets in order.items():
        marked = [i for i, b in enumerate(buckets) if b in used.get(key, set())]
        if marked:
            keep[key] = set(buckets[marked[0] : marked[-1] + 1])
    return [r for r in values if r["bucket"] in keep.get((r["phase"], r["figure"]), set())]


def _bucket_label(bounds: list[float], index: int) -> str:
    bound = bounds[index]
    return "+Inf" if math.isinf(bound) else f"{bound:g}"


def _client_values(records: pa.Table) -> dict[str, list[float]]:
    ok = records.filter(pc.equal(records["status"], "ok"))
    sent = ok["t_sent_s"].to_numpy(zero_copy_only=False).astype(float)
    first = ok["t_first_token_s"].to_numpy(zero_copy_only=False).astype(float)
    end = ok["t_end_s"].to_numpy(zero_copy_only=False).astype(float)
    ttft = first - sent
    e2e = end - sent
    itl: list[float] = []
    if "chunk_offsets_s" in ok.column_names:
        for offsets, tokens in zip(
            ok["chunk_offsets_s"].to_pylist(), ok["chunk_tokens"].to_pylist(), strict=True
        ):
            for k in range(1, len(offsets or [])):
                itl.append((offsets[k] - offsets[k - 1]) / max(1, tokens[k]))
    return {
        "ttft_s": [float(v) for v in ttft if math.isfinite(v)],
        "e2e_s": [float(v) for v in e2e if math.isfinite(v)],
        "itl_s": itl,
    }


def decomposition_chart(summary: Mapping[str, Any]) -> Spec | None:
    entries = (summary.get("server_metrics") or {}).get("decomposition") or []
    values = []
    for entry in entries:
        label = f"{entry['instance']} / {entry['phase']}"
        for part in PARTS:
            key = f"{part.removesuffix('_s')}_mean_s"
            values.append(
                {"request": label, "part": part.removesuffix("_s"), "seconds": _num(entry[key], 5)}
            )
    if not values:
        return None
    return {
        "title": {
            "text": "Where the time of a request went",
            "subtitle": "mean per request joined to its server span (by X-Request-Id): queue,"
            " prefill and decode as the server measured them; other = client E2E - their sum",
            "anchor": "start",
        },
        "width": WIDTH,
        "data": {"values": values},
        "mark": "bar",
        "encoding": {
            "y": {"field": "request", "type": "nominal", "title": None},
            "x": {
                "field": "seconds",
                "type": "quantitative",
                "stack": "zero",
                "title": "mean time (s)",
            },
            "color": {
                "field": "part",
                "type": "nominal",
                "title": "Part",
                "sort": ["queue", "prefill", "decode", "other"],
            },
            "order": {"field": "part"},
            "tooltip": [{"field": "request"}, {"field": "part"}, {"field": "seconds"}],
        },
    }


def controller_evidence(
    deployments: pa.Table, prometheus: pa.Table, scraped: pa.Table, verdict: list[str]
) -> Spec | None:
    """Created/ready curves above the controllers' work-queue depth and reconcile time."""
    values: list[dict[str, Any]] = []
    for name, title in CONTROLLER_NAMES.items():
        table = (
            prometheus.filter(pc.equal(prometheus["name"], name))
            if prometheus.num_rows
            else prometheus
        )
        for t, labels, v in zip(
            table["t_s"].to_pylist(), table["labels"].to_pylist(), table["value"].to_pylist(),
            strict=True,
        ):  # fmt: skip
            if v is None or not math.isfinite(v):
                continue
            who = json.loads(labels)
            series = who.get("controller") or who.get("name") or name
            values.append(
                {"panel": title, "series": series, "t_s": _num(t, 5), "value": _num(v, 5)}
            )
    if not values and scraped.num_rows:  # the controller scraped directly: its raw gauges
        table = scraped.filter(pc.equal(scraped["name"], "workqueue_depth"))
        for t, labels, v in zip(
            table["t_s"].to_pylist(), table["labels"].to_pylist(), table["value"].to_pylist(),
            strict=True,
        ):  # fmt: skip
            series = json.loads(labels).get("name") or "workqueue"
            values.append({"panel": CONTROLLER_NAMES["workqueue_depth"], "series": series,
                           "t_s": _num(t, 5), "value": v})  # fmt: skip
    if not values:
        return None
    points = deployment_points(deployments)
    for curve, times in (
        ("created", points.created_s),
        ("ready", points.ready_s[points.ready_mask]),
    ):
        for count, t in enumerate(np.sort(times[np.isfinite(times)]), start=1):
            values.append({"panel": "instances", "series": curve, "t_s": _num(float(t), 5),
                           "value": count})  # fmt: skip
    return {
        "title": {
            "text": "Controller evidence: created and ready instances against the controllers",
            "subtitle": [
                "work-queue depth and reconcile time from the controllers' metrics"
                " (controller-runtime names), one time axis (time since the run start)",
                *verdict,
            ],
            "anchor": "start",
        },
        "data": {"values": values},
        "facet": {
            "row": {
                "field": "panel",
                "type": "nominal",
                "title": None,
                "sort": ["instances", *CONTROLLER_NAMES.values()],
            }
        },
        "resolve": {"scale": {"y": "independent"}},
        "spec": {
            "width": WIDTH * 2,
            "height": ROW_HEIGHT,
            "mark": {"type": "line", "interpolate": "step-after"},
            "encoding": {
                "x": {
                    "field": "t_s",
                    "type": "quantitative",
                    "title": "Time since the run start (s)",
                },
                "y": {"field": "value", "type": "quantitative", "title": None},
                "color": {"field": "series", "type": "nominal", "title": "Series"},
                "tooltip": [{"field": "series"}, {"field": "t_s"}, {"field": "value"}],
            },
        },
    }


def server_charts(
    summary: Mapping[str, Any],
    run_info: Mapping[str, Any],
    records: pa.Table,
    samples: pa.Table,
    prometheus: pa.Table,
    deployments: pa.Table,
    decomposition: pa.Table | None,
) -> dict[str, Spec]:
    """Every server chart the run's data allows (names in the module docstring)."""
    del decomposition  # the summary holds what the chart draws
    specs: dict[str, Spec] = {}
    gauges = by_instance(samples, GAUGES)  # instances that expose vLLM's gauges
    vllm = sorted(gauges)
    if 0 < len(vllm) <= PER_INSTANCE_LIMIT:
        for instance in vllm:
            series = gauge_series(samples, instance, _model(records, instance))
            if not series:
                continue
            times = sorted({t for points in series.values() for t, _ in points})
            flight = list(zip(times, _in_flight(records, instance, times), strict=True))
            key = _safe(instance)
            phases = _phases(run_info, instance)
            specs[f"server_timeline_{key}"] = _with_phases(
                server_timeline(instance, series, flight, phases)
            )
            dist = server_distributions(instance, samples, records, instance, phases)
            if dist is not None:
                specs[f"server_distributions_{key}"] = dist
    elif vllm:
        specs["server_timeline"] = _with_phases(_summed_timeline(gauges, records, vllm))
    chart = decomposition_chart(summary)
    if chart is not None:
        specs["request_decomposition"] = chart
    if run_info.get("kind") == "many-model" and deployments.num_rows:
        saturation = (summary.get("deployments") or {}).get("saturation") or {}
        verdict = [f"saturation verdict: {saturation.get('verdict')}"] if saturation else []
        verdict += [r for r in saturation.get("reasons") or [] if r.startswith("controller")]
        evidence = controller_evidence(deployments, prometheus, samples, verdict)
        if evidence is not None:
            specs["controller_evidence"] = evidence
    return specs


def _summed_timeline(parts: dict[str, pa.Table], records: pa.Table, instances: list[str]) -> Spec:
    """Running and waiting summed over instances, per second (each instance's last value)."""
    summed: dict[str, dict[int, float]] = {}
    for instance in instances:
        series = gauge_series(parts[instance], instance, None)
        for key in ("num_requests_running", "num_requests_waiting"):
            last: dict[int, float] = {}
            for t, v in series.get(key, []):
                last[int(t)] = v
            bucket = summed.setdefault(key, {})
            for second, v in last.items():
                bucket[second] = bucket.get(second, 0.0) + v
    series_out = {k: sorted((float(s), v) for s, v in d.items()) for k, d in summed.items()}
    times = sorted({t for points in series_out.values() for t, _ in points})
    flight = list(zip(times, _in_flight(records, None, times), strict=True))
    spec = server_timeline(f"{len(instances)} instances, summed", series_out, flight, [])
    return spec


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)

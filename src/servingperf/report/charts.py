"""Chart specs: the seed's single-model charts as Vega-Lite specs, built as plain dicts.

Terms. A *spec* is a JSON-compatible Vega-Lite dict with its data inline (``data.values``), so one
spec alone is enough to draw the chart, in the browser (``report.html``) or to PNG (vl-convert).
Builders are pure functions of the run's ``summary.json`` dict and its per-request figures
(:mod:`servingperf.report.points`). Charts that draw one point per request carry at most
``POINT_CAP`` points, a deterministic sample announced in the subtitle; the distribution chart's
boxes are computed from every value (:mod:`servingperf.report.boxstats`), never from a sample.
Titles and units come from :data:`servingperf.model.metrics.METRICS`.

The charts (names are the PNG file stems):

- ``latency_per_token``: NTPOT of each measured request against its requested output tokens,
  one colour per model (the seed's "Details of the latency per token of the load test answers");
- ``per_token_distribution``: box plots of TPOT and of NTPOT per model;
- ``throughput``: output token throughput per instance, from the summary;
- ``mean_latency``: mean E2E latency per instance, from the summary;
- ``timeline``: every request at its send time against its elapsed time, colour by instance,
  shape by status, zoomable, with the measurement windows shaded;
- ``by_turn`` / ``by_model`` (conversations / several model ids named, e.g. LoRA adapters): the
  median TTFT and E2E latency per turn / model id (:mod:`servingperf.report.breakdowns`);
- ``sweep`` (sweep runs only, first): completed against offered rate per stage, with the knee and
  the highest rate meeting the SLOs marked (:mod:`servingperf.report.sweep_charts`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from servingperf.model.metrics import METRICS
from servingperf.report.boxstats import BoxStats, box_stats
from servingperf.report.breakdowns import breakdown_charts
from servingperf.report.points import (
    BoolArray,
    FloatArray,
    IntArray,
    RequestFigures,
    request_figures,
    sample_indices,
)
from servingperf.report.sweep_charts import sweep_charts
from servingperf.report.timeline import model_lookup, points_layer, timeline_points
from servingperf.report.vega import (
    ZOOM,
    axis_title,
    base,
    box_fields,
    colour,
    compact,
    num,
    sampled,
)

Spec = dict[str, Any]

POINT_CAP = 5000
WIDTH = 560
HEIGHT = 300
PANEL_WIDTH = 260


def _model_of(figures: RequestFigures, summary: Mapping[str, Any]) -> dict[str, str]:
    """Instance -> model, so per-request rows need not repeat the model name."""
    mapping = {
        str(inst.get("instance", name)): str(inst.get("model"))
        for name, inst in _instances(summary).items()
        if inst.get("model") is not None
    }
    for instance, model in zip(figures.instance, figures.model, strict=True):
        mapping.setdefault(str(instance), str(model))
    return mapping


def _count(value: float) -> int | None:
    return int(value) if math.isfinite(value) else None


def _instances(summary: Mapping[str, Any]) -> Mapping[str, Any]:
    instances: Mapping[str, Any] = summary.get("instances") or {}
    return instances


def latency_per_token(
    figures: RequestFigures,
    model_of: Mapping[str, str],
    models: Sequence[str],
    cap: int = POINT_CAP,
) -> Spec:
    """NTPOT against requested output tokens, one point per measured request, coloured by model.

    When no request named an output length (lengths left to the model or the dataset), the x axis
    falls back to the output tokens actually received and says so.
    """
    has_x = np.isfinite(figures.requested_output_tokens)
    eligible: BoolArray = figures.measured & np.isfinite(figures.ntpot_s)
    if bool((eligible & has_x).any()):
        x_values: FloatArray = figures.requested_output_tokens
        x_title = f"Requested output tokens ({METRICS['output_tokens'].unit})"
        candidates = eligible & has_x
    else:
        x_values = figures.output_tokens
        x_title = f"{axis_title('output_tokens')}, none requested"
        candidates = eligible
    rows: IntArray = sample_indices(candidates, cap)
    values = [
        compact(
            {
                "request_id": str(figures.request_id[i]),
                "instance": str(figures.instance[i]),
                "x": num(x_values[i], 4),
                "ntpot_s": num(figures.ntpot_s[i], 4),
                "output_tokens": _count(figures.output_tokens[i]),
            }
        )
        for i in rows
    ]
    total = int(candidates.sum())
    ntpot = axis_title("ntpot_s")
    return base(
        "Details of the latency per token of the load test answers",
        [
            sampled(len(values), total, "measured requests"),
            f"{METRICS['ntpot_s'].title}: {METRICS['ntpot_s'].definition}",
        ],
        width=WIDTH,
        height=HEIGHT,
        data={"values": values},
        transform=[model_lookup(model_of)],
        params=[ZOOM],
        mark={"type": "point", "filled": True, "opacity": 0.55, "size": 30},
        encoding={
            "x": {"field": "x", "type": "quantitative", "title": x_title},
            "y": {"field": "ntpot_s", "type": "quantitative", "title": ntpot},
            "color": colour("model", models, "Model"),
            "tooltip": [
                {"field": "request_id", "title": "Request"},
                {"field": "instance", "title": "Instance"},
                {"field": "model", "title": "Model"},
                {"field": "x", "title": x_title},
                {"field": "output_tokens", "title": axis_title("output_tokens")},
                {"field": "ntpot_s", "title": ntpot, "format": ".4~g"},
            ],
        },
    )


def _box_row(model: str, stats: BoxStats) -> dict[str, Any]:
    return {"model": model, **box_fields(stats)}


def _box_panel(figures: RequestFigures, metric: str, models: Sequence[str]) -> Spec:
    values: FloatArray = getattr(figures, metric)
    rows = []
    for model in models:
        selected = figures.measured & (figures.model == model)
        stats = box_stats(values[selected])
        if stats is not None:
            rows.append(_box_row(model, stats))
    unit_title = axis_title(metric)
    x = {
        "field": "model",
        "type": "nominal",
        "title": "Model",
        "scale": {"domain": list(models)},
        "axis": {"labelAngle": -30, "labelLimit": 160},
    }
    tooltip = [{"field": "model", "title": "Model"}, {"field": "n", "title": "n"}] + [
        {"field": key, "title": f"{label} ({METRICS[metric].unit})", "format": ".4~g"}
        for key, label in (
            ("min", "min"),
            ("q1", "Q1"),
            ("median", "median"),
            ("mean", "mean"),
            ("q3", "Q3"),
            ("p90", "p90"),
            ("p99", "p99"),
            ("max", "max"),
        )
    ]
    tooltip.append({"field": "outliers", "title": "beyond whiskers"})
    color = colour("model", models, "Model") | {"legend": None}
    return {
        "title": {"text": METRICS[metric].title, "subtitle": METRICS[metric].definition},
        "width": PANEL_WIDTH,
        "height": HEIGHT,
        "data": {"values": rows},
        "encoding": {"x": x},
        "layer": [
            {
                "mark": {"type": "rule"},
                "encoding": {
                    "y": {"field": "whisker_low", "type": "quantitative", "title": unit_title},
                    "y2": {"field": "whisker_high"},
                },
            },
            {
                "mark": {"type": "bar", "size": 28},
                "encoding": {
                    "y": {"field": "q1", "type": "quantitative"},
                    "y2": {"field": "q3"},
                    "color": color,
                    "tooltip": tooltip,
                },
            },
            {
                "mark": {"type": "tick", "color": "white", "size": 28, "thickness": 2},
                "encoding": {"y": {"field": "median", "type": "quantitative"}},
            },
        ],
    }


def per_token_distribution(figures: RequestFigures, models: Sequence[str]) -> Spec:
    """TPOT and NTPOT boxes per model, from every measured request (no sampling)."""
    panels = [_box_panel(figures, metric, models) for metric in ("tpot_s", "ntpot_s")]
    counts = ", ".join(
        f"{METRICS[m].title}: n={int((figures.measured & np.isfinite(getattr(figures, m))).sum()):,}"
        for m in ("tpot_s", "ntpot_s")
    )
    return base(
        "Distribution of the latency per token",
        [
            f"every measured request ({counts})",
            "box: Q1 to Q3, white tick: median, whiskers: 1.5 IQR (values beyond: in the tooltip)",
        ],
        hconcat=panels,
    )


def _summary_bars(
    rows: list[dict[str, Any]], value_title: str, title: str, subtitle: str, models: Sequence[str]
) -> Spec:
    tooltip: list[dict[str, Any]] = [
        {"field": "instance", "title": "Instance"},
        {"field": "model", "title": "Model"},
        {"field": "phase", "title": "Phase"},
        {"field": "value", "title": value_title, "format": ".4~g"},
    ]
    extra_keys = sorted({k for row in rows for k in row} - {"instance", "model", "phase", "value"})
    tooltip += [{"field": key, "title": key, "format": ".4~g"} for key in extra_keys]
    y = {"field": "instance", "type": "nominal", "title": "Instance", "sort": None}
    return base(
        title,
        subtitle,
        width=WIDTH,
        height={"step": 28},
        data={"values": rows},
        encoding={"y": y, "x": {"field": "value", "type": "quantitative", "title": value_title}},
        layer=[
            {
                "mark": {"type": "bar"},
                "encoding": {"color": colour("model", models, "Model"), "tooltip": tooltip},
            },
            {
                "mark": {"type": "text", "align": "left", "dx": 4},
                "encoding": {"text": {"field": "value", "type": "quantitative", "format": ".4~g"}},
            },
        ],
    )


def throughput(summary: Mapping[str, Any], models: Sequence[str]) -> Spec:
    """Output tokens/s per instance over its measurement window (summary ``throughput``)."""
    rows = []
    for name, inst in _instances(summary).items():
        tput = inst.get("throughput") or {}
        if tput.get("output_tps") is None:
            continue
        rows.append(
            {
                "instance": str(name),
                "model": str(inst.get("model")),
                "phase": str(inst.get("phase")),
                "value": num(tput["output_tps"]),
                "request_rps": num(tput.get("request_rps")),
                "window_s": num((inst.get("window") or {}).get("length_s")),
            }
        )
    metric = METRICS["output_throughput_tps"]
    return _summary_bars(
        rows,
        axis_title("output_throughput_tps"),
        f"{metric.title} per instance",
        metric.definition,
        models,
    )


def mean_latency(summary: Mapping[str, Any], models: Sequence[str]) -> Spec:
    """Mean E2E latency per instance (summary ``stats.e2e_s``), percentiles in the tooltip."""
    rows = []
    for name, inst in _instances(summary).items():
        stats = (inst.get("stats") or {}).get("e2e_s")
        if not stats:
            continue
        rows.append(
            {
                "instance": str(name),
                "model": str(inst.get("model")),
                "phase": str(inst.get("phase")),
                "value": num(stats.get("mean")),
                "n": stats.get("n"),
                "p50": num(stats.get("p50")),
                "p90": num(stats.get("p90")),
                "p99": num(stats.get("p99")),
            }
        )
    metric = METRICS["e2e_s"]
    return _summary_bars(
        rows,
        f"Mean {metric.title[0].lower()}{metric.title[1:]} ({metric.unit})",
        f"Average {metric.title.lower()} per instance",
        f"{metric.title}: {metric.definition}; mean over measured requests",
        models,
    )


def timeline(
    figures: RequestFigures,
    summary: Mapping[str, Any],
    model_of: Mapping[str, str],
    cap: int = POINT_CAP,
) -> Spec:
    """Every request at its send time against its elapsed time, measurement windows shaded:
    zoom, hover to the request (:mod:`servingperf.report.timeline`)."""
    points = timeline_points(figures, cap)
    # Ordered by model, so that with one instance per model the colours match the model charts'.
    instances = sorted(model_of, key=lambda name: (model_of[name], name))
    windows = sorted(
        {
            (num(inst["window"]["start_s"]), num(inst["window"]["end_s"]))
            for inst in _instances(summary).values()
            if inst.get("window")
        },
        key=lambda w: (w[0] or 0.0, w[1] or 0.0),
    )
    notes = [
        *points.notes(),
        "shaded: measurement windows; drag to pan, scroll to zoom, hover for the request",
    ]
    sent_title = "Time since the run start, at send (s)"
    return base(
        "Timeline of the requests",
        notes,
        width=WIDTH * 2,
        height=HEIGHT,
        layer=[
            {
                "data": {"values": [{"start_s": a, "end_s": b} for a, b in windows]},
                "mark": {"type": "rect", "color": "#888", "opacity": 0.1},
                "encoding": {
                    "x": {"field": "start_s", "type": "quantitative", "title": sent_title},
                    "x2": {"field": "end_s"},
                    "tooltip": [
                        {"field": "start_s", "title": "Measurement window from (s)"},
                        {"field": "end_s", "title": "to (s)"},
                    ],
                },
            },
            points_layer(points, x_title=sent_title, instances=instances, model_of=model_of),
        ],
    )


def chart_specs(
    summary: Mapping[str, Any], records: pa.Table, *, cap: int = POINT_CAP
) -> dict[str, Spec]:
    """Every chart of a single-model run, by name (the PNG file stem), in page order."""
    figures = request_figures(records, summary)
    model_of = _model_of(figures, summary)
    models = sorted(set(model_of.values()))
    return {
        **sweep_charts(summary),
        "latency_per_token": latency_per_token(figures, model_of, models, cap),
        "per_token_distribution": per_token_distribution(figures, models),
        "throughput": throughput(summary, models),
        "mean_latency": mean_latency(summary, models),
        **breakdown_charts(summary),
        "timeline": timeline(figures, summary, model_of, cap),
    }

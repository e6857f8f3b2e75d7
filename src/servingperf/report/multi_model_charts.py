"""Chart specs of a multi-model run: Vega-Lite v5 dicts with their data inline.

The charts (names are the PNG file stems), from the request records and the summary's
``multi_model`` part (:func:`servingperf.analysis.multi_model.summarize_multi_model`):

- ``multi_model_timeline``: the seed's timeline: every request a point at its send time against
  its elapsed time, one colour per instance, the concurrent and sequential phases shaded and
  labelled, each sequential slot named after its instance; hover shows the request id, so every
  point leads to its record (a deterministic sample past ``POINT_CAP`` points, announced);
- ``multi_model_throughput`` and ``multi_model_latency``: per instance, concurrent against
  sequential output token throughput and mean E2E latency, grouped bars with the confidence
  interval of each value as error bars, the ratio and verdict in the tooltip;
- ``multi_model_ratios``: every figure's ratio concurrent / sequential with its interval, per
  instance, against no change (1) and the saturation threshold, coloured by the figure's verdict.

Time since the run start is in seconds, or in minutes when the run lasted more than
``MINUTES_AFTER_S``; axis titles say which.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from servingperf.model.metrics import METRICS
from servingperf.report.charts import POINT_CAP
from servingperf.report.points import request_figures
from servingperf.report.timeline import points_layer, timeline_points
from servingperf.report.vega import base, num, time_unit

Spec = dict[str, Any]

WIDTH = 560
HEIGHT = 300
PHASES = ("concurrent", "sequential")
PHASE_COLORS = {"concurrent": "#4c78a8", "sequential": "#f58518"}  # comparison bars
BAND_COLORS = {"concurrent": "#7f7f7f", "sequential": "#c9b27c"}  # timeline shading: not an
# instance colour (instances take the default categorical scheme)
VERDICT_COLORS = {
    "degraded": "#d62728",
    "not degraded": "#2ca02c",
    "inconclusive": "#7f7f7f",
    "not applicable": "#c7c7c7",
}


def _part(summary: Mapping[str, Any]) -> Mapping[str, Any]:
    """The multi-model summary, given either the whole summary.json or its ``multi_model`` part."""
    part = summary.get("multi_model")
    if isinstance(part, Mapping):
        return part
    return summary if "rules" in summary else {}  # a summary without its multi-model part


def _instances(part: Mapping[str, Any]) -> Mapping[str, Any]:
    instances: Mapping[str, Any] = part.get("instances") or {}
    return instances


def _verdict_line(part: Mapping[str, Any]) -> str:
    verdict = part.get("verdict")
    if verdict is None:
        return "no verdict"
    return f"verdict: {verdict} ({part.get('reason', '')})"


def _instance_order(part: Mapping[str, Any], records: pa.Table) -> list[str]:
    order = [str(name) for name in _instances(part)]
    for name in records.column("instance").unique().to_pylist():
        if name is not None and str(name) not in order:
            order.append(str(name))
    return order


def _phase_bands(part: Mapping[str, Any], divisor: float) -> list[dict[str, Any]]:
    """One band per phase span, plus one per instance's sequential slot (labelled by instance)."""
    bands: list[dict[str, Any]] = []
    for phase in PHASES:
        span = (part.get("phases") or {}).get(phase)
        if span and span.get("start_s") is not None and span.get("end_s") is not None:
            bands.append(
                {
                    "kind": "phase",
                    "phase": phase,
                    "label": f"{phase} phase",
                    "start": num(span["start_s"] / divisor),
                    "end": num(span["end_s"] / divisor),
                }
            )
    for name, entry in _instances(part).items():
        window = (entry.get("phases") or {}).get("sequential")
        end = None if not window else window.get("end_s") or window.get("measure_end_s")
        if window and end is not None:
            bands.append(
                {
                    "kind": "slot",
                    "phase": "sequential",
                    "label": str(name),
                    "start": num(window["start_s"] / divisor),
                    "end": num(end / divisor),
                }
            )
    return bands


def _band_labels(bands: list[dict[str, Any]], y_px: int, weight: str) -> Spec:
    """Text at the top left of each band, ``y_px`` below the top of the plot."""
    return {
        "data": {"values": bands},
        "mark": {
            "type": "text",
            "align": "left",
            "baseline": "top",
            "dx": 3,
            "dy": 3,
            "fontSize": 10,
            "fontWeight": weight,
        },
        "encoding": {
            "x": {"field": "start", "type": "quantitative"},
            "y": {"value": y_px},
            "text": {"field": "label"},
        },
    }


def timeline(summary: Mapping[str, Any], records: pa.Table, cap: int = POINT_CAP) -> Spec:
    """Every request at its send time against its elapsed time, phases shaded (see module)."""
    part = _part(summary)
    figures = request_figures(records, {})  # the timeline draws every request, measured or not
    phase = np.asarray(records.column("phase").to_pylist(), dtype=object)
    sent = figures.t_sent_s[np.isfinite(figures.t_sent_s)]
    span = float(sent.max()) if sent.size else 0.0
    for phase_span in (part.get("phases") or {}).values():
        if phase_span and phase_span.get("end_s") is not None:
            span = max(span, float(phase_span["end_s"]))
    divisor, unit = time_unit(span)
    points = timeline_points(
        figures, cap, divisor=divisor, extra=lambda i: {"phase": str(phase[i])}
    )
    notes = [
        *points.notes(),
        "one colour per instance; shaded: the phases (sequential: one slot per instance);"
        " hover a point for its request id",
        _verdict_line(part),
    ]
    x_title = f"Time since the run start, at send ({unit})"
    bands = _phase_bands(part, divisor)
    band_color = {
        "field": "phase",
        "type": "nominal",
        "title": "Phase",
        "scale": {"domain": list(PHASES), "range": [BAND_COLORS[p] for p in PHASES]},
    }
    model_of = {str(i): str(m) for i, m in zip(figures.instance, figures.model, strict=True)}
    return base(
        "Timeline of the multi-model test",
        notes,
        width=WIDTH * 2,
        height=HEIGHT,
        resolve={"scale": {"color": "independent"}},
        layer=[
            {
                "data": {"values": [b for b in bands if b["kind"] == "phase"]},
                "mark": {"type": "rect", "opacity": 0.15},
                "encoding": {
                    "x": {"field": "start", "type": "quantitative", "title": x_title},
                    "x2": {"field": "end"},
                    "color": band_color,
                    "tooltip": [
                        {"field": "label", "title": "Phase"},
                        {"field": "start", "title": f"from ({unit})", "format": ".2f"},
                        {"field": "end", "title": f"to ({unit})", "format": ".2f"},
                    ],
                },
            },
            {
                "data": {"values": [b for b in bands if b["kind"] == "slot"]},
                "mark": {"type": "rule", "strokeDash": [3, 3], "color": "#999"},
                "encoding": {"x": {"field": "start", "type": "quantitative"}},
            },
            _band_labels([b for b in bands if b["kind"] == "phase"], 0, "bold"),
            _band_labels([b for b in bands if b["kind"] == "slot"], 16, "normal"),
            points_layer(
                points,
                x_title=x_title,
                instances=_instance_order(part, records),
                model_of=model_of,
                extra_tooltip=[{"field": "phase", "title": "Phase"}],
            ),
        ],
    )


def _comparison_rows(part: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name, entry in _instances(part).items():
        figure = (entry.get("figures") or {}).get(key)
        if not figure:
            continue
        for phase in PHASES:
            value = figure.get(phase)
            if value is None:
                continue
            ci = figure.get(f"{phase}_ci") or [None, None]
            ratio_ci = figure.get("ratio_ci") or [None, None]
            rows.append(
                {
                    "instance": str(name),
                    "model": entry.get("model"),
                    "phase": phase,
                    "value": num(value),
                    "ci_low": num(ci[0]),
                    "ci_high": num(ci[1]),
                    "n": figure.get(f"n_{phase}"),
                    "ratio": num(figure.get("ratio"), 4),
                    "ratio_ci": (
                        f"[{ratio_ci[0]:.3f}, {ratio_ci[1]:.3f}]" if None not in ratio_ci else "—"
                    ),
                    "figure_verdict": figure.get("verdict"),
                    "instance_verdict": entry.get("verdict"),
                }
            )
    return rows


def _grouped_bars(
    part: Mapping[str, Any], key: str, metric: str, title: str, value_title: str
) -> Spec:
    rows = _comparison_rows(part, key)
    rules = part.get("rules") or {}
    confidence = rules.get("confidence")
    ci_text = f"{confidence:.0%} bootstrap interval" if confidence else "bootstrap interval"
    x = {
        "field": "instance",
        "type": "nominal",
        "title": "Instance",
        "sort": None,
        "axis": {"labelAngle": -30, "labelLimit": 160},
    }
    color = {
        "field": "phase",
        "type": "nominal",
        "title": "Phase",
        "scale": {"domain": list(PHASES), "range": [PHASE_COLORS[p] for p in PHASES]},
    }
    offset = {"field": "phase", "type": "nominal", "sort": list(PHASES)}
    tooltip = [
        {"field": "instance", "title": "Instance"},
        {"field": "model", "title": "Model"},
        {"field": "phase", "title": "Phase"},
        {"field": "value", "title": value_title, "format": ".4~g"},
        {"field": "ci_low", "title": "interval from", "format": ".4~g"},
        {"field": "ci_high", "title": "interval to", "format": ".4~g"},
        {"field": "n", "title": "samples"},
        {"field": "ratio", "title": "ratio concurrent / sequential", "format": ".3f"},
        {"field": "ratio_ci", "title": "interval of the ratio"},
        {"field": "figure_verdict", "title": "this figure"},
        {"field": "instance_verdict", "title": "instance verdict"},
    ]
    return base(
        title,
        [
            f"{METRICS[metric].title}: {METRICS[metric].definition}",
            f"bars: concurrent and sequential values; error bars: their {ci_text}",
            _verdict_line(part),
        ],
        width={"step": 36},
        height=HEIGHT,
        data={"values": rows},
        encoding={"x": x, "xOffset": offset},
        layer=[
            {
                "mark": {"type": "bar"},
                "encoding": {
                    "y": {"field": "value", "type": "quantitative", "title": value_title},
                    "color": color,
                    "tooltip": tooltip,
                },
            },
            {
                "mark": {"type": "rule", "color": "black"},
                "encoding": {
                    "xOffset": offset,
                    "y": {"field": "ci_low", "type": "quantitative", "title": value_title},
                    "y2": {"field": "ci_high"},
                    "tooltip": tooltip,
                },
            },
            *(
                {
                    "mark": {"type": "tick", "color": "black", "orient": "horizontal", "size": 10},
                    "encoding": {
                        "xOffset": offset,
                        "y": {"field": end, "type": "quantitative", "title": value_title},
                    },
                }
                for end in ("ci_low", "ci_high")
            ),
        ],
    )


def throughput_comparison(summary: Mapping[str, Any]) -> Spec:
    metric = METRICS["output_throughput_tps"]
    return _grouped_bars(
        _part(summary),
        "output_tps",
        metric.name,
        "Throughput, concurrent against sequential",
        f"{metric.title} ({metric.unit})",
    )


def latency_comparison(summary: Mapping[str, Any]) -> Spec:
    metric = METRICS["e2e_s"]
    return _grouped_bars(
        _part(summary),
        "e2e_mean_s",
        metric.name,
        "Average latency, concurrent against sequential",
        f"Mean {metric.title[0].lower()}{metric.title[1:]} ({metric.unit})",
    )


def _ratio_rows(part: Mapping[str, Any], threshold: float) -> list[dict[str, Any]]:
    """One row per (figure, instance) with a ratio: it, its interval, the threshold's limit."""
    rows: list[dict[str, Any]] = []
    for definition in part.get("figures") or []:
        key = str(definition["key"])
        higher = definition.get("better") == "higher"
        for name, entry in _instances(part).items():
            figure = (entry.get("figures") or {}).get(key)
            if not figure or figure.get("ratio") is None:
                continue
            ci = figure.get("ratio_ci") or [None, None]
            rows.append(
                {
                    "figure": str(definition.get("title", key)),
                    "instance": str(name),
                    "ratio": num(figure["ratio"], 5),
                    "ci_low": num(ci[0], 5),
                    "ci_high": num(ci[1], 5),
                    "limit": 1.0 - threshold if higher else 1.0 + threshold,
                    "verdict": figure.get("verdict"),
                    "reason": figure.get("reason"),
                }
            )
    return rows


def _ratio_layers() -> list[Spec]:
    """No change (1), the threshold, each interval coloured by verdict, and the ratio point."""
    y = {"field": "instance", "type": "nominal", "title": None, "sort": None}
    x_title = "Ratio concurrent / sequential"
    verdict_color = {
        "field": "verdict",
        "type": "nominal",
        "title": "Verdict of the figure",
        "scale": {"domain": list(VERDICT_COLORS), "range": list(VERDICT_COLORS.values())},
    }
    return [
        {
            "mark": {"type": "rule", "color": "#555"},
            "encoding": {"x": {"datum": 1.0, "type": "quantitative"}},
        },
        {
            "mark": {"type": "tick", "color": "#555", "strokeDash": [4, 3], "thickness": 1},
            "encoding": {"x": {"field": "limit", "type": "quantitative"}, "y": y},
        },
        {
            "mark": {"type": "rule", "strokeWidth": 2},
            "encoding": {
                "x": {
                    "field": "ci_low",
                    "type": "quantitative",
                    "title": x_title,
                    "scale": {"zero": False},
                },
                "x2": {"field": "ci_high"},
                "y": y,
                "color": verdict_color,
            },
        },
        {
            "mark": {"type": "point", "filled": True, "size": 50},
            "encoding": {
                "x": {"field": "ratio", "type": "quantitative", "title": x_title},
                "y": y,
                "color": {"field": "verdict", "type": "nominal"},
                "tooltip": [
                    {"field": "figure", "title": "Figure"},
                    {"field": "instance", "title": "Instance"},
                    {"field": "ratio", "title": "ratio", "format": ".3f"},
                    {"field": "ci_low", "title": "interval from", "format": ".3f"},
                    {"field": "ci_high", "title": "interval to", "format": ".3f"},
                    {"field": "limit", "title": "threshold at", "format": ".3f"},
                    {"field": "verdict", "title": "verdict"},
                    {"field": "reason", "title": "why"},
                ],
            },
        },
    ]


def ratios(summary: Mapping[str, Any]) -> Spec:
    """Every figure's ratio with its interval, against 1 and the threshold (one row per figure)."""
    part = _part(summary)
    rules = part.get("rules") or {}
    threshold = float(rules.get("saturation_threshold") or 0.0)
    definitions: Sequence[Mapping[str, Any]] = part.get("figures") or []
    order = [str(d.get("title", d["key"])) for d in definitions]
    header = {
        "labelAngle": 0,
        "labelOrient": "top",
        "labelAnchor": "start",
        "labelFontWeight": "bold",
    }
    return base(
        "Concurrent against sequential, figure by figure",
        [
            *_sentences(str(rules.get("statement") or "")),
            "point: ratio; bar: its interval; solid line: no change; dashed: the threshold",
            _verdict_line(part),
        ],
        data={"values": _ratio_rows(part, threshold)},
        facet={
            "row": {
                "field": "figure",
                "type": "nominal",
                "title": None,
                "sort": order,
                "header": header,
            }
        },
        spec={"width": WIDTH, "height": {"step": 18}, "layer": _ratio_layers()},
    )


def _sentences(text: str) -> list[str]:
    """A long statement as subtitle lines, split after its semicolons."""
    return [part.strip() for part in text.split(";") if part.strip()]


def multi_model_charts(summary: Mapping[str, Any], records: pa.Table) -> dict[str, Spec]:
    """Every chart of a multi-model run, by name (the PNG file stem), in page order.

    ``summary`` is the whole ``summary.json`` (its ``instances`` part also decides which requests
    count as measured) or just its ``multi_model`` part.
    """
    return {
        "multi_model_timeline": timeline(summary, records),
        "multi_model_throughput": throughput_comparison(summary),
        "multi_model_latency": latency_comparison(summary),
        "multi_model_ratios": ratios(summary),
    }

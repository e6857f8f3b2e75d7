"""Chart specs of a many-model run: Vega-Lite v5 dicts with their data inline.

The charts (names are the PNG file stems), all from ``deployments.parquet`` and the summary's
``deployments`` part (:func:`servingperf.analysis.loadtimes.summarize_deployments`):

- ``deploy_progress``: cumulative counts of created and of ready instances over time (the seed's
  "Progress of the InferenceService creation and readiness");
- ``load_time_distribution``: the empirical distribution function of the load times ("x% of the
  instances were ready in less than N s"), with the min, Q1, median, Q3, P90 and max marked;
- ``load_time_trend``: each instance's load time against its creation order, coloured by
  namespace, with the Theil-Sen fit the saturation verdict reads and its confidence band.

Time since the first creation is in seconds, or in minutes when the run lasted more than
``MINUTES_AFTER_S``; axis titles say which.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from servingperf.analysis.loadtimes import deployment_points, format_seconds
from servingperf.report.vega import base, num, time_unit

Spec = dict[str, Any]

WIDTH = 560
HEIGHT = 300
CURVE_COLORS = {"created": "#1f77b4", "ready": "#d62728"}  # the seed's blue and red
QUANTILE_MARKS = (
    ("min", "min", 0),
    ("q1", "Q1", 25),
    ("median", "median", 50),
    ("q3", "Q3", 75),
    ("p90", "P90", 90),
    ("max", "max", 100),
)


def _deployments_part(summary: Mapping[str, Any]) -> Mapping[str, Any]:
    """The deployments summary, given either the whole summary.json or its ``deployments`` part."""
    part = summary.get("deployments")
    return part if isinstance(part, Mapping) else summary


def _reference(stats: Mapping[str, Any]) -> float:
    """The value fixing the precision of the quantile labels (see ``format_seconds``)."""
    low = stats.get("min")
    return float(low) if isinstance(low, int | float) and low > 0 else float(stats.get("max", 0))


def deploy_progress(deployments: pa.Table) -> Spec:
    """Created and ready counts over time, as step curves (each event raises its curve by one)."""
    points = deployment_points(deployments)
    ready = points.ready_s[points.ready_mask]
    span = float(np.nanmax(points.ready_s)) if ready.size else 0.0
    span = max(span, float(points.created_s.max()) if len(points) else 0.0)
    divisor, unit = time_unit(span)
    values: list[dict[str, Any]] = []
    for curve, times in (("created", np.sort(points.created_s)), ("ready", np.sort(ready))):
        values.append({"curve": curve, "t": 0.0, "count": 0})
        values.extend(
            {"curve": curve, "t": num(t / divisor), "count": k + 1} for k, t in enumerate(times)
        )
    failed = len(points) - int(ready.size)
    subtitle = [
        f"{len(points)} instances created, {ready.size} ready"
        + (f", {failed} never ready" if failed else "")
        + f"; time since the first creation ({unit})",
        "The horizontal gap between the curves is the lag; a gap that widens means saturation.",
    ]
    return base(
        "Progress of the instance creation and readiness",
        subtitle,
        width=WIDTH,
        height=HEIGHT,
        data={"values": values},
        mark={"type": "line", "interpolate": "step-after", "strokeWidth": 2},
        encoding={
            "x": {
                "field": "t",
                "type": "quantitative",
                "title": f"Time since first creation ({unit})",
            },
            "y": {"field": "count", "type": "quantitative", "title": "Instances (count)"},
            "color": {
                "field": "curve",
                "type": "nominal",
                "title": "Instances",
                "scale": {"domain": list(CURVE_COLORS), "range": list(CURVE_COLORS.values())},
            },
            "tooltip": [
                {"field": "curve", "title": "Curve"},
                {"field": "t", "title": f"Time ({unit})", "format": ".3~f"},
                {"field": "count", "title": "Instances"},
            ],
        },
    )


def load_time_distribution(summary: Mapping[str, Any], deployments: pa.Table) -> Spec:
    """ECDF of load times with the seed's quantiles marked and labelled."""
    points = deployment_points(deployments)
    loads = np.sort(points.load_time_s[points.ready_mask])
    n = int(loads.size)
    ecdf = [{"load_time_s": 0.0 if n == 0 else num(float(loads[0])), "percent": 0.0}]
    ecdf.extend(
        {"load_time_s": num(float(v)), "percent": num(100.0 * (k + 1) / n, 4)}
        for k, v in enumerate(loads)
    )
    stats = _deployments_part(summary).get("load_time_s") or {}
    marks = [
        {
            "name": label,
            "percent": percent,
            "load_time_s": num(float(stats[key])),
            "text": f"{label} {format_seconds(float(stats[key]), _reference(stats))}",
        }
        for key, label, percent in QUANTILE_MARKS
        if isinstance(stats.get(key), int | float)
    ]
    factor = stats.get("max_min_factor")
    subtitle = [f"{n} instances that became ready; load time = ready - created"]
    if isinstance(factor, int | float):
        subtitle.append(f"factor max/min = {factor:.2f}")
    x = {"field": "load_time_s", "type": "quantitative", "title": "Load time (s)"}
    return base(
        "Distribution of the instance load times",
        subtitle,
        width=WIDTH,
        height=HEIGHT,
        layer=[
            {
                "data": {"values": ecdf},
                "mark": {"type": "line", "interpolate": "step-after", "strokeWidth": 2},
                "encoding": {
                    "x": x,
                    "y": {
                        "field": "percent",
                        "type": "quantitative",
                        "title": "Instances ready in less than x (%)",
                        "scale": {"domain": [0, 100]},
                    },
                    "tooltip": [
                        {"field": "load_time_s", "title": "Load time (s)", "format": ".3~f"},
                        {"field": "percent", "title": "Instances ready (%)", "format": ".1f"},
                    ],
                },
            },
            {
                "data": {"values": marks},
                "mark": {"type": "rule", "strokeDash": [4, 3], "color": "#555"},
                "encoding": {"x": x},
            },
            {
                "data": {"values": marks},
                "mark": {
                    "type": "text",
                    "angle": 270,
                    "align": "right",
                    "baseline": "bottom",
                    "dx": -4,
                    "dy": -3,
                    "fontSize": 10,
                    "color": "#333",
                },
                "encoding": {"x": x, "y": {"value": 0}, "text": {"field": "text"}},
            },
        ],
    )


def load_time_trend(summary: Mapping[str, Any], deployments: pa.Table) -> Spec:
    """Load time against creation order, one colour per namespace, with the Theil-Sen fit."""
    points = deployment_points(deployments)
    ready = points.ready_mask
    order = np.flatnonzero(ready)
    values = [
        {
            "order": int(rank),
            "load_time_s": num(float(points.load_time_s[i])),
            "instance": points.instance[i],
            "namespace": points.namespace[i],
        }
        for rank, i in enumerate(order)
    ]
    saturation = _deployments_part(summary).get("saturation") or {}
    trend = saturation.get("trend")
    layers: list[Spec] = [
        {
            "data": {"values": values},
            "mark": {"type": "point", "filled": True, "opacity": 0.7, "size": 30},
            "encoding": {
                "x": {
                    "field": "order",
                    "type": "quantitative",
                    "title": "Creation order (instances)",
                },
                "y": {"field": "load_time_s", "type": "quantitative", "title": "Load time (s)"},
                "color": {
                    "field": "namespace",
                    "type": "nominal",
                    "title": "Namespace",
                    "scale": {"domain": sorted(set(points.namespace)), "scheme": "tableau20"},
                },
                "tooltip": [
                    {"field": "instance", "title": "Instance"},
                    {"field": "namespace", "title": "Namespace"},
                    {"field": "order", "title": "Creation order"},
                    {"field": "load_time_s", "title": "Load time (s)", "format": ".3~f"},
                ],
            },
        }
    ]
    subtitle = [
        f"{len(values)} ready instances in creation order; line: Theil-Sen fit, band: the"
        " slopes of its confidence interval through the fit's centre"
    ]
    if isinstance(trend, Mapping) and len(values) >= 2:
        last = len(values) - 1
        mid = last / 2.0
        fitted_mid = float(trend["intercept_s"]) + float(trend["slope_s"]) * mid
        fit = []
        for x in (0.0, float(last)):
            fit.append(
                {
                    "order": x,
                    "fit": num(float(trend["intercept_s"]) + float(trend["slope_s"]) * x),
                    "low": num(fitted_mid + float(trend["slope_low_s"]) * (x - mid)),
                    "high": num(fitted_mid + float(trend["slope_high_s"]) * (x - mid)),
                }
            )
        order_x = {"field": "order", "type": "quantitative"}
        layers.append(
            {
                "data": {"values": fit},
                "mark": {"type": "area", "opacity": 0.15, "color": "#555"},
                "encoding": {
                    "x": order_x,
                    "y": {"field": "low", "type": "quantitative"},
                    "y2": {"field": "high"},
                },
            }
        )
        layers.append(
            {
                "data": {"values": fit},
                "mark": {"type": "line", "color": "#000", "strokeWidth": 2},
                "encoding": {"x": order_x, "y": {"field": "fit", "type": "quantitative"}},
            }
        )
        subtitle.append(
            f"Theil-Sen slope {float(trend['slope_s']) * 1000:.3g} ms per instance"
            f" ({float(trend['confidence']):.0%} CI {float(trend['slope_low_s']) * 1000:.3g}"
            f" to {float(trend['slope_high_s']) * 1000:.3g}); increase over the run"
            f" {float(trend['increase_s']):.3g} s; verdict: {saturation.get('verdict')}"
        )
    return base(
        "Load time against creation order",
        subtitle,
        width=WIDTH,
        height=HEIGHT,
        layer=layers,
    )


def many_model_charts(summary: Mapping[str, Any], deployments: pa.Table) -> dict[str, Spec]:
    """Every chart of a many-model run, by name (the PNG file stem), in page order.

    ``summary`` is ``summary.json`` (its ``deployments`` part is read) or that part itself.
    """
    return {
        "deploy_progress": deploy_progress(deployments),
        "load_time_distribution": load_time_distribution(summary, deployments),
        "load_time_trend": load_time_trend(summary, deployments),
    }

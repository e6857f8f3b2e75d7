"""The sweep chart: what a rate sweep found, as a Vega-Lite spec with its data inline.

Terms (those of :mod:`servingperf.analysis.sweep`). Drawn from ``summary.json["sweep"]`` alone
(:func:`servingperf.analysis.sweep.sweep_summary`), one panel per swept instance: every open-loop
stage a point at its *offered* rate (x) against its *completed* rate (y), coloured by its outcome
(passed, failed the SLOs, saturated), the line completed = offered (a server keeping up), the
*knee* and the *highest rate meeting the SLOs* as vertical rules, and the probe's measured
*capacity* as a horizontal rule. The subtitle carries each instance's verdict line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from servingperf.report.vega import num

Spec = dict[str, Any]

NAME = "sweep"
WIDTH = 420
HEIGHT = 280
HEADROOM = 1.08  # axes reach a little past the largest rate
PASSED, FAILED_SLOS, SATURATED = "stage passed", "stage failed the SLOs", "stage saturated"
KNEE, SLO_RATE, UNSATURATED_RATE, CAPACITY = (
    "knee",
    "highest rate meeting the SLOs",
    "highest rate not saturated",
    "probe capacity",
)
COLORS = {
    PASSED: "#2ca02c",
    FAILED_SLOS: "#ff7f0e",
    SATURATED: "#d62728",
    KNEE: "#9467bd",
    SLO_RATE: "#17becf",
    UNSATURATED_RATE: "#17becf",
    CAPACITY: "#7f7f7f",
}
X_TITLE = "Offered rate (req/s)"
Y_TITLE = "Completed rate (req/s)"


def _outcome(stage: Mapping[str, Any]) -> str:
    if stage.get("saturated"):
        return SATURATED
    return PASSED if stage.get("passed") else FAILED_SLOS


def _rows(instance: str, sweep: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The panel's rows: stages, the reference line, the rules (``row`` says which)."""
    rows: list[dict[str, Any]] = []
    top = 0.0
    for stage in sweep.get("stages") or []:
        offered, completed = num(stage.get("offered_rps")), num(stage.get("completed_rps"))
        top = max(top, offered or 0.0, completed or 0.0)
        if offered is None or completed is None:
            continue  # the probe: its capacity is a rule
        attainment = stage.get("slo_attainment")
        rows.append(
            {
                "row": "stage",
                "instance": instance,
                "phase": str(stage.get("phase")),
                "x": offered,
                "y": completed,
                "legend": _outcome(stage),
                "attainment_pct": None if attainment is None else num(100.0 * attainment),
            }
        )
    rate_label = SLO_RATE if sweep.get("slos") else UNSATURATED_RATE
    for label, key, row in (
        (KNEE, "knee_rps", "rate"),
        (rate_label, "max_rate_meeting_slos_rps", "rate"),
        (CAPACITY, "capacity_rps", "capacity"),
    ):
        value = num(sweep.get(key))
        if value is None:
            continue
        top = max(top, value)
        axis = "x" if row == "rate" else "y"
        rows.append({"row": row, "instance": instance, axis: value, "legend": label})
    edge = num(top * HEADROOM) or 1.0
    rows += [
        {"row": "ideal", "instance": instance, "x": 0.0, "y": 0.0},
        {"row": "ideal", "instance": instance, "x": edge, "y": edge},
    ]
    return rows


def _only(row: str) -> dict[str, str]:
    return {"filter": f"datum.row === '{row}'"}


def sweep_chart(summary: Mapping[str, Any]) -> Spec | None:
    """The sweep chart of a run, or None when ``summary`` has no sweep."""
    sweeps: Mapping[str, Any] = summary.get("sweep") or {}
    if not sweeps:
        return None
    rows = [row for name, sweep in sweeps.items() for row in _rows(str(name), sweep)]
    verdicts = [f"{name}: {sweep.get('verdict')}" for name, sweep in sweeps.items()]
    domain = list(dict.fromkeys(row["legend"] for row in rows if "legend" in row))
    color = {
        "field": "legend",
        "type": "nominal",
        "title": None,
        "scale": {"domain": domain, "range": [COLORS[d] for d in domain]},
    }
    x = {"field": "x", "type": "quantitative", "title": X_TITLE}
    y = {"field": "y", "type": "quantitative", "title": Y_TITLE}
    stage_tooltip = [
        {"field": "phase", "title": "Stage"},
        {"field": "x", "title": X_TITLE, "format": ".4~g"},
        {"field": "y", "title": Y_TITLE, "format": ".4~g"},
        {"field": "attainment_text", "title": "SLO attainment (%)"},
        {"field": "legend", "title": "Outcome"},
    ]
    layers: list[Spec] = [
        {
            "transform": [_only("ideal")],
            "mark": {"type": "line", "color": "#bbbbbb", "strokeDash": [4, 4]},
            "encoding": {"x": x, "y": y},
        },
        {
            "transform": [_only("stage")],
            "mark": {"type": "line", "color": "#4c78a8", "opacity": 0.5},
            "encoding": {"x": x, "y": y, "order": {"field": "x", "type": "quantitative"}},
        },
        {
            "transform": [
                _only("stage"),
                {
                    "calculate": "isValid(datum.attainment_pct) ?"
                    " format(datum.attainment_pct, '.4~g') : '— (no SLOs)'",
                    "as": "attainment_text",
                },
            ],
            "mark": {"type": "point", "filled": True, "size": 90, "opacity": 0.9},
            "encoding": {"x": x, "y": y, "color": color, "tooltip": stage_tooltip},
        },
        {
            "transform": [_only("rate")],
            "mark": {"type": "rule", "strokeDash": [6, 3], "strokeWidth": 2},
            "encoding": {
                "x": x,
                "color": color,
                "tooltip": [
                    {"field": "legend", "title": "Marks"},
                    {"field": "x", "title": X_TITLE, "format": ".4~g"},
                ],
            },
        },
        {
            "transform": [_only("capacity")],
            "mark": {"type": "rule", "strokeDash": [2, 2], "strokeWidth": 2},
            "encoding": {
                "y": y,
                "color": color,
                "tooltip": [
                    {"field": "legend", "title": "Marks"},
                    {"field": "y", "title": Y_TITLE, "format": ".4~g"},
                ],
            },
        },
    ]
    return {
        "title": {
            "text": "Rate sweep: completed against offered rate",
            "subtitle": [
                *verdicts,
                "dashed grey: completed = offered; a stage is saturated when it completes less"
                " than (1 - saturation_tolerance) x offered",
            ],
            "anchor": "start",
        },
        "data": {"values": rows},
        "facet": {"field": "instance", "type": "nominal", "title": "Instance", "sort": None},
        "columns": 2,
        "spec": {"width": WIDTH, "height": HEIGHT, "layer": layers},
    }


def sweep_charts(summary: Mapping[str, Any]) -> dict[str, Spec]:
    """``{"sweep": spec}`` for a sweep run, else nothing."""
    spec = sweep_chart(summary)
    return {} if spec is None else {NAME: spec}

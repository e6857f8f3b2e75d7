"""The chart vocabulary every report chart shares: Vega-Lite spec pieces and JSON numbers.

Terms. A *spec* is a Vega-Lite specification as a JSON-ready dict. Numbers are rounded to a few
significant digits (smaller pages; the exact figures are in the KPI tables) and NaN becomes an
absent value, as Vega expects. Titles and units always come from
:data:`servingperf.model.metrics.METRICS`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from servingperf.model.metrics import METRICS
from servingperf.report.boxstats import BoxStats

Spec = dict[str, Any]

STATUS_SHAPES = {"ok": "circle", "error": "cross", "cut": "triangle-up"}
ZOOM = {"name": "zoom", "select": "interval", "bind": "scales"}
FAILED_TEST = "datum.status !== 'ok'"
MINUTES_AFTER_S = 600.0  # a time axis longer than this is drawn in minutes


def num(value: Any, digits: int = 6) -> float | None:
    """A JSON number rounded to ``digits`` significant digits; None for NaN or absent.

    Per-request points use 4 digits: plenty to place a point and read a tooltip, and a third less
    page weight."""
    if value is None:
        return None
    number = float(value)
    if not math.isfinite(number):
        return None
    return float(f"{number:.{digits}g}")


def compact(row: dict[str, Any]) -> dict[str, Any]:
    """The row without its absent fields (a missing field is absent to Vega too, and costs
    nothing)."""
    return {key: value for key, value in row.items() if value is not None}


def base(title: str, subtitle: str | list[str], **rest: Any) -> Spec:
    """A chart with its title and subtitle lines, and the rest of its spec."""
    spec: Spec = {"title": {"text": title, "subtitle": subtitle, "anchor": "start"}}
    spec.update(rest)
    return spec


def axis_title(metric: str) -> str:
    """An axis title with its unit, both read from METRICS."""
    definition = METRICS[metric]
    return f"{definition.title} ({definition.unit})"


def as_text(field: str, number_format: str) -> dict[str, Any]:
    """A calculate transform adding ``<field>_text``: the formatted value, or an em dash when the
    figure does not apply (a tooltip would otherwise print "undefined" for a failed request)."""
    return {
        "calculate": f"isValid(datum.{field}) ? format(datum.{field}, '{number_format}') : '—'",
        "as": f"{field}_text",
    }


def colour(field: str, domain: Sequence[str], title: str) -> dict[str, Any]:
    """A nominal colour channel with an explicit domain, so colours agree across charts."""
    return {"field": field, "type": "nominal", "title": title, "scale": {"domain": list(domain)}}


def sampled(shown: int, total: int, noun: str, extra: str = "") -> str:
    """'1,234 requests', or 'sampled 500 of 1,234 requests' when a chart carries a sample."""
    if shown == total:
        return f"{total:,} {noun}{extra}"
    return f"sampled {shown:,} of {total:,} {noun}{extra}"


def time_unit(span_s: float) -> tuple[float, str]:
    """(divisor, unit) of a time axis spanning ``span_s`` seconds."""
    return (60.0, "min") if span_s > MINUTES_AFTER_S else (1.0, "s")


def status_shape() -> dict[str, Any]:
    """The shape channel telling ok, failed and cut requests apart."""
    return {
        "field": "status",
        "type": "nominal",
        "title": "Status",
        "scale": {"domain": list(STATUS_SHAPES), "range": list(STATUS_SHAPES.values())},
    }


def box_fields(stats: BoxStats) -> dict[str, Any]:
    """A box plot's statistics as the fields of one chart row."""
    return {
        "n": stats.n,
        "min": num(stats.min),
        "whisker_low": num(stats.whisker_low),
        "q1": num(stats.q1),
        "median": num(stats.median),
        "q3": num(stats.q3),
        "whisker_high": num(stats.whisker_high),
        "max": num(stats.max),
        "mean": num(stats.mean),
        "p90": num(stats.p90),
        "p99": num(stats.p99),
        "outliers": stats.outliers,
    }

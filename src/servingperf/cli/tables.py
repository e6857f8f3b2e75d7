"""The tables printed at the end of a run (Rich), read from ``summary.json`` alone: the summary
per instance and, for a sweep, its stages with the verdict."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from servingperf.analysis.summary import summary_value
from servingperf.model.metrics import MetricDef, headline


def _num(value: float | None, fmt: str = "{:.1f}") -> str:
    return "–" if value is None else fmt.format(value)


def _cell(definition: MetricDef, value: Any) -> str:
    """Seconds in ms, ratios in percent, rates with one decimal."""
    if value is None:
        return "–"
    if definition.unit == "s":
        return f"{value * 1000:.1f}"
    if definition.unit == "ratio":
        return f"{value * 100:.2f}"
    return f"{value:.1f}"


def _header(definition: MetricDef, statistic: str) -> str:
    unit = {"s": "ms", "ratio": "%"}.get(definition.unit, "")
    stat = "" if statistic == "value" else f" {statistic}"
    return f"{definition.short}{stat}{' ' + unit if unit else ''}"


def summary_table(summary: dict[str, Any]) -> Table:
    """Counts and the headline figures (:func:`servingperf.model.metrics.headline`) per
    instance."""
    table = Table(title=f"{summary['scenario']} · run {summary['run_id']} · {summary['status']}")
    table.caption = "figures over the measurement window (README: Definitions)"
    columns = headline()
    table.add_column("instance", overflow="fold", min_width=12)
    for header in ("ok", "err", "cut", *(_header(m, stat) for m, stat in columns)):
        table.add_column(header, justify="right", no_wrap=True)
    for key, entry in summary["instances"].items():
        counts = entry["counts"]
        table.add_row(
            key,
            str(counts["measured"]),
            str(counts["error"]),
            str(counts["cut"]),
            *(_cell(m, summary_value(entry, m, stat)) for m, stat in columns),
        )
    return table


def _yes_no(value: bool | None) -> str:
    return "–" if value is None else ("yes" if value else "no")


def sweep_tables(summary: dict[str, Any]) -> list[Table]:
    """One table per swept instance (``summary["sweep"]``): its stages, the verdict as caption."""
    tables = []
    for instance, sweep in (summary.get("sweep") or {}).items():
        table = Table(title=f"sweep · {escape(str(instance))}")  # names are not Rich markup
        table.caption = escape(str(sweep["verdict"]))
        table.add_column("stage", no_wrap=True)
        for header in ("offered req/s", "completed req/s", "SLO attainment %", "saturated", "pass"):
            table.add_column(header, justify="right", no_wrap=True)
        for stage in sweep["stages"]:
            attainment = stage["slo_attainment"]
            offered = (
                f"probe, {stage['users']} users"
                if stage["offered_rps"] is None
                else _num(stage["offered_rps"], "{:.2f}")
            )
            table.add_row(
                stage["phase"],
                offered,
                _num(stage["completed_rps"], "{:.2f}"),
                _num(None if attainment is None else attainment * 100, "{:.1f}"),
                _yes_no(stage["saturated"]),
                _yes_no(stage["passed"]),
            )
        tables.append(table)
    return tables

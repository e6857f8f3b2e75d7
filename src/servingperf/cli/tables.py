"""The tables printed at the end of a run (Rich), read from ``summary.json`` alone: the summary
per instance and, for a sweep, its stages with the verdict."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table


def _ms(stats: dict[str, Any] | None, key: str) -> str:
    if not stats:
        return "–"
    return f"{stats[key] * 1000:.1f}"


def _num(value: float | None, fmt: str = "{:.1f}") -> str:
    return "–" if value is None else fmt.format(value)


def summary_table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"{summary['scenario']} · run {summary['run_id']} · {summary['status']}")
    table.caption = (
        "times in ms unless marked s; figures over the measurement window (README: Definitions)"
    )
    headers = (
        "ok",
        "err",
        "cut",
        "tok/s",
        "req/s",
        "TTFT p50",
        "TTFT p90",
        "TPOT p50",
        "TPOT p90",
        "NTPOT avg",
        "E2E avg s",
        "E2E p90 s",
        "err %",
    )
    table.add_column("instance", overflow="fold", min_width=12)
    for header in headers:
        table.add_column(header, justify="right", no_wrap=True)
    for key, entry in summary["instances"].items():
        stats = entry["stats"]
        counts = entry["counts"]
        throughput = entry["throughput"]
        e2e = stats["e2e_s"]
        table.add_row(
            key,
            str(counts["measured"]),
            str(counts["error"]),
            str(counts["cut"]),
            _num(throughput["output_tps"]),
            _num(throughput["request_rps"], "{:.2f}"),
            _ms(stats["ttft_s"], "p50"),
            _ms(stats["ttft_s"], "p90"),
            _ms(stats["tpot_s"], "p50"),
            _ms(stats["tpot_s"], "p90"),
            _ms(stats["ntpot_s"], "mean"),
            _num(e2e["mean"] if e2e else None, "{:.2f}"),
            _num(e2e["p90"] if e2e else None, "{:.2f}"),
            _num(None if entry["error_rate"] is None else entry["error_rate"] * 100, "{:.2f}"),
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

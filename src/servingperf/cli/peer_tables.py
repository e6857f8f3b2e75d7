"""The tables of ``servingperf summarize --as PEER``: per window, the peer's figures beside ours,
then where and why the definitions differ, and the source the peer's definitions were read from."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from servingperf.analysis.peers.registry import RunView
from servingperf.model.metrics import METRICS


def _value(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def _ours(name: str | None, value: float | None, peer_unit: str) -> str:
    """Our value in the peer's unit where the units are time (ms vs s)."""
    if name is None or value is None:
        return "–"
    metric = METRICS.get(name.split(".")[0])
    if metric is not None and metric.unit == "s" and peer_unit == "ms":
        return f"{value * 1000:.4g}"
    return f"{value:.4g}"


def peer_tables(view: RunView) -> list[Table]:
    source = view.peer.source
    tables = []
    for window in view.windows:
        counts = ", ".join(f"{k} {v}" for k, v in window.counts.items())
        table = Table(title=f"{escape(window.key)} as {source.tool} would report it ({counts})")
        for column in ("figure", "value", "unit", "servingperf figure", "servingperf value"):
            table.add_column(column, justify="left" if "figure" in column else "right")
        ours = view.ours.get(window.key, {})
        for figure in window.figures:
            table.add_row(
                escape(figure.name),
                _value(figure.value),
                figure.unit,
                figure.ours or "",
                _ours(figure.ours, ours.get(figure.ours) if figure.ours else None, figure.unit),
            )
        tables.append(table)
    differences = Table(title=f"where {source.tool}'s definitions differ from servingperf's")
    for column in ("aspect", "servingperf", source.tool, "data servingperf does not keep"):
        differences.add_column(column, overflow="fold")
    for item in view.peer.divergences:
        differences.add_row(item.aspect, item.ours, item.theirs, item.gap or "none: exact")
    differences.caption = (
        f"definitions read from {source.repository} at {source.commit}: {', '.join(source.files)}"
    )
    tables.append(differences)
    return tables

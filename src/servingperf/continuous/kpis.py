"""The KPI rows a run contributes to the store, read from its ``summary.json``.

Names are ``<metric>.<statistic>`` for per-request distributions (``ttft_s.p50``, ``tpot_s.p90``)
and the metric name alone for rates (``output_throughput_tps``); unit and direction come from
:data:`servingperf.model.metrics.METRICS`.
"""

from __future__ import annotations

import math
from typing import Any

from servingperf.model.metrics import STORED_STATISTICS, distributions, metric, rates
from servingperf.results.store import KpiRow

DISTRIBUTION_METRICS = tuple(m.name for m in distributions() if m.stored)
DISTRIBUTION_STATS = STORED_STATISTICS
RATE_KPIS = {m.summary_key: m.name for m in rates() if m.stored and m.summary_key}


def kpi_rows(run_id: str, summary: dict[str, Any]) -> list[KpiRow]:
    rows: list[KpiRow] = []
    for entry in summary.get("instances", {}).values():
        instance = entry.get("instance") or ""
        model = entry.get("model") or ""
        phase = entry.get("phase") or "load"
        measured = int(entry["counts"]["measured"])

        def add(
            name: str,
            base: str,
            value: float | None,
            n: int,
            instance: str = instance,
            model: str = model,
            phase: str = phase,
        ) -> None:
            definition = metric(base)
            rows.append(
                KpiRow(
                    run_id=run_id,
                    instance=instance,
                    model=model,
                    phase=phase,
                    name=name,
                    value=math.nan if value is None else float(value),
                    unit=definition.unit,
                    better=definition.better,
                    n=n,
                )
            )

        for base in DISTRIBUTION_METRICS:
            stats = entry["stats"].get(base)
            for stat in DISTRIBUTION_STATS:
                add(
                    f"{base}.{stat}",
                    base,
                    stats[stat] if stats else None,
                    stats["n"] if stats else 0,
                )
        for key, name in RATE_KPIS.items():
            value = entry["throughput"].get(key)
            if value is not None:
                add(name, name, value, measured)
        if entry.get("error_rate") is not None:
            add("error_rate", "error_rate", entry["error_rate"], int(entry["counts"]["issued"]))
    return rows

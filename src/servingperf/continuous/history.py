"""Release history of each KPI, and its change points.

A release's value of a KPI is the mean of that KPI over the release's complete runs (per instance
and phase); releases are ordered by their first run. At most the latest ``MAX_HISTORY`` releases
are analysed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from servingperf.analysis.changepoints import MAX_HISTORY, ChangePoint, change_points
from servingperf.model.metrics import metric
from servingperf.results.store import Store


@dataclass(frozen=True, slots=True)
class KpiHistory:
    key: str  # the instance, plus "/phase" unless the phase is "load" (as in summary.json)
    kpi: str
    releases: list[str]
    values: list[float]
    changes: list[ChangePoint]


def release_values(
    store: Store, names: Sequence[str], label: str = "release", scenario: str | None = None
) -> dict[tuple[str, str], dict[str, float]]:
    """(instance/phase, KPI) -> {release: mean value}, releases in first-run order."""
    per: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for release in store.releases(label, scenario=scenario)[-MAX_HISTORY:]:
        runs = [
            r
            for r in store.runs({label: release.value}, scenario=scenario)
            if r.status == "complete"
        ]
        for row in store.kpis([r.run_id for r in runs], names):
            if not math.isnan(row.value):
                key = row.instance if row.phase in ("load", "") else f"{row.instance}/{row.phase}"
                per[(key, row.name)][release.value].append(row.value)
    return {key: {rel: sum(v) / len(v) for rel, v in values.items()} for key, values in per.items()}


def release_history_changes(
    store: Store, names: Sequence[str], label: str = "release", scenario: str | None = None
) -> list[KpiHistory]:
    out: list[KpiHistory] = []
    for (key, kpi), by_release in sorted(release_values(store, names, label, scenario).items()):
        releases = list(by_release)
        values = [by_release[r] for r in releases]
        base = kpi.split(".")[0]
        changes = change_points(values, metric(base), labels=releases)
        out.append(KpiHistory(key, kpi, releases, values, changes))
    return out

"""The regression gate over stored runs: a reference side and a candidate side, KPI by KPI.

Per (instance, phase) present on both sides and per gated KPI (see :data:`GATED_KPIS`), the
samples of each side are kept per run and judged by :func:`servingperf.analysis.gate.gate`
(relative change beyond a threshold *and* a bootstrap interval excluding no change). With several
runs on a side, the bootstrap resamples runs and then requests within them, so the interval holds
run-to-run variance; with one run per side it cannot, and the report says so
(:attr:`GateReport.within_run_only`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from servingperf.analysis.gate import (
    Acknowledgement,
    GateSpec,
    KpiSamples,
    KpiVerdict,
    RunSamples,
    gate,
    gate_exit_code,
)
from servingperf.continuous.samples import GATED_KPIS, samples_by_run
from servingperf.continuous.selection import Selection, resolve
from servingperf.errors import ConfigError, ExitCode
from servingperf.model.metrics import metric
from servingperf.results.store import Store, StoredRun


@dataclass(slots=True)
class GateReport:
    reference: Selection
    candidate: Selection
    reference_runs: list[StoredRun]
    candidate_runs: list[StoredRun]
    verdicts: list[KpiVerdict]
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> ExitCode:
        return gate_exit_code(self.verdicts)

    @property
    def within_run_only(self) -> bool:
        """True when some verdict's interval holds within-run variance only (one run per side):
        run-to-run variance (machine load, a noisy neighbour) is then unseen."""
        return any(v.within_run_only for v in self.verdicts)


def latest_run_selection(store: Store, scenario: str | None, exclude: Sequence[str]) -> Selection:
    for run in store.runs(scenario=scenario):
        if run.status == "complete" and run.run_id not in exclude:
            return Selection(text=run.run_id, run_id=run.run_id)
    raise ConfigError("no candidate: the store has no other complete run; give --candidate")


def gate_runs(
    store: Store,
    reference: Selection,
    candidate: Selection | None,
    scenario: str | None = None,
    spec: GateSpec | None = None,
    acknowledgements: Sequence[Acknowledgement] = (),
    *,
    exclude_reference: Collection[str] = (),
) -> GateReport:
    """``exclude_reference``: run ids left out of the reference side (``servingperf ci`` gates a
    run of the reference release itself against the other runs of that release)."""
    reference_runs = [
        r for r in resolve(store, reference, scenario) if r.run_id not in exclude_reference
    ]
    if not reference_runs:
        raise ConfigError(f"no reference run for {reference.text} once the candidate is set aside")
    scenario = scenario or reference_runs[0].scenario
    if candidate is None:
        candidate = latest_run_selection(store, scenario, [r.run_id for r in reference_runs])
    candidate_runs = resolve(store, candidate, scenario)
    overlap = {r.run_id for r in reference_runs} & {r.run_id for r in candidate_runs}
    if overlap:
        raise ConfigError(f"the same run is on both sides: {', '.join(sorted(overlap))}")
    ref = samples_by_run(reference_runs)
    cand = samples_by_run(candidate_runs)
    notes = [f"{key}: only in the reference" for key in sorted(ref.keys() - cand.keys())]
    notes += [f"{key}: only in the candidate" for key in sorted(cand.keys() - ref.keys())]
    kpis = [
        KpiSamples(
            metric(name),
            RunSamples(tuple(ref[key][name])),
            RunSamples(tuple(cand[key][name])),
            instance=key,
        )
        for key in sorted(ref.keys() & cand.keys())
        for name in GATED_KPIS
        if name in ref[key] and name in cand[key]
    ]
    labels = dict(candidate_runs[0].labels)
    verdicts = gate(kpis, spec, acknowledgements, labels)
    return GateReport(reference, candidate, reference_runs, candidate_runs, verdicts, notes)

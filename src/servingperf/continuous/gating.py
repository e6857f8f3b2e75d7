"""The regression gate over stored runs: a reference side and a candidate side, KPI by KPI.

Per (instance, phase) present on both sides and per gated KPI (see :data:`GATED_KPIS`), the
samples of each side are kept per run and judged by :func:`servingperf.analysis.gate.gate`
(relative change beyond a threshold *and* a bootstrap interval excluding no change). With several
runs on a side, the bootstrap resamples runs and then requests within them, so the interval holds
run-to-run variance; with one run per side it cannot, and the report says so
(:attr:`GateReport.within_run_only`).

Before judging, the gate checks trust (:class:`Trust`): a run whose validity verdict is
``invalid`` (on either side) is not judged, exit 4 (``--allow-invalid`` judges it all the same,
with a note), and two sides whose comparability fingerprints differ in a field the policy refuses
are not judged, exit 5 (``--comparability FIELD=warn`` or ``--allow-incomparable`` relax it).
Suspect runs and warned differences are judged and noted.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from servingperf.analysis.fingerprint import Comparability, Policy, compare_fingerprints
from servingperf.analysis.gate import (
    Acknowledgement,
    GateSpec,
    KpiSamples,
    KpiVerdict,
    RunSamples,
    gate,
    gate_exit_code,
)
from servingperf.analysis.validity import is_invalid
from servingperf.continuous.samples import GATED_KPIS, samples_by_run
from servingperf.continuous.selection import Selection, resolve
from servingperf.errors import ConfigError, ExitCode
from servingperf.model.metrics import metric
from servingperf.results.store import Store, StoredRun


@dataclass(frozen=True, slots=True)
class Trust:
    """What the gate demands before it judges: valid runs and comparable sides (see above)."""

    comparability: Policy = field(default_factory=Policy.default)
    allow_invalid: bool = False


@dataclass(slots=True)
class GateReport:
    reference: Selection
    candidate: Selection
    reference_runs: list[StoredRun]
    candidate_runs: list[StoredRun]
    verdicts: list[KpiVerdict]
    notes: list[str] = field(default_factory=list)
    comparability: Comparability = field(default_factory=lambda: Comparability(()))
    invalid_runs: list[str] = field(default_factory=list)  # "run id: reasons"
    refused: ExitCode | None = None  # INVALID_RUN or INCOMPARABLE when not judged

    @property
    def exit_code(self) -> ExitCode:
        if self.refused is not None:
            return self.refused
        return gate_exit_code(self.verdicts)

    @property
    def refusal(self) -> str | None:
        """Why the gate did not judge, or None."""
        if self.refused is ExitCode.INVALID_RUN:
            return "invalid run(s): " + "; ".join(self.invalid_runs)
        if self.refused is ExitCode.INCOMPARABLE:
            return "not comparable: " + "; ".join(d.describe() for d in self.comparability.refused)
        return None

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
    trust: Trust | None = None,
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
    trust = trust or Trust()
    invalid = [
        f"{side} {r.run_id}: " + "; ".join((r.validity or {}).get("reasons", [])[:3])
        for side, runs in (("reference", reference_runs), ("candidate", candidate_runs))
        for r in runs
        if is_invalid(r.validity)
    ]
    comparability = compare_fingerprints(
        [(r.run_id, r.fingerprint) for r in reference_runs],
        [(r.run_id, r.fingerprint) for r in candidate_runs],
        trust.comparability,
    )
    trust_notes = [*comparability.notes()]
    trust_notes += [
        f"suspect run {r.run_id}: " + "; ".join((r.validity or {}).get("reasons", [])[:3])
        for r in (*reference_runs, *candidate_runs)
        if (r.validity or {}).get("verdict") == "suspect"
    ]
    refused: ExitCode | None = None
    if invalid and not trust.allow_invalid:
        refused = ExitCode.INVALID_RUN
    elif not comparability.comparable:
        refused = ExitCode.INCOMPARABLE
    if invalid and trust.allow_invalid:
        trust_notes += [f"judged although invalid (--allow-invalid): {item}" for item in invalid]
    if refused is not None:
        return GateReport(
            reference,
            candidate,
            reference_runs,
            candidate_runs,
            [],
            trust_notes,
            comparability,
            invalid,
            refused,
        )
    ref = samples_by_run(reference_runs)
    cand = samples_by_run(candidate_runs)
    notes = trust_notes + [
        f"{key}: only in the reference" for key in sorted(ref.keys() - cand.keys())
    ]
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
    return GateReport(
        reference,
        candidate,
        reference_runs,
        candidate_runs,
        verdicts,
        notes,
        comparability,
        invalid,
    )

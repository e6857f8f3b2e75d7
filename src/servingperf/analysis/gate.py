"""The regression gate: per KPI, candidate samples vs reference samples, a verdict with evidence.

Terms. The *reference* is the run (or release) a *candidate* is judged against. *Samples* are the
values a KPI's figure is computed from: per-request values for distribution KPIs (TTFT, TPOT, NTPOT,
E2E; unit ``s``), and per-sub-window values for rate KPIs (throughput; unit ``.../s``), see
:func:`windowed_rates`. The *statistic* is the figure compared: the median for distribution KPIs and
the mean for rate KPIs by default (the mean of equal sub-window rates is the window's rate), or a
configured percentile. The *relative change* is candidate statistic / reference statistic - 1.

A change counts only when it is both large and real: ``|relative change| >= threshold`` (5% by
default, per-KPI overrides) *and* the two-sided ``1 - alpha`` (95% by default) percentile-bootstrap
confidence interval of the ratio candidate statistic / reference statistic excludes 1. The bootstrap
resamples each side independently, is seeded (same input, same verdict) and runs a bounded number of
iterations. We chose it over Mann-Whitney U because U tests a shift of the whole distribution, not
the statistic being thresholded (a p99 gate needs an interval on the p99); the interval also shows
a reader how sure the figure is.

*Runs.* A side may hold several runs (:class:`RunSamples`: the stored runs of a release). Requests
of one run share its machine state (load, placement, a noisy neighbour), so run-to-run variance is
real and a bootstrap of pooled requests, treating them as independent, cannot see it: same-config
runs then look "significantly" different. A side with several runs is therefore bootstrapped
hierarchically (:func:`servingperf.analysis.stats.bootstrap_runs`: runs drawn with replacement, then
requests within each drawn run), its run spread widened by ``sqrt(R / (R - 1))`` to undo the
bootstrap's known shortfall for few runs (:func:`servingperf.analysis.stats.widen_run_spread`).
A side with one run facing a side with several *borrows* the other side's run-to-run spread (each
replicate is scaled by a randomly drawn run deviation of the other side): run-to-run noise is a
property of the machine and the scenario, not of the release, and without it a single candidate
run against a multi-run reference keeps most of the false alarms. With one run per side nothing
can estimate run-to-run variance: the interval holds within-run variance only, and the verdict
says so (:class:`RunVariance`). Point estimates are always the statistic of all samples pooled.

Verdicts:

- ``regressed`` / ``improved``: large and significant, in the bad / good direction of the metric;
- ``unchanged``: the change is below the threshold (significant or not);
- ``inconclusive``: too few samples, an undefined ratio (reference statistic <= 0), or a change
  beyond the threshold whose interval still contains 1 (large but indistinguishable from noise).

An :class:`Acknowledgement` marks a known regression: it is still reported, but it no longer fails
the gate (:func:`gate_exit_code`).

Rate KPIs have one value per run; significance needs several. Our choice: the caller splits the
measurement window into equal sub-windows (:func:`windowed_rates`, 10 by default) and passes one
rate per sub-window; with several runs per side, one value per run works the same way. Sub-window
rates of one run are somewhat autocorrelated (batches complete together), which makes their
interval a little optimistic; the threshold guards against the small changes this lets through.
"""

from __future__ import annotations

import enum
import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field, ValidationError, field_validator

from servingperf.analysis.stats import (
    MAX_BOOTSTRAP_CELLS,
    RunSpread,
    bootstrap_runs,
    pooled_statistic,
    widen_run_spread,
)
from servingperf.errors import ConfigError, ExitCode
from servingperf.model.metrics import METRICS, Better, Kind, MetricDef
from servingperf.model.specs import Spec

FloatArray = npt.NDArray[np.float64]


class Verdict(enum.StrEnum):
    REGRESSED = "regressed"
    IMPROVED = "improved"
    UNCHANGED = "unchanged"
    INCONCLUSIVE = "inconclusive"


class Statistic(enum.StrEnum):
    """The figure of a sample set that is compared; percentiles interpolate linearly (numpy)."""

    MEDIAN = "median"
    MEAN = "mean"
    P90 = "p90"
    P95 = "p95"
    P99 = "p99"


class RunVariance(enum.StrEnum):
    """Which variance the confidence interval holds, from the runs each side has.

    ``between_runs``: both sides have several runs, each bootstrapped hierarchically.
    ``borrowed``: one side has one run and takes the run-to-run spread of the other side's runs.
    ``one_side``: as ``borrowed``, but the other side's spread could not be measured (a run's
    statistic <= 0), so the single run adds within-run variance only.
    ``within_run_only``: one run per side; run-to-run variance (machine load, a noisy neighbour)
    is not in the interval, which is then too narrow by that much.
    """

    BETWEEN_RUNS = "between_runs"
    BORROWED = "borrowed"
    ONE_SIDE = "one_side"
    WITHIN_RUN_ONLY = "within_run_only"


def is_rate_metric(metric: MetricDef) -> bool:
    """Rate KPIs (throughput, goodput, error rate) have one value per (sub-)window."""
    return metric.kind is Kind.RATE


class KpiPolicySpec(Spec):
    """Per-KPI overrides of the gate's defaults; unset fields fall back to :class:`GateSpec`."""

    threshold: float | None = Field(default=None, gt=0, le=10, description="relative, 0.05 = 5%")
    statistic: Statistic | None = None
    min_samples: int | None = Field(default=None, ge=2)


class GateSpec(Spec):
    """How the gate decides; every default is the one stated in the README."""

    threshold: float = Field(
        default=0.05, gt=0, le=10, description="relative change that counts, 0.05 = 5%"
    )
    alpha: float = Field(
        default=0.05, gt=0, lt=0.5, description="1 - confidence of the bootstrap interval"
    )
    bootstrap_iterations: int = Field(default=2000, ge=200, le=20_000)
    seed: int = Field(default=0, ge=0)
    min_samples: int = Field(
        default=30, ge=2, description="per side, for distribution KPIs (per-request samples)"
    )
    min_samples_rate: int = Field(
        default=5, ge=2, description="per side, for rate KPIs (sub-windows or runs)"
    )
    kpis: dict[str, KpiPolicySpec] = Field(
        default_factory=dict,
        description="per-KPI overrides; without one a KPI takes its declared default threshold"
        " (TTFT needs a 10% change, because queueing and scheduling make it the noisiest figure"
        " between otherwise identical runs), else the general threshold",
    )

    @field_validator("kpis")
    @classmethod
    def _known_kpis(cls, value: dict[str, KpiPolicySpec]) -> dict[str, KpiPolicySpec]:
        unknown = sorted(set(value) - set(METRICS))
        if unknown:
            raise ValueError(
                f"unknown KPI(s) {', '.join(unknown)}; known: {', '.join(sorted(METRICS))}"
            )
        return value

    def policy(self, metric: MetricDef) -> tuple[float, Statistic, int]:
        """Threshold, statistic and minimum samples per side in force for ``metric``."""
        rate = is_rate_metric(metric)
        override = self.kpis.get(metric.name, KpiPolicySpec())
        declared = metric.gate_threshold if metric.gate_threshold is not None else self.threshold
        threshold = override.threshold if override.threshold is not None else declared
        default_stat = Statistic.MEAN if rate else Statistic.MEDIAN
        statistic = override.statistic if override.statistic is not None else default_stat
        default_min = self.min_samples_rate if rate else self.min_samples
        min_samples = override.min_samples if override.min_samples is not None else default_min
        return threshold, statistic, min_samples


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """A known regression: KPI and instance are names or globs; ``candidate`` maps label -> glob,
    all of which must match the candidate's labels (empty: any candidate)."""

    kpi: str
    reason: str
    instance: str = "*"
    candidate: Mapping[str, str] = field(default_factory=dict)

    def matches(self, kpi: str, instance: str, candidate_labels: Mapping[str, str]) -> bool:
        if not fnmatch.fnmatchcase(kpi, self.kpi):
            return False
        if not fnmatch.fnmatchcase(instance, self.instance):
            return False
        return all(
            key in candidate_labels and fnmatch.fnmatchcase(candidate_labels[key], pattern)
            for key, pattern in self.candidate.items()
        )


class AcknowledgementSpec(Spec):
    kpi: str = Field(min_length=1, description="KPI name or glob, e.g. tpot_s")
    instance: str = Field(default="*", min_length=1, description="instance name or glob")
    candidate: dict[str, str] = Field(
        default_factory=dict, description="label -> glob the candidate must match, e.g. release"
    )
    reason: str = Field(min_length=1, description="why this regression is accepted")


class AcknowledgementsFileSpec(Spec):
    """The acknowledgements file: ``version: 1`` and a list of acknowledgements."""

    version: Literal[1] = 1
    acknowledgements: list[AcknowledgementSpec] = Field(default_factory=list)


def parse_acknowledgements(data: object, source: str) -> tuple[Acknowledgement, ...]:
    """Validate an already-parsed acknowledgements document (YAML/JSON) from ``source``.

    Raises ConfigError naming the source and the offending field.
    """
    try:
        spec = AcknowledgementsFileSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<top>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{source}: invalid acknowledgements file: {problems}") from exc
    return tuple(
        Acknowledgement(kpi=a.kpi, reason=a.reason, instance=a.instance, candidate=a.candidate)
        for a in spec.acknowledgements
    )


@dataclass(frozen=True, slots=True)
class KpiVerdict:
    """One KPI's verdict and the evidence for it.

    ``ci_low``/``ci_high`` bound the ratio candidate/reference of the statistic at ``confidence``;
    ``p_value`` is the bootstrap's two-sided achieved significance for "ratio = 1". Values are None
    where they could not be computed (see ``reason``).
    """

    kpi: str
    unit: str
    better: Better
    instance: str
    statistic: Statistic
    verdict: Verdict
    reference_value: float | None
    candidate_value: float | None
    relative_change: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    confidence: float
    threshold: float
    n_reference: int
    n_candidate: int
    reason: str
    acknowledgement: Acknowledgement | None = None
    runs_reference: int = 1
    runs_candidate: int = 1
    run_variance: RunVariance = RunVariance.WITHIN_RUN_ONLY

    @property
    def within_run_only(self) -> bool:
        """True when the interval cannot hold run-to-run variance (one run per side)."""
        return self.run_variance is RunVariance.WITHIN_RUN_ONLY

    @property
    def failing(self) -> bool:
        """True for a regression nobody acknowledged: this is what fails a gate."""
        return self.verdict is Verdict.REGRESSED and self.acknowledgement is None

    @property
    def outcome(self) -> str:
        """The verdict as shown to people: ``acknowledged`` for an acknowledged regression."""
        if self.verdict is Verdict.REGRESSED and self.acknowledgement is not None:
            return "acknowledged"
        return self.verdict.value


@dataclass(frozen=True, slots=True)
class RunSamples:
    """One side's samples kept per run (the stored runs of a release), one array per run.

    A plain array given as a side is one run. Runs left without a finite sample are dropped.
    """

    runs: tuple[npt.ArrayLike, ...]

    @classmethod
    def of(cls, *runs: npt.ArrayLike) -> RunSamples:
        return cls(tuple(runs))


Side = npt.ArrayLike | RunSamples


@dataclass(frozen=True, slots=True)
class KpiSamples:
    """Input of :func:`gate`: one KPI of one instance, both sides' samples."""

    metric: MetricDef
    reference: Side
    candidate: Side
    instance: str = ""


def _finite(values: npt.ArrayLike) -> FloatArray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def _runs(side: Side) -> list[FloatArray]:
    """A side's runs, finite samples only, empty runs dropped."""
    parts = side.runs if isinstance(side, RunSamples) else (side,)
    return [run for run in (_finite(part) for part in parts) if run.size]


def _run_variance(runs_reference: int, runs_candidate: int) -> RunVariance:
    several = (runs_reference >= 2) + (runs_candidate >= 2)
    if several == 2:
        return RunVariance.BETWEEN_RUNS
    if several == 1 and min(runs_reference, runs_candidate) == 1:
        return RunVariance.BORROWED
    return RunVariance.WITHIN_RUN_ONLY


def _quantile(statistic: Statistic) -> float | None:
    """The statistic as a quantile in [0, 1] (None for the mean)."""
    match statistic:
        case Statistic.MEAN:
            return None
        case Statistic.MEDIAN:
            return 0.5
        case Statistic.P90 | Statistic.P95 | Statistic.P99:
            return int(statistic.value[1:]) / 100.0


def _statistic(samples: FloatArray, statistic: Statistic, axis: int | None = None) -> FloatArray:
    match statistic:
        case Statistic.MEDIAN:
            return np.asarray(np.median(samples, axis=axis), dtype=np.float64)
        case Statistic.MEAN:
            return np.asarray(np.mean(samples, axis=axis), dtype=np.float64)
        case Statistic.P90 | Statistic.P95 | Statistic.P99:
            q = int(statistic.value[1:]) / 100.0
            return np.asarray(np.quantile(samples, q, axis=axis), dtype=np.float64)


def _bootstrap(
    samples: FloatArray, statistic: Statistic, iterations: int, rng: np.random.Generator
) -> FloatArray:
    """``iterations`` bootstrap replicates of the statistic, in memory-bounded batches."""
    n = samples.size
    out = np.empty(iterations, dtype=np.float64)
    batch = max(1, MAX_BOOTSTRAP_CELLS // n)
    for start in range(0, iterations, batch):
        rows = min(batch, iterations - start)
        idx = rng.integers(0, n, size=(rows, n))
        out[start : start + rows] = _statistic(samples[idx], statistic, axis=1)
    return out


def _side_replicates(
    own: RunSpread,
    other: RunSpread,
    statistic: Statistic,
    iterations: int,
    rng: np.random.Generator,
) -> tuple[FloatArray, bool]:
    """Bootstrap replicates of one side's statistic, and whether they hold run-to-run variance.

    Several runs: the hierarchical bootstrap of the widened runs, rescaled so that it centres on
    the statistic of the runs as measured (widening moves the pooled statistic slightly). One run:
    the plain bootstrap of its requests, each replicate scaled by a run deviation of ``other``
    drawn at random, when ``other`` has several runs (see the module docstring).
    """
    q = _quantile(statistic)
    if len(own.runs) >= 2:
        replicates = bootstrap_runs(own.runs, q, iterations, rng)
        if own.log_deviations is not None:
            widened = pooled_statistic(np.concatenate(own.runs), q)
            if widened > 0:
                replicates = replicates * (own.measured / widened)
        return replicates, True
    replicates = _bootstrap(own.runs[0], statistic, iterations, rng)
    if other.log_deviations is None:
        return replicates, False
    drawn = other.log_deviations[rng.integers(0, other.log_deviations.size, size=iterations)]
    return replicates * np.exp(drawn), True


def _runs_clause(variance: RunVariance, runs_reference: int, runs_candidate: int) -> str:
    """The sentence of a verdict's reason that says which variance its interval holds."""
    single, several, count = (
        ("candidate", "reference", runs_reference)
        if runs_candidate == 1
        else ("reference", "candidate", runs_candidate)
    )
    match variance:
        case RunVariance.BETWEEN_RUNS:
            return (
                f"runs resampled ({runs_reference} reference, {runs_candidate} candidate):"
                " the interval holds run-to-run variance"
            )
        case RunVariance.BORROWED:
            return (
                f"the {single}'s one run takes the run-to-run spread of the {several}'s"
                f" {count} runs"
            )
        case RunVariance.ONE_SIDE:
            return (
                f"runs resampled on the {several} side only ({count} runs); the {single}'s"
                " one run adds within-run variance only"
            )
        case RunVariance.WITHIN_RUN_ONLY:
            return (
                "one run per side: the interval holds within-run variance only, not"
                " run-to-run variance; record several runs per release"
            )


def _fmt_pct(x: float) -> str:
    return f"{x * 100:+.1f}%"


@dataclass(frozen=True, slots=True)
class _Judgement:
    """What every verdict of one comparison shares: the KPI, its policy and the samples' sizes."""

    metric: MetricDef
    instance: str
    statistic: Statistic
    threshold: float
    confidence: float
    n_reference: int
    n_candidate: int
    runs_reference: int
    runs_candidate: int

    def verdict(
        self,
        v: Verdict,
        reason: str,
        variance: RunVariance,
        *,
        ref_value: float | None = None,
        cand_value: float | None = None,
        rel: float | None = None,
        ci: tuple[float, float] | None = None,
        p: float | None = None,
    ) -> KpiVerdict:
        return KpiVerdict(
            kpi=self.metric.name,
            unit=self.metric.unit,
            better=self.metric.better,
            instance=self.instance,
            statistic=self.statistic,
            verdict=v,
            reference_value=ref_value,
            candidate_value=cand_value,
            relative_change=rel,
            ci_low=None if ci is None else ci[0],
            ci_high=None if ci is None else ci[1],
            p_value=p,
            confidence=self.confidence,
            threshold=self.threshold,
            n_reference=self.n_reference,
            n_candidate=self.n_candidate,
            reason=reason,
            runs_reference=self.runs_reference,
            runs_candidate=self.runs_candidate,
            run_variance=variance,
        )


def _ratio_replicates(
    ref_runs: list[FloatArray],
    cand_runs: list[FloatArray],
    statistic: Statistic,
    spec: GateSpec,
    variance: RunVariance,
) -> tuple[FloatArray, RunVariance]:
    """Finite bootstrap replicates of candidate / reference, and the run variance they hold
    (a borrowed spread that one side could not lend falls back to one side only)."""
    rng = np.random.default_rng(spec.seed)
    iterations = spec.bootstrap_iterations
    if len(ref_runs) == 1 and len(cand_runs) == 1:
        boot_ref = _bootstrap(ref_runs[0], statistic, iterations, rng)
        boot_cand = _bootstrap(cand_runs[0], statistic, iterations, rng)
    else:
        q = _quantile(statistic)
        ref_spread = widen_run_spread(ref_runs, q)
        cand_spread = widen_run_spread(cand_runs, q)
        boot_ref, ref_between = _side_replicates(
            ref_spread, cand_spread, statistic, iterations, rng
        )
        boot_cand, cand_between = _side_replicates(
            cand_spread, ref_spread, statistic, iterations, rng
        )
        if variance is RunVariance.BORROWED and not (ref_between and cand_between):
            variance = RunVariance.ONE_SIDE
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = boot_cand / boot_ref
    return ratios[np.isfinite(ratios)], variance


def _interval(ratios: FloatArray, alpha: float) -> tuple[float, float, float]:
    """The percentile interval of the ratio at 1 - ``alpha`` and the two-sided bootstrap p-value
    of "no change" (ratio 1)."""
    lo, hi = (float(x) for x in np.quantile(ratios, [alpha / 2, 1 - alpha / 2]))
    below = (int(np.count_nonzero(ratios <= 1.0)) + 1) / (ratios.size + 1)
    above = (int(np.count_nonzero(ratios >= 1.0)) + 1) / (ratios.size + 1)
    return lo, hi, min(1.0, 2.0 * min(below, above))


def _decide(
    metric: MetricDef, rel: float, lo: float, hi: float, threshold: float
) -> tuple[Verdict, str]:
    """Unchanged below the threshold; else regressed or improved when the interval excludes 1,
    inconclusive when it does not."""
    if abs(rel) < threshold:
        return Verdict.UNCHANGED, "below the threshold"
    if lo <= 1.0 <= hi:
        return Verdict.INCONCLUSIVE, "beyond the threshold but not significant"
    worse = rel > 0 if metric.better is Better.LOWER else rel < 0
    return (Verdict.REGRESSED if worse else Verdict.IMPROVED), "significant"


def compare_kpi(
    metric: MetricDef,
    reference: Side,
    candidate: Side,
    spec: GateSpec | None = None,
    *,
    instance: str = "",
) -> KpiVerdict:
    """Judge one KPI: candidate samples against reference samples (see the module docstring).

    Either side is an array (one run) or :class:`RunSamples` (several runs). Non-finite samples
    (e.g. TPOT of a one-token answer) are dropped; ``n_*`` count the rest, ``runs_*`` the runs
    left with a sample. With one run per side the result is the one of a plain bootstrap.
    Pure and deterministic: the bootstrap is seeded from ``spec.seed``.
    """
    spec = spec if spec is not None else GateSpec()
    threshold, statistic, min_samples = spec.policy(metric)
    ref_runs, cand_runs = _runs(reference), _runs(candidate)
    ref = np.concatenate(ref_runs) if ref_runs else np.empty(0)
    cand = np.concatenate(cand_runs) if cand_runs else np.empty(0)
    variance = _run_variance(len(ref_runs), len(cand_runs))
    judge = _Judgement(
        metric,
        instance,
        statistic,
        threshold,
        1.0 - spec.alpha,
        int(ref.size),
        int(cand.size),
        len(ref_runs),
        len(cand_runs),
    )
    short = [
        f"{side} n={n} < {min_samples}"
        for side, n in (("reference", ref.size), ("candidate", cand.size))
        if n < min_samples
    ]
    if short:
        return judge.verdict(Verdict.INCONCLUSIVE, f"too few samples: {', '.join(short)}", variance)

    ref_value = float(_statistic(ref, statistic))
    cand_value = float(_statistic(cand, statistic))
    if not ref_value > 0:
        reason = f"reference {statistic} is {ref_value:g}: a relative change is undefined"
        return judge.verdict(
            Verdict.INCONCLUSIVE, reason, variance, ref_value=ref_value, cand_value=cand_value
        )
    rel = cand_value / ref_value - 1.0

    ratios, variance = _ratio_replicates(ref_runs, cand_runs, statistic, spec, variance)
    if ratios.size < spec.bootstrap_iterations // 2:
        reason = f"reference {statistic} is 0 in most bootstrap resamples: no interval"
        return judge.verdict(
            Verdict.INCONCLUSIVE,
            reason,
            variance,
            rel=rel,
            ref_value=ref_value,
            cand_value=cand_value,
        )
    lo, hi, p = _interval(ratios, spec.alpha)
    v, why = _decide(metric, rel, lo, hi, threshold)
    ci_text = f"{judge.confidence:.0%} CI of the ratio [{lo:.4f}, {hi:.4f}]"
    ci_clause = {
        Verdict.UNCHANGED: ci_text,
        Verdict.INCONCLUSIVE: f"{ci_text} contains 1",
    }.get(v, f"{ci_text} excludes 1")
    separator = "; " if v is Verdict.UNCHANGED else ", "
    reason = (
        f"{statistic} {_fmt_pct(rel)} (threshold ±{threshold:.1%}): {why}{separator}{ci_clause};"
        f" {_runs_clause(variance, len(ref_runs), len(cand_runs))}"
    )
    return judge.verdict(
        v, reason, variance, ref_value=ref_value, cand_value=cand_value, rel=rel, ci=(lo, hi), p=p
    )


def acknowledge(
    verdicts: Iterable[KpiVerdict],
    acknowledgements: Sequence[Acknowledgement],
    candidate_labels: Mapping[str, str],
) -> list[KpiVerdict]:
    """Attach the first matching acknowledgement to each regression; other verdicts pass as is."""
    out: list[KpiVerdict] = []
    for v in verdicts:
        if v.verdict is Verdict.REGRESSED and v.acknowledgement is None:
            match = next(
                (a for a in acknowledgements if a.matches(v.kpi, v.instance, candidate_labels)),
                None,
            )
            if match is not None:
                v = replace(v, acknowledgement=match)
        out.append(v)
    return out


def gate(
    kpis: Iterable[KpiSamples],
    spec: GateSpec | None = None,
    acknowledgements: Sequence[Acknowledgement] = (),
    candidate_labels: Mapping[str, str] | None = None,
) -> list[KpiVerdict]:
    """Judge every KPI, then apply the acknowledgements; order follows the input."""
    verdicts = [
        compare_kpi(k.metric, k.reference, k.candidate, spec, instance=k.instance) for k in kpis
    ]
    return acknowledge(verdicts, acknowledgements, candidate_labels or {})


def gate_exit_code(verdicts: Iterable[KpiVerdict]) -> ExitCode:
    """``ExitCode.REGRESSION`` if any regression is unacknowledged, else ``ExitCode.OK``."""
    return ExitCode.REGRESSION if any(v.failing for v in verdicts) else ExitCode.OK


def windowed_rates(
    t_end_s: npt.ArrayLike,
    window_start_s: float,
    window_end_s: float,
    *,
    weights: npt.ArrayLike | None = None,
    n_windows: int = 10,
) -> FloatArray:
    """Rates per equal sub-window of ``[window_start_s, window_end_s)``: the rate KPI's samples.

    ``t_end_s`` are completion offsets of successful requests; ``weights`` what each counts
    (output tokens for token throughput; 1 when None, for requests/s). Requests completing outside
    the window do not count (DESIGN.md §3). The mean of the result equals the window's rate.
    """
    if not window_end_s > window_start_s:
        raise ValueError(f"empty window [{window_start_s}, {window_end_s})")
    if n_windows < 1:
        raise ValueError(f"n_windows must be >= 1, got {n_windows}")
    ends = np.asarray(t_end_s, dtype=np.float64).ravel()
    w = np.ones_like(ends) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != ends.shape:
        raise ValueError(f"weights has {w.size} values for {ends.size} completion times")
    edges = np.linspace(window_start_s, window_end_s, n_windows + 1)
    inside = (ends >= window_start_s) & (ends < window_end_s)
    sums, _ = np.histogram(ends[inside], bins=edges, weights=w[inside])
    width = (window_end_s - window_start_s) / n_windows
    return np.asarray(sums / width, dtype=np.float64)

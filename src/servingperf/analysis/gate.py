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
a reader how sure the figure is. Verdicts:

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

from servingperf.errors import ConfigError, ExitCode
from servingperf.model.metrics import METRICS, Better, MetricDef
from servingperf.model.specs import Spec

FloatArray = npt.NDArray[np.float64]

# Upper bound on the cells of one bootstrap resampling matrix, so memory stays bounded (~32 MB)
# whatever the sample count; iterations are computed in batches of this size.
_MAX_BOOTSTRAP_CELLS = 4_000_000


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


def is_rate_metric(metric: MetricDef) -> bool:
    """Rate KPIs (throughput, goodput) have a per-second unit and one value per (sub-)window."""
    return metric.unit.endswith("/s")


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
        default_factory=lambda: {"ttft_s": KpiPolicySpec(threshold=0.10)},
        description="per-KPI overrides; by default TTFT needs a 10% change, because queueing and"
        " scheduling make it the noisiest figure between otherwise identical runs",
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
        threshold = override.threshold if override.threshold is not None else self.threshold
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
class KpiSamples:
    """Input of :func:`gate`: one KPI of one instance, both sides' samples."""

    metric: MetricDef
    reference: npt.ArrayLike
    candidate: npt.ArrayLike
    instance: str = ""


def _finite(values: npt.ArrayLike) -> FloatArray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


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
    batch = max(1, _MAX_BOOTSTRAP_CELLS // n)
    for start in range(0, iterations, batch):
        rows = min(batch, iterations - start)
        idx = rng.integers(0, n, size=(rows, n))
        out[start : start + rows] = _statistic(samples[idx], statistic, axis=1)
    return out


def _fmt_pct(x: float) -> str:
    return f"{x * 100:+.1f}%"


def compare_kpi(
    metric: MetricDef,
    reference: npt.ArrayLike,
    candidate: npt.ArrayLike,
    spec: GateSpec | None = None,
    *,
    instance: str = "",
) -> KpiVerdict:
    """Judge one KPI: candidate samples against reference samples (see the module docstring).

    Non-finite samples (e.g. TPOT of a one-token answer) are dropped; ``n_*`` count the rest.
    Pure and deterministic: the bootstrap is seeded from ``spec.seed``.
    """
    spec = spec if spec is not None else GateSpec()
    threshold, statistic, min_samples = spec.policy(metric)
    ref = _finite(reference)
    cand = _finite(candidate)
    confidence = 1.0 - spec.alpha

    def verdict(
        v: Verdict,
        reason: str,
        *,
        ref_value: float | None = None,
        cand_value: float | None = None,
        rel: float | None = None,
        ci: tuple[float, float] | None = None,
        p: float | None = None,
    ) -> KpiVerdict:
        return KpiVerdict(
            kpi=metric.name,
            unit=metric.unit,
            better=metric.better,
            instance=instance,
            statistic=statistic,
            verdict=v,
            reference_value=ref_value,
            candidate_value=cand_value,
            relative_change=rel,
            ci_low=None if ci is None else ci[0],
            ci_high=None if ci is None else ci[1],
            p_value=p,
            confidence=confidence,
            threshold=threshold,
            n_reference=int(ref.size),
            n_candidate=int(cand.size),
            reason=reason,
        )

    short = [
        f"{side} n={n} < {min_samples}"
        for side, n in (("reference", ref.size), ("candidate", cand.size))
        if n < min_samples
    ]
    if short:
        return verdict(Verdict.INCONCLUSIVE, f"too few samples: {', '.join(short)}")

    ref_value = float(_statistic(ref, statistic))
    cand_value = float(_statistic(cand, statistic))
    if not ref_value > 0:
        return verdict(
            Verdict.INCONCLUSIVE,
            f"reference {statistic} is {ref_value:g}: a relative change is undefined",
            ref_value=ref_value,
            cand_value=cand_value,
        )
    rel = cand_value / ref_value - 1.0

    rng = np.random.default_rng(spec.seed)
    boot_ref = _bootstrap(ref, statistic, spec.bootstrap_iterations, rng)
    boot_cand = _bootstrap(cand, statistic, spec.bootstrap_iterations, rng)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = boot_cand / boot_ref
    ratios = ratios[np.isfinite(ratios)]
    if ratios.size < spec.bootstrap_iterations // 2:
        return verdict(
            Verdict.INCONCLUSIVE,
            f"reference {statistic} is 0 in most bootstrap resamples: no interval",
            ref_value=ref_value,
            cand_value=cand_value,
            rel=rel,
        )
    lo, hi = (float(x) for x in np.quantile(ratios, [spec.alpha / 2, 1 - spec.alpha / 2]))
    below = (int(np.count_nonzero(ratios <= 1.0)) + 1) / (ratios.size + 1)
    above = (int(np.count_nonzero(ratios >= 1.0)) + 1) / (ratios.size + 1)
    p = min(1.0, 2.0 * min(below, above))
    ci_text = f"{confidence:.0%} CI of the ratio [{lo:.4f}, {hi:.4f}]"
    change = f"{statistic} {_fmt_pct(rel)} (threshold ±{threshold:.1%})"
    if abs(rel) < threshold:
        v, reason = Verdict.UNCHANGED, f"{change}: below the threshold; {ci_text}"
    elif lo <= 1.0 <= hi:
        v = Verdict.INCONCLUSIVE
        reason = f"{change}: beyond the threshold but not significant, {ci_text} contains 1"
    else:
        worse = rel > 0 if metric.better is Better.LOWER else rel < 0
        v = Verdict.REGRESSED if worse else Verdict.IMPROVED
        reason = f"{change}: significant, {ci_text} excludes 1"
    return verdict(v, reason, ref_value=ref_value, cand_value=cand_value, rel=rel, ci=(lo, hi), p=p)


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

"""The regression gate: verdicts, evidence, acknowledgements, and its measured error rates."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from servingperf.analysis.gate import (
    Acknowledgement,
    GateSpec,
    KpiPolicySpec,
    KpiSamples,
    Statistic,
    Verdict,
    acknowledge,
    compare_kpi,
    gate,
    gate_exit_code,
    parse_acknowledgements,
    windowed_rates,
)
from servingperf.errors import ConfigError, ExitCode
from servingperf.model.metrics import metric

TPOT = metric("tpot_s")
TTFT = metric("ttft_s")
THROUGHPUT = metric("output_throughput_tps")


def lognormal(seed: int, n: int, median: float = 0.05, sigma: float = 0.25) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(np.log(median), sigma, n)


def test_false_alarm_and_detection_rates_at_defaults() -> None:
    """200 seeded A/A comparisons (n=500 per side, lognormal sigma=0.25, i.e. CV ~25%) and 200 with
    a planted 10% TPOT regression, at the default settings (median, 5% threshold, 95% bootstrap)."""
    trials, n, sigma = 200, 500, 0.25
    aa = {v: 0 for v in Verdict}
    planted = {v: 0 for v in Verdict}
    for i in range(trials):
        ref = lognormal(10_000 + i, n, sigma=sigma)
        same = lognormal(20_000 + i, n, sigma=sigma)
        slower = lognormal(30_000 + i, n, median=0.05 * 1.10, sigma=sigma)
        aa[compare_kpi(TPOT, ref, same).verdict] += 1
        planted[compare_kpi(TPOT, ref, slower).verdict] += 1
    false_alarm = aa[Verdict.REGRESSED] / trials
    any_change = (aa[Verdict.REGRESSED] + aa[Verdict.IMPROVED]) / trials
    detection = planted[Verdict.REGRESSED] / trials
    print(
        f"\ngate A/A (n={n}/side, lognormal sigma={sigma}, {trials} trials): "
        f"false 'regressed' {false_alarm:.1%}, any change {any_change:.1%}, "
        f"inconclusive {aa[Verdict.INCONCLUSIVE] / trials:.1%}; "
        f"planted +10% TPOT: detected {detection:.1%}, "
        f"inconclusive {planted[Verdict.INCONCLUSIVE] / trials:.1%}"
    )
    assert false_alarm <= 0.02
    assert detection >= 0.95
    assert planted[Verdict.IMPROVED] == 0


def test_throughput_drop_detected_from_sub_window_rates() -> None:
    """Rate KPIs: per-sub-window rates are the samples; higher is better, so a drop regresses."""
    rng = np.random.default_rng(7)
    ref = rng.normal(1000.0, 40.0, 10)
    cand = rng.normal(880.0, 40.0, 10)
    v = compare_kpi(THROUGHPUT, ref, cand)
    assert v.statistic is Statistic.MEAN
    assert v.verdict is Verdict.REGRESSED, v.reason
    same = compare_kpi(THROUGHPUT, ref, rng.normal(1000.0, 40.0, 10))
    assert same.verdict is Verdict.UNCHANGED, same.reason


def test_improvement_is_flagged() -> None:
    v = compare_kpi(TTFT, lognormal(1, 800), lognormal(2, 800, median=0.04))
    assert v.verdict is Verdict.IMPROVED
    assert v.relative_change is not None
    assert v.relative_change < -0.05
    assert not v.failing


def test_evidence_is_complete_and_consistent() -> None:
    ref, cand = lognormal(3, 600), lognormal(4, 700, median=0.06)
    v = compare_kpi(TPOT, ref, cand, instance="flan-t5-small-0")
    assert v.verdict is Verdict.REGRESSED
    assert (v.n_reference, v.n_candidate) == (600, 700)
    assert v.reference_value == pytest.approx(float(np.median(ref)))
    assert v.candidate_value == pytest.approx(float(np.median(cand)))
    assert v.relative_change is not None
    assert v.relative_change == pytest.approx(float(np.median(cand) / np.median(ref)) - 1)
    assert v.ci_low is not None
    assert v.ci_high is not None
    assert 1.0 < v.ci_low <= 1 + v.relative_change <= v.ci_high
    assert v.p_value is not None
    assert v.p_value < 0.05
    assert (v.threshold, v.confidence, v.instance) == (0.05, 0.95, "flan-t5-small-0")
    assert "significant" in v.reason
    assert "+" in v.reason
    assert v.failing
    assert v.outcome == "regressed"


def test_too_few_samples_is_inconclusive_with_the_reason() -> None:
    v = compare_kpi(TPOT, lognormal(1, 12), lognormal(2, 500, median=0.2))
    assert v.verdict is Verdict.INCONCLUSIVE
    assert "too few samples" in v.reason
    assert "reference n=12 < 30" in v.reason
    assert v.reference_value is None
    assert v.p_value is None


def test_large_but_noisy_change_is_inconclusive() -> None:
    ref = lognormal(5, 40, sigma=1.5)
    v = compare_kpi(TPOT, ref, ref * 1.10)
    assert v.relative_change == pytest.approx(0.10)
    assert v.verdict is Verdict.INCONCLUSIVE
    assert "not significant" in v.reason


def test_small_but_significant_change_is_unchanged() -> None:
    ref = lognormal(6, 5000, sigma=0.05)
    cand = lognormal(7, 5000, median=0.05 * 1.02, sigma=0.05)
    v = compare_kpi(TPOT, ref, cand)
    assert v.ci_low is not None
    assert v.ci_low > 1.0
    assert v.verdict is Verdict.UNCHANGED  # ... but below the 5% threshold


def test_per_kpi_overrides() -> None:
    ref, cand = lognormal(8, 800), lognormal(9, 800, median=0.055)
    assert compare_kpi(TPOT, ref, cand).verdict is Verdict.REGRESSED
    lenient = GateSpec(kpis={"tpot_s": KpiPolicySpec(threshold=0.25)})
    assert compare_kpi(TPOT, ref, cand, lenient).verdict is Verdict.UNCHANGED
    # the override is per KPI: TTFT keeps the default threshold
    assert compare_kpi(TTFT, ref, cand, lenient).verdict is Verdict.REGRESSED
    p90 = GateSpec(kpis={"tpot_s": KpiPolicySpec(statistic=Statistic.P90, min_samples=1000)})
    v = compare_kpi(TPOT, ref, cand, p90)
    assert v.statistic is Statistic.P90
    assert v.verdict is Verdict.INCONCLUSIVE


def test_tail_statistic_sees_a_tail_only_regression() -> None:
    rng = np.random.default_rng(11)
    ref = rng.lognormal(np.log(0.05), 0.2, 3000)
    cand = rng.lognormal(np.log(0.05), 0.2, 3000)
    tail = cand > np.quantile(cand, 0.85)
    cand[tail] *= 1.5  # the slowest 15% get 50% slower: the median does not move
    assert compare_kpi(TPOT, ref, cand).verdict is Verdict.UNCHANGED
    spec = GateSpec(kpis={"tpot_s": KpiPolicySpec(statistic=Statistic.P95)})
    assert compare_kpi(TPOT, ref, cand, spec).verdict is Verdict.REGRESSED


def test_zero_reference_and_non_finite_samples() -> None:
    zeros = np.zeros(100)
    v = compare_kpi(metric("error_rate"), zeros, np.full(100, 0.01))
    assert v.verdict is Verdict.INCONCLUSIVE
    assert "undefined" in v.reason
    ref = np.concatenate([lognormal(1, 100), [np.nan, np.inf]])
    v = compare_kpi(TPOT, ref, lognormal(2, 100))
    assert v.n_reference == 100


def test_deterministic_for_a_seed() -> None:
    ref, cand = lognormal(1, 300), lognormal(2, 300, median=0.052)
    a, b = compare_kpi(TPOT, ref, cand), compare_kpi(TPOT, ref, cand)
    assert a == b
    c = compare_kpi(TPOT, ref, cand, GateSpec(seed=1))
    assert c.relative_change == a.relative_change
    assert c.ci_low != a.ci_low


def test_acknowledged_regression_is_reported_but_does_not_fail() -> None:
    samples = [
        KpiSamples(TPOT, lognormal(1, 500), lognormal(2, 500, median=0.07), "m-0"),
        KpiSamples(TTFT, lognormal(3, 500), lognormal(4, 500, median=0.07), "m-0"),
    ]
    plain = gate(samples)
    assert [v.verdict for v in plain] == [Verdict.REGRESSED, Verdict.REGRESSED]
    assert gate_exit_code(plain) is ExitCode.REGRESSION
    ack = Acknowledgement(kpi="tpot_*", reason="new scheduler", candidate={"release": "2.6.*"})
    partly = gate(samples, acknowledgements=[ack], candidate_labels={"release": "2.6.1"})
    assert [v.outcome for v in partly] == ["acknowledged", "regressed"]
    assert partly[0].acknowledgement == ack
    assert partly[0].verdict is Verdict.REGRESSED
    assert gate_exit_code(partly) is ExitCode.REGRESSION
    both = acknowledge(
        plain,
        [ack, Acknowledgement(kpi="ttft_s", instance="m-*", reason="known")],
        {"release": "2.6.0"},
    )
    assert gate_exit_code(both) is ExitCode.OK
    other_release = acknowledge(plain, [ack], {"release": "2.7.0"})
    assert gate_exit_code(other_release) is ExitCode.REGRESSION
    no_label = acknowledge(plain, [ack], {})
    assert all(v.acknowledgement is None for v in no_label)
    wrong_instance = acknowledge(plain, [Acknowledgement("*", "x", instance="other")], {})
    assert all(v.acknowledgement is None for v in wrong_instance)


def test_only_regressions_are_acknowledged() -> None:
    improved = compare_kpi(TTFT, lognormal(1, 800), lognormal(2, 800, median=0.04))
    (after,) = acknowledge([improved], [Acknowledgement("*", "anything")], {})
    assert after.acknowledgement is None
    assert after.outcome == "improved"
    assert gate_exit_code([]) is ExitCode.OK


def test_parse_acknowledgements() -> None:
    data = {
        "version": 1,
        "acknowledgements": [
            {"kpi": "tpot_s", "candidate": {"release": "2.6.0"}, "reason": "batching change"},
            {"kpi": "ttft_s", "instance": "bloom-*", "reason": "cold cache"},
        ],
    }
    acks = parse_acknowledgements(data, "acks.yaml")
    assert acks[0] == Acknowledgement("tpot_s", "batching change", "*", {"release": "2.6.0"})
    assert acks[1].instance == "bloom-*"
    assert dict(acks[1].candidate) == {}
    with pytest.raises(ConfigError, match=r"acks\.yaml.*acknowledgements\.0\.reason"):
        parse_acknowledgements({"acknowledgements": [{"kpi": "tpot_s"}]}, "acks.yaml")
    with pytest.raises(ConfigError, match=r"kpis"):
        parse_acknowledgements({"acknowledgements": [], "kpis": 1}, "a.yaml")
    with pytest.raises(ConfigError, match="version"):
        parse_acknowledgements({"version": 2}, "a.yaml")


def test_gate_spec_rejects_unknown_kpis_and_keys() -> None:
    with pytest.raises(ValidationError, match="unknown KPI"):
        GateSpec(kpis={"tpot": KpiPolicySpec(threshold=0.1)})
    with pytest.raises(ValidationError):
        GateSpec.model_validate({"treshold": 0.1})
    with pytest.raises(ValidationError):
        GateSpec(threshold=0)


def test_windowed_rates() -> None:
    ends = np.array([0.5, 1.5, 2.5, 3.5, 9.9, 10.0, 12.0])
    tokens = np.array([10, 20, 30, 40, 50, 60, 70])
    rates = windowed_rates(ends, 0.0, 10.0, weights=tokens, n_windows=5)
    assert rates.tolist() == pytest.approx([15.0, 35.0, 0.0, 0.0, 25.0])
    assert rates.mean() == pytest.approx((10 + 20 + 30 + 40 + 50) / 10.0)
    assert windowed_rates(ends, 0.0, 10.0, n_windows=1).tolist() == [0.5]
    with pytest.raises(ValueError, match="empty window"):
        windowed_rates(ends, 5.0, 5.0)
    with pytest.raises(ValueError, match="weights"):
        windowed_rates(ends, 0.0, 10.0, weights=[1, 2])

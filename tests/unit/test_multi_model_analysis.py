"""Saturation verdicts of a multi-model run, on synthetic samples and records with planted effects."""

from __future__ import annotations

import json

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pytest

from servingperf.analysis.multi_model import (
    DEGRADED,
    FIGURES,
    INCONCLUSIVE,
    NOT_APPLICABLE,
    NOT_DEGRADED,
    NOT_SATURATED,
    SATURATED,
    Comparison,
    compare,
    instance_verdict,
    overall_verdict,
    summarize_multi_model,
)
from servingperf.model.metrics import Better
from servingperf.model.records import RequestRecord
from servingperf.model.specs import MultiModelSpec
from servingperf.results.rundir import PhaseWindow, RunInfo
from tests.fakes.records import record, table


def _judge(
    concurrent: npt.ArrayLike,
    sequential: npt.ArrayLike,
    statistic: str,
    better: Better = Better.LOWER,
    *,
    min_samples: int = 10,
    seed: int | tuple[int, ...] = 0,
) -> Comparison:
    return compare(
        concurrent,
        sequential,
        statistic=statistic,
        better=better,
        threshold=0.10,
        confidence=0.95,
        iterations=1000,
        min_samples=min_samples,
        seed=seed,
    )


def _latencies(rng: np.random.Generator, center: float, n: int = 200) -> npt.NDArray[np.float64]:
    return center * (1.0 + 0.05 * rng.standard_normal(n))


def test_the_same_distribution_is_not_degraded() -> None:
    rng = np.random.default_rng(1)
    result = _judge(_latencies(rng, 1.0), _latencies(rng, 1.0), "mean")
    assert result.verdict == NOT_DEGRADED
    assert result.ratio_ci is not None
    assert result.ratio_ci[1] < 1.10
    assert result.ratio == pytest.approx(1.0, abs=0.02)


def test_latency_half_again_as_long_is_degraded() -> None:
    rng = np.random.default_rng(2)
    result = _judge(_latencies(rng, 1.5), _latencies(rng, 1.0), "median")
    assert result.verdict == DEGRADED
    assert result.degradation == pytest.approx(0.5, abs=0.03)
    assert result.ratio_ci is not None
    assert result.ratio_ci[0] > 1.0
    assert result.concurrent_ci is not None
    assert result.sequential_ci is not None
    low, high = result.concurrent_ci
    assert low <= result.concurrent <= high  # type: ignore[operator]


def test_throughput_is_judged_in_its_own_direction() -> None:
    rng = np.random.default_rng(3)
    halved = _judge(
        _latencies(rng, 50.0, 10), _latencies(rng, 100.0, 10), "rate", Better.HIGHER, min_samples=5
    )
    assert halved.verdict == DEGRADED
    assert halved.degradation == pytest.approx(0.5, abs=0.05)
    doubled = _judge(
        _latencies(rng, 200.0, 10), _latencies(rng, 100.0, 10), "rate", Better.HIGHER, min_samples=5
    )
    assert doubled.verdict == NOT_DEGRADED  # an improvement is no degradation
    assert doubled.degradation is not None
    assert doubled.degradation < 0


def test_a_large_change_hidden_in_noise_is_inconclusive() -> None:
    rng = np.random.default_rng(4)

    def noisy(center: float) -> npt.NDArray[np.float64]:
        return center * np.exp(rng.standard_normal(12))

    result = _judge(noisy(1.3), noisy(1.0), "mean")
    assert result.verdict == INCONCLUSIVE
    assert "interval" in result.reason


def test_too_few_samples_and_no_samples() -> None:
    few = _judge([1.0] * 5, [1.0] * 50, "mean")
    assert few.verdict == INCONCLUSIVE
    assert "too few samples" in few.reason
    none = _judge([], [np.nan], "median")
    assert none.verdict == NOT_APPLICABLE


def _bimodal(rng: np.random.Generator, share_fast: float, n: int = 160) -> npt.NDArray[np.float64]:
    """TTFT of closed-loop users in lockstep with a server's steps: admitted by the step that
    starts as they arrive (35 ms) or by the next one (44 ms)."""
    fast = rng.random(n) < share_fast
    return np.where(fast, 0.035, 0.044) + 0.001 * rng.standard_normal(n)


def test_a_bimodal_ttft_is_judged_not_degraded_when_the_server_is_steady() -> None:
    """The multi-model TTFT figure: the modes' shares drift a little between phases (0.5 and
    0.45 here) and nothing else changes. The figure must say "not degraded"; a median, which
    jumps between the modes, cannot decide."""
    (ttft,) = [f for f in FIGURES if f.metric == "ttft_s"]
    undecided = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        concurrent, sequential = _bimodal(rng, 0.5), _bimodal(rng, 0.45)
        assert _judge(concurrent, sequential, ttft.statistic, seed=seed).verdict == NOT_DEGRADED
        undecided += _judge(concurrent, sequential, "median", seed=seed).verdict == INCONCLUSIVE
    assert undecided >= 5  # the median could not decide (10 of the 20): what the strict test saw


def test_the_ttft_figure_still_finds_a_real_slow_down() -> None:
    (ttft,) = [f for f in FIGURES if f.metric == "ttft_s"]
    rng = np.random.default_rng(7)
    slower = _bimodal(rng, 0.5) * 1.3
    slower[:3] = 5.0  # a few stragglers do not move it either
    result = _judge(slower, _bimodal(rng, 0.5), ttft.statistic)
    assert result.verdict == DEGRADED
    assert result.degradation == pytest.approx(0.3, abs=0.05)


def test_the_bootstrap_is_seeded() -> None:
    rng = np.random.default_rng(5)
    a, b = _latencies(rng, 1.2, 50), _latencies(rng, 1.0, 50)
    first = _judge(a, b, "p90", seed=(0, 3))
    again = _judge(a, b, "p90", seed=(0, 3))
    assert first == again


def _comparison(verdict: str) -> Comparison:
    return Comparison(verdict, "", Better.LOWER, 10, 10, ratio=1.5)


def test_instance_and_overall_verdicts_combine_the_figures() -> None:
    assert instance_verdict({"a": _comparison(NOT_DEGRADED), "b": _comparison(DEGRADED)})[0] == (
        SATURATED
    )
    assert (
        instance_verdict({"a": _comparison(NOT_DEGRADED), "b": _comparison(NOT_APPLICABLE)})[0]
        == NOT_SATURATED
    )
    assert (
        instance_verdict({"a": _comparison(NOT_DEGRADED), "b": _comparison(INCONCLUSIVE)})[0]
        == INCONCLUSIVE
    )
    assert instance_verdict({"a": _comparison(NOT_APPLICABLE)})[0] == INCONCLUSIVE
    assert overall_verdict({"x": NOT_SATURATED, "y": SATURATED})[0] == SATURATED
    assert overall_verdict({"x": NOT_SATURATED, "y": NOT_SATURATED})[0] == NOT_SATURATED
    assert overall_verdict({"x": NOT_SATURATED, "y": INCONCLUSIVE})[0] == INCONCLUSIVE


# --- whole runs from records --------------------------------------------------------------------


def synthetic_phase(
    instance: str, phase: str, start: float, length: float, step_s: float, users: int = 4
) -> list[RequestRecord]:
    """Closed-loop-like requests of 8 tokens: each user sends the next as the last one ends."""
    out: list[RequestRecord] = []
    tokens = 8
    for user in range(users):
        t = start + 0.013 * user
        sequence = 0
        while t < start + length:
            ttft = 1.5 * step_s
            end = t + ttft + (tokens - 1) * step_s
            out.append(
                record(
                    request_id=f"{instance}:{phase}:w0:u{user}:{sequence}",
                    instance=instance,
                    model="m",
                    phase=phase,
                    user=user,
                    output_tokens=tokens,
                    t_sent_s=t,
                    t_first_token_s=t + ttft,
                    t_end_s=end,
                    status="ok" if end <= start + length else "cut",
                )
            )
            t = end + 0.001
            sequence += 1
    return out


def synthetic_run(step_concurrent: dict[str, float], step_alone: float) -> tuple[RunInfo, pa.Table]:
    """A multi-model run: each instance's concurrent phase at its own step time, then each
    alone at ``step_alone`` (also used by the chart tests)."""
    info = RunInfo("r", "s", "multi-model", "2024-01-01T00:00:00", 0.0, {}, {}, {})
    rows: list[RequestRecord] = []
    for name, step in step_concurrent.items():
        rows += synthetic_phase(name, "concurrent", 0.0, 20.0, step)
        info.phases.append(PhaseWindow(name, "concurrent", 0.0, 1.0, 20.0, 20.1))
    for index, name in enumerate(step_concurrent):
        start = 21.0 + 21.0 * index
        rows += synthetic_phase(name, "sequential", start, 20.0, step_alone)
        info.phases.append(PhaseWindow(name, "sequential", start, start + 1.0, start + 20.0))
    return info, table(*rows)


def test_a_run_with_one_slowed_instance_flags_it_and_only_it() -> None:
    info, records = synthetic_run({"fast": 0.020, "slow": 0.034}, step_alone=0.020)
    summary = summarize_multi_model(info, records, MultiModelSpec(bootstrap_samples=500))
    json.dumps(summary, allow_nan=False)  # JSON as is: no NaN, no numpy types
    assert summary["verdict"] == SATURATED
    assert summary["saturated_instances"] == ["slow"]
    slow, fast = summary["instances"]["slow"], summary["instances"]["fast"]
    assert fast["verdict"] == NOT_SATURATED, fast["reason"]
    assert slow["verdict"] == SATURATED
    assert slow["figures"]["tpot_median_s"]["ratio"] == pytest.approx(1.7, rel=1e-6)
    assert slow["figures"]["output_tps"]["verdict"] == DEGRADED
    assert set(slow["figures"]) == {f.key for f in FIGURES}
    assert "10%" in summary["rules"]["statement"]
    assert summary["rules"]["saturation_threshold"] == 0.10
    assert summary["phases"]["concurrent"] == {"start_s": 0.0, "end_s": 20.1}
    assert slow["phases"]["sequential"]["measured"] > 100


def test_without_a_sequential_phase_nothing_is_judged() -> None:
    info, records = synthetic_run({"a": 0.02}, step_alone=0.02)
    info.phases = [w for w in info.phases if w.phase == "concurrent"]
    summary = summarize_multi_model(info, records, MultiModelSpec(sequential=False))
    assert summary["verdict"] == INCONCLUSIVE
    assert summary["instances"]["a"]["verdict"] == INCONCLUSIVE
    assert "no sequential window" in summary["instances"]["a"]["reason"]


def test_a_higher_threshold_tolerates_a_moderate_slowdown() -> None:
    info, records = synthetic_run({"a": 0.023}, step_alone=0.020)  # 15% slower when concurrent
    strict = summarize_multi_model(info, records, MultiModelSpec(bootstrap_samples=500))
    lenient = summarize_multi_model(
        info, records, MultiModelSpec(bootstrap_samples=500, saturation_threshold=0.3)
    )
    assert strict["verdict"] == SATURATED
    assert lenient["verdict"] == NOT_SATURATED

"""Load-time statistics and the deployment saturation verdict, on synthetic load times with known
quantiles and with planted trends (saturating and not)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from servingperf.analysis import deploy_saturation
from servingperf.analysis.loadtimes import (
    deployment_points,
    format_seconds,
    load_time_stats,
    seed_sentences,
    summarize_deployments,
)
from servingperf.model.deployments import DeploymentRecord
from servingperf.results.rundir import PhaseWindow
from servingperf.results.schema import DEPLOYMENT_SCHEMA

SEED_KNOTS = ((0.0, 36.0), (0.25, 42.0), (0.5, 50.0), (0.75, 57.0), (0.9, 63.0), (1.0, 83.0))
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def seed_like(n: int = 204) -> np.ndarray:
    """n load times whose quantile function passes through the seed's published quantiles."""
    probabilities = np.linspace(0.0, 1.0, n)
    knots_p, knots_v = zip(*SEED_KNOTS, strict=True)
    return np.interp(probabilities, knots_p, knots_v)


# --- distribution ----------------------------------------------------------------------------------


def test_quantiles_of_a_known_sample() -> None:
    stats = load_time_stats(np.arange(0.0, 101.0))
    assert stats is not None
    assert (stats.n, stats.min, stats.q1, stats.median) == (101, 0.0, 25.0, 50.0)
    assert (stats.q3, stats.p90, stats.max, stats.mean) == (75.0, 90.0, 100.0, 50.0)
    assert stats.factor is None  # min 0: no ratio


def test_quantiles_ignore_nan_and_empty_is_none() -> None:
    stats = load_time_stats([4.0, float("nan"), 2.0])
    assert stats is not None
    assert (stats.n, stats.min, stats.max) == (2, 2.0, 4.0)
    assert stats.factor == 2.0
    assert load_time_stats([]) is None
    assert load_time_stats([float("nan")]) is None


def test_seed_distribution_reproduces_the_seed_sentences() -> None:
    stats = load_time_stats(seed_like())
    assert stats is not None
    assert stats.min == 36.0
    assert stats.max == 83.0
    for value, expected in ((stats.q1, 42), (stats.median, 50), (stats.q3, 57), (stats.p90, 63)):
        assert value == pytest.approx(expected, abs=0.25)  # kinks of the knots
    assert stats.factor == pytest.approx(2.3, abs=0.01)
    assert seed_sentences(stats, "InferenceServices") == [
        "0% of the InferenceServices were ready in less than 36 s [min]",
        "25% of the InferenceServices were ready in less than 42 s [Q1]",
        "50% of the InferenceServices were ready in less than 50 s [median] (+8 s)",
        "75% of the InferenceServices were ready in less than 57 s [Q3] (+7 s)",
        "90% of the InferenceServices were ready in less than 63 s [P90] (+6 s)",
        "100% of the InferenceServices were ready in less than 83 s [max] (+20 s)",
    ]


def test_seconds_keep_the_precision_of_their_magnitude() -> None:
    assert format_seconds(36.4) == "36 s"
    assert format_seconds(4.26) == "4.3 s"
    assert format_seconds(0.354) == "0.35 s"
    assert format_seconds(11.0, reference=2.9) == "11.0 s"  # one precision for a set
    stats = load_time_stats([2.94, 4.4, 5.2, 11.04])
    assert stats is not None
    assert seed_sentences(stats)[0].endswith("2.9 s [min]")
    assert seed_sentences(stats)[-1].endswith("11.0 s [max] (+1.8 s)")  # P90 is 9.29 s


# --- saturation: planted trends --------------------------------------------------------------------


def regular_run(load_times: np.ndarray, every_s: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    created = np.arange(load_times.size) * every_s
    return created, created + load_times


def test_no_trend_is_not_saturated() -> None:
    rng = np.random.default_rng(1)
    loads = 50.0 * np.exp(0.2 * rng.standard_normal(204))
    created, ready = regular_run(loads)
    result = deploy_saturation.verdict(loads, created, ready)
    assert result["verdict"] == "not saturated"
    assert result["saturated"] is False
    trend = result["trend"]
    assert trend["slope_low_s"] <= 0.0 <= trend["slope_high_s"]  # the interval covers no change
    assert result["lag"]["grows"] is False


def test_planted_linear_growth_is_saturated() -> None:
    rng = np.random.default_rng(2)
    order = np.arange(204)
    loads = 40.0 + 0.2 * order + rng.normal(0.0, 3.0, 204)  # +40 s over the run, median ~60 s
    created, ready = regular_run(loads)
    result = deploy_saturation.verdict(loads, created, ready)
    assert result["verdict"] == "saturated"
    trend = result["trend"]
    assert trend["slope_s"] == pytest.approx(0.2, abs=0.03)
    assert trend["slope_low_s"] < 0.2 < trend["slope_high_s"]
    assert trend["saturated"] is True
    assert trend["increase_low_s"] > trend["threshold_s"]
    assert result["lag"]["grows"] is True
    assert any("rose by at least" in r for r in result["reasons"])


def test_significant_but_small_growth_is_below_the_threshold() -> None:
    rng = np.random.default_rng(3)
    order = np.arange(204)
    loads = 50.0 + 0.02 * order + rng.normal(0.0, 0.5, 204)  # +4 s over the run: 8% of the median
    created, ready = regular_run(loads)
    result = deploy_saturation.verdict(loads, created, ready)
    trend = result["trend"]
    assert trend["slope_low_s"] > 0.0  # the growth is real...
    assert trend["saturated"] is False  # ...but smaller than a quarter of the median
    assert result["verdict"] == "not saturated"


def test_a_serialising_bottleneck_grows_the_lag_between_the_curves() -> None:
    # Created every 1 s, each needs 10 s, but a controller marks at most one ready per 1.5 s.
    created = np.arange(100, dtype=np.float64)
    ready = np.empty_like(created)
    previous = -np.inf
    for k, c in enumerate(created):
        ready[k] = previous = max(c + 10.0, previous + 1.5)
    result = deploy_saturation.verdict(ready - created, created, ready)
    assert result["lag"]["grows"] is True
    assert result["lag"]["last_median_s"] > result["lag"]["first_median_s"] + 20
    assert result["verdict"] == "saturated"
    assert result["max_loading_at_once"] > 30


def test_a_few_slow_outliers_do_not_make_a_trend() -> None:
    loads = np.full(100, 50.0) + np.linspace(-1.0, 1.0, 100)[::-1]  # slightly decreasing
    loads[[80, 90, 99]] = 200.0  # three stragglers at the end
    created, ready = regular_run(loads, every_s=60.0)
    result = deploy_saturation.verdict(loads, created, ready)
    assert result["trend"]["saturated"] is False  # Theil-Sen is not dragged by three points


def test_too_few_instances_give_no_verdict() -> None:
    loads = np.array([10.0, 30.0, 50.0, 70.0, 90.0])
    created, ready = regular_run(loads)
    result = deploy_saturation.verdict(loads, created, ready)
    assert result["verdict"] == "insufficient data"
    assert result["saturated"] is None
    assert deploy_saturation.verdict([], [], [])["trend"] is None


def test_constant_load_times_have_a_zero_slope() -> None:
    loads = np.full(20, 5.0)
    created, ready = regular_run(loads)
    result = deploy_saturation.verdict(loads, created, ready)
    assert result["trend"]["slope_s"] == 0.0
    assert result["lag"]["p_value"] == 1.0
    assert result["verdict"] == "not saturated"


def test_curve_lag_pairs_the_kth_creation_with_the_kth_readiness() -> None:
    lags = deploy_saturation.curve_lags([0.0, 1.0, 2.0], [10.0, 5.0, 20.0])
    assert lags.tolist() == [5.0, 9.0, 18.0]
    with pytest.raises(ValueError, match="same instances"):
        deploy_saturation.curve_lags([0.0], [1.0, 2.0])


def test_max_loading_counts_instances_between_creation_and_readiness() -> None:
    assert deploy_saturation.max_loading([0, 1, 2], [3, 4, 5]) == 3
    assert deploy_saturation.max_loading([0, 2], [1, 3]) == 1
    assert deploy_saturation.max_loading([0, 1], [1, 2]) == 1  # a readiness at t counts first
    assert deploy_saturation.max_loading([], []) == 0


# --- the summary of a deployments table ------------------------------------------------------------


def record(
    name: str,
    namespace: str,
    created_s: float | None,
    ready_s: float | None,
    *,
    reason: str | None = None,
    ok: int = 0,
    failed: int = 0,
) -> DeploymentRecord:
    return DeploymentRecord(
        instance=name,
        namespace=namespace,
        model="flan-t5-small",
        platform="local",
        endpoint=None,
        clock_source="harness",
        created_at=None if created_s is None else T0 + timedelta(seconds=created_s),
        ready_at=None if ready_s is None else T0 + timedelta(seconds=ready_s),
        t_created_s=None if created_s is None else created_s + 100.0,
        t_ready_s=None if ready_s is None else ready_s + 100.0,
        t_first_validated_s=None if ready_s is None or not ok else ready_s + 100.5,
        t_deleted_s=None,
        status="failed" if reason else "deleted",
        failure_reason=reason,
        validations_ok=ok,
        validations_failed=failed,
    )


def table(records: list[DeploymentRecord]) -> pa.Table:
    columns: dict[str, list[Any]] = {
        n: [getattr(r, n) for r in records] for n in DEPLOYMENT_SCHEMA.names
    }
    return pa.Table.from_pydict(columns, schema=DEPLOYMENT_SCHEMA)


def test_summary_counts_failures_and_reports_the_distribution() -> None:
    loads = seed_like(12)
    records = [
        record(f"m-01-{i:02d}", "ns-01" if i < 6 else "ns-02", 10.0 * i, 10.0 * i + loads[i], ok=20)
        for i in range(12)
    ]
    records.append(record("m-02-07", "ns-02", 200.0, None, reason="not ready after 300 s", ok=0))
    records.append(
        record(
            "m-02-08",
            "ns-02",
            210.0,
            None,
            reason="server exited with code 2 while starting (error: unknown override)",
        )
    )
    records.append(record("m-02-09", "ns-02", None, None, reason="cannot start the emulator"))
    records.append(record("m-02-10", "ns-02", 220.0, None))  # interrupted while loading
    records[3].validations_failed = 2
    phases = [PhaseWindow("ns-01", "namespace", 99.0, 99.0, 180.0, 180.0)]
    summary = summarize_deployments(table(records), phases)
    json.dumps(summary, allow_nan=False)  # JSON-able, no NaN

    assert summary["counts"] == {
        "instances": 16,
        "created": 15,
        "ready": 12,
        "failed": 3,
        "pending": 1,
        "namespaces": 2,
    }
    assert summary["clock_source"] == "harness"
    assert summary["load_time_s"]["min"] == pytest.approx(36.0)
    assert summary["load_time_s"]["max"] == pytest.approx(83.0)
    assert summary["harness_load_time_s"]["median"] == pytest.approx(
        summary["load_time_s"]["median"]
    )
    assert summary["sentences"][0].startswith("0% of the instances were ready in less than 36 s")
    assert summary["duration_s"] == pytest.approx(110.0 + loads[11])
    assert summary["failure_reasons"] == {
        "not ready after 300 s": 1,
        "server exited with code 2 while starting": 1,
        "cannot start the emulator": 1,
    }
    assert {f["instance"] for f in summary["failures"]} == {"m-02-07", "m-02-08", "m-02-09"}
    validation = summary["validation"]
    assert validation["queries_ok"] == 240
    assert validation["queries_failed"] == 2
    assert validation["instances_validated"] == 12
    assert validation["instances_with_failed_queries"] == 1
    assert validation["ready_to_first_validation_s"]["median"] == pytest.approx(0.5)
    ns1 = summary["namespaces"]["ns-01"]
    assert (ns1["instances"], ns1["ready"], ns1["failed"]) == (6, 6, 0)
    assert ns1["t_first_created_s"] == pytest.approx(100.0)
    assert (ns1["t_driver_start_s"], ns1["t_driver_end_s"]) == (99.0, 180.0)
    assert summary["namespaces"]["ns-02"]["failed"] == 3
    assert summary["saturation"]["verdict"] in ("saturated", "not saturated")


def test_summary_of_an_empty_table_is_well_formed() -> None:
    summary = summarize_deployments(DEPLOYMENT_SCHEMA.empty_table())
    json.dumps(summary, allow_nan=False)
    assert summary["counts"]["instances"] == 0
    assert summary["load_time_s"] is None
    assert summary["sentences"] == []
    assert summary["duration_s"] is None
    assert summary["saturation"]["verdict"] == "insufficient data"


def test_points_are_in_creation_order_with_times_from_the_first_creation() -> None:
    records = [
        record("b", "ns", 5.0, 12.0),
        record("a", "ns", 1.0, 4.0),
        record("c", "ns", 9.0, None, reason="x"),
        record("d", "ns", None, None, reason="refused"),
    ]
    points = deployment_points(table(records))
    assert points.instance == ("a", "b", "c")
    assert points.created_s.tolist() == [0.0, 4.0, 8.0]
    assert points.load_time_s[:2].tolist() == [3.0, 7.0]
    assert np.isnan(points.load_time_s[2])
    assert points.ready_mask.tolist() == [True, True, False]

"""The sweep's decisions on synthetic stage results: probe first, then the capacity, then bisection
toward the highest rate meeting the SLOs; the knee is the highest unsaturated rate."""

from __future__ import annotations

import pytest

from servingperf.analysis.sweep import (
    StageResult,
    SweepStage,
    next_stage,
    outcome,
    passes,
    stage_result,
)
from servingperf.model.specs import SweepSpec


def _server(capacity: float, slo_limit: float | None):
    """A synthetic server: completes min(offered, capacity); meets SLOs below ``slo_limit``."""

    def judge(stage: SweepStage) -> StageResult:
        if stage.users is not None:
            return StageResult(completed_rps=capacity, slo_attainment=0.5)
        offered = stage.rate_rps or 0.0
        attainment = None if slo_limit is None else (1.0 if offered <= slo_limit else 0.9)
        return StageResult(min(offered, capacity), attainment)

    return judge


def _run(spec: SweepSpec, judge) -> list[tuple[SweepStage, StageResult]]:  # type: ignore[no-untyped-def]
    history: list[tuple[SweepStage, StageResult]] = []
    for _ in range(100):
        stage = next_stage(spec, history)
        if stage is None:
            return history
        history.append((stage, judge(stage)))
    raise AssertionError("the sweep never ended")


def test_first_stage_is_the_probe_then_the_capacity() -> None:
    spec = SweepSpec(probe_users=32)
    first = next_stage(spec, [])
    assert first == SweepStage(index=0, users=32)
    assert first.phase == "sweep-00"
    second = next_stage(spec, [(first, StageResult(completed_rps=40.0))])
    assert second == SweepStage(index=1, rate_rps=40.0)


def test_bisection_finds_the_highest_rate_meeting_the_slos() -> None:
    spec = SweepSpec(precision=0.02, max_stages=30)
    history = _run(spec, _server(capacity=100.0, slo_limit=37.0))
    found = outcome(spec, history)
    assert found.capacity_rps == 100.0
    assert found.max_rate_meeting_slos_rps is not None
    assert 37.0 * (1 - 0.02) <= found.max_rate_meeting_slos_rps <= 37.0
    rates = [s.rate_rps for s, _ in history[1:]]
    assert rates[:3] == [100.0, 50.0, 25.0]  # capacity, then midpoints of [0, 100], [0, 50]
    # stages not saturated but failing the SLOs: the knee is the highest of them
    assert found.knee_rps is not None
    assert found.knee_rps > 37.0


def test_without_slos_the_sweep_finds_the_saturation_point() -> None:
    spec = SweepSpec(precision=0.05, max_stages=30, saturation_tolerance=0.05)
    # completes at most 60/s but the probe (a few users) saw only 80 % of it
    judge = _server(capacity=60.0, slo_limit=None)

    def probe_low(stage: SweepStage) -> StageResult:
        return StageResult(48.0) if stage.users is not None else judge(stage)

    history = _run(spec, probe_low)
    found = outcome(spec, history)
    assert found.max_rate_meeting_slos_rps == 48.0  # the capacity stage itself passed
    assert found.knee_rps == 48.0
    assert len(history) == 2


def test_a_saturated_stage_fails_even_when_every_request_meets_the_slos() -> None:
    spec = SweepSpec(saturation_tolerance=0.1)
    assert not passes(spec, 100.0, StageResult(completed_rps=85.0, slo_attainment=1.0))
    assert passes(spec, 100.0, StageResult(completed_rps=95.0, slo_attainment=1.0))
    assert not passes(spec, 100.0, StageResult(completed_rps=95.0, slo_attainment=0.98))
    assert passes(spec, 100.0, StageResult(completed_rps=95.0, slo_attainment=None))


def test_max_stages_bounds_the_sweep() -> None:
    spec = SweepSpec(max_stages=4, precision=0.001)
    history = _run(spec, _server(capacity=100.0, slo_limit=1.0))
    assert len(history) == 4
    assert outcome(spec, history).max_rate_meeting_slos_rps is None  # 100, 50, 25 all failed


def test_a_server_that_completes_nothing_ends_the_sweep_after_the_probe() -> None:
    spec = SweepSpec()
    probe = next_stage(spec, [])
    assert probe is not None
    assert next_stage(spec, [(probe, StageResult(completed_rps=0.0))]) is None


def test_stage_result_reads_a_summary_entry() -> None:
    entry = {"throughput": {"request_rps": 20.0, "goodput_rps": 19.0}}
    assert stage_result(entry) == StageResult(20.0, pytest.approx(0.95))
    assert stage_result({"throughput": {"request_rps": None, "goodput_rps": None}}) == (
        StageResult(0.0, None)
    )

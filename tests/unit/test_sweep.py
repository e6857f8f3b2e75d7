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
    sweep_summary,
    verdict,
)
from servingperf.model.specs import SweepSpec
from tests.fakes.sweeps import run_sweep, stage_entries, synthetic_server


def test_first_stage_is_the_probe_then_the_capacity() -> None:
    spec = SweepSpec(probe_users=32)
    first = next_stage(spec, [])
    assert first == SweepStage(index=0, users=32)
    assert first.phase == "sweep-00"
    second = next_stage(spec, [(first, StageResult(completed_rps=40.0))])
    assert second == SweepStage(index=1, rate_rps=40.0)


def test_bisection_finds_the_highest_rate_meeting_the_slos() -> None:
    spec = SweepSpec(precision=0.02, max_stages=30)
    history = run_sweep(spec, synthetic_server(capacity=100.0, slo_limit=37.0))
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
    judge = synthetic_server(capacity=60.0, slo_limit=None)

    def probe_low(stage: SweepStage) -> StageResult:
        return StageResult(48.0) if stage.users is not None else judge(stage)

    history = run_sweep(spec, probe_low)
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
    history = run_sweep(spec, synthetic_server(capacity=100.0, slo_limit=1.0))
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


def test_sweep_summary_recomputes_the_outcome_and_the_stages_from_thestage_entries() -> None:
    spec = SweepSpec(precision=0.02, max_stages=30)
    history = run_sweep(spec, synthetic_server(capacity=100.0, slo_limit=37.0))
    other = run_sweep(spec, synthetic_server(capacity=10.0, slo_limit=None))
    instances = {"other/load": {"instance": "other", "phase": "load", "throughput": {}}}
    # entries in any order (a summary keyed by name): stages are ordered by their number
    instances |= dict(reversed(list(stage_entries(history, "a").items())))
    instances |= stage_entries(other, "b")
    summary = sweep_summary(spec, instances)
    assert set(summary) == {"a", "b"}
    a = summary["a"]
    found = outcome(spec, history)
    assert a["capacity_rps"] == found.capacity_rps == 100.0
    assert a["max_rate_meeting_slos_rps"] == found.max_rate_meeting_slos_rps
    assert a["knee_rps"] == found.knee_rps
    assert a["slos"] is True and a["unexplained_stages"] == 0
    assert a["criteria"] == {"slo_attainment": 0.99, "saturation_tolerance": 0.05}
    assert [s["phase"] for s in a["stages"]] == [s.phase for s, _ in history]
    probe, *rest = a["stages"]
    assert probe["kind"] == "probe" and probe["users"] == spec.probe_users
    assert probe["offered_rps"] is None and probe["passed"] is None
    assert [s["offered_rps"] for s in rest] == [s.rate_rps for s, _ in history[1:]]
    assert [s["completed_rps"] for s in rest] == [r.completed_rps for _, r in history[1:]]
    assert [s["slo_attainment"] for s in rest] == [
        pytest.approx(r.slo_attainment) for _, r in history[1:]
    ]
    assert [s["passed"] for s in rest] == [s.rate_rps <= 37.0 for s, _ in history[1:]]  # type: ignore[operator]
    assert rest[0]["offered_rps"] == 100.0 and rest[0]["saturated"] is False
    assert "highest rate meeting the SLOs: 36" in a["verdict"]
    b = summary["b"]
    assert b["slos"] is False
    assert b["max_rate_meeting_slos_rps"] == 10.0 and b["knee_rps"] == 10.0
    assert b["verdict"] == (
        "highest rate not saturated: 10 req/s; knee 10 req/s; measured capacity 10 req/s (2 stages)"
    )


def test_sweep_summary_counts_stages_the_decisions_cannot_explain() -> None:
    spec = SweepSpec(max_stages=30)
    history = run_sweep(
        spec, synthetic_server(capacity=10.0, slo_limit=None)
    )  # probe + one stage: done
    entries = stage_entries(history, "m")
    entries["m/sweep-02"] = {"instance": "m", "phase": "sweep-02", "throughput": {}}
    summary = sweep_summary(spec, entries)["m"]
    assert summary["unexplained_stages"] == 1
    assert len(summary["stages"]) == 2
    assert verdict(outcome(spec, history), slos=False) == summary["verdict"]


def test_a_sweep_that_found_nothing_says_so() -> None:
    spec = SweepSpec()
    probe = next_stage(spec, [])
    assert probe is not None
    found = outcome(spec, [(probe, StageResult(completed_rps=0.0))])
    assert verdict(found, slos=True) == (
        "highest rate meeting the SLOs: none of the rates tried; knee not found;"
        " measured capacity 0 req/s (1 stage)"
    )

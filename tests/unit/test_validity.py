"""The validity verdict from measured evidence: each rule on a hand-made summary window."""

from __future__ import annotations

from typing import Any

from servingperf.analysis.validity import Verdict, run_validity, window_validity

CALIBRATION = {"status": "ok", "request_cpu_s": 0.0001, "token_cpu_s": 0.00001, "tokens": 64}


def entry(**counts: Any) -> dict[str, Any]:
    base = {"issued": 1000, "ok": 990, "error": 0, "cut": 10, "behind": 0, "measured": 980}
    base.update(counts)
    return {
        "instance": "m",
        "phase": "load",
        "counts": base,
        "stats": {"ttft_s": {"min": 0.01}, "output_tokens": {"mean": 100.0}},
    }


def process(**fields: Any) -> dict[str, Any]:
    base = {
        "worker": 0,
        "wall_s": 10.0,
        "cpu_s": 2.0,
        "loop_lag_p99_s": 0.002,
        "clock_drift_s": 0.0,
        "unsent": 0,
    }
    base.update(fields)
    return base


def test_a_clean_window_is_valid_and_reports_its_headroom() -> None:
    judged = window_validity("m", entry(), [process()], CALIBRATION)
    assert judged.verdict is Verdict.VALID and judged.reasons == []
    # 1000 requests x (0.0001 + 100 x 0.00001) CPU s = 1.1 s of 10 s: 11 % used
    assert round(judged.evidence["client_usage"], 6) == 0.11
    assert round(judged.evidence["headroom"], 2) == 0.89


def test_sends_behind_the_schedule_make_it_invalid() -> None:
    assert window_validity("m", entry(behind=50), [process()], None).verdict is Verdict.SUSPECT
    judged = window_validity("m", entry(behind=300), [process()], None)
    assert judged.verdict is Verdict.INVALID
    assert "30% of requests were sent more than 10 ms after" in judged.reasons[0]


def test_unsent_open_loop_arrivals_are_coordinated_omission() -> None:
    judged = window_validity("m", entry(), [process(unsent=400)], None)
    assert judged.verdict is Verdict.INVALID and "never sent" in judged.reasons[0]
    assert window_validity("m", entry(), [process(unsent=3)], None).verdict is Verdict.SUSPECT


def test_load_process_health_rules() -> None:
    cpu = window_validity("m", entry(), [process(cpu_s=9.5)], None)
    assert cpu.verdict is Verdict.SUSPECT and "95% of a core" in cpu.reasons[0]
    lag = window_validity("m", entry(), [process(loop_lag_p99_s=0.6)], None)
    assert lag.verdict is Verdict.INVALID and "event-loop lag p99 600 ms" in lag.reasons[0]
    slow = window_validity("m", entry(), [process(loop_lag_p99_s=0.15)], None)
    assert slow.verdict is Verdict.SUSPECT
    drift = window_validity("m", entry(), [process(clock_drift_s=-2.0)], None)
    assert drift.verdict is Verdict.SUSPECT and "drifted 2.00 s" in drift.reasons[0]


def test_clock_trouble_in_the_records_is_invalid() -> None:
    bad = entry()
    bad["stats"]["ttft_s"]["min"] = -0.004
    judged = window_validity("m", bad, [process()], None)
    assert judged.verdict is Verdict.INVALID and "clock went backwards" in judged.reasons[0]


def test_shares_and_calibration_usage_are_suspect() -> None:
    assert window_validity("m", entry(cut=400), [], None).verdict is Verdict.SUSPECT
    assert window_validity("m", entry(error=100), [], None).verdict is Verdict.SUSPECT
    heavy = window_validity("m", entry(issued=9000), [process()], CALIBRATION)
    assert heavy.verdict is Verdict.SUSPECT and "used 99% of what it can issue" in heavy.reasons[0]
    assert window_validity("m", entry(measured=0), [process()], None).verdict is Verdict.INVALID
    # validation queries (no load process health): a deployment failure, not an invalid load
    assert window_validity("m", entry(measured=0), [], None).verdict is Verdict.VALID


def test_the_run_takes_its_worst_window() -> None:
    summary = {"instances": {"a": entry(), "b": {**entry(behind=500), "instance": "b"}}}
    health = [{"instance": "m", "phase": "load", "processes": [process()]}]
    result = run_validity(summary, health, CALIBRATION)
    assert result["verdict"] == "invalid"
    assert result["windows"]["a"]["verdict"] == "valid"
    assert result["reasons"][0].startswith("b: invalid:")
    assert run_validity({"instances": {}}, [], None)["verdict"] == "invalid"
    assert run_validity({"kind": "many-model", "instances": {}}, [], None)["verdict"] == "valid"

"""The real-engine referee: a vLLM 0.32 ``/metrics`` text parses into the counters the tests
compare, and the exact comparison fails on every way the records could be wrong: a dropped or
duplicated record, a cut request, a wrong finish reason, an engine that aborted a request.

The sample is a real vLLM 0.32 (CPU) ``/metrics`` page after four 16-token requests, trimmed to
the families used here plus two that must be ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.engine_metrics import EngineCounters, count_mismatches, parse_counters

SAMPLE = Path(__file__).parents[1] / "support" / "vllm_metrics_0.32.txt"


def sample() -> EngineCounters:
    return parse_counters(SAMPLE.read_text())


def records(n: int = 4) -> list[dict[str, Any]]:
    """The records that agree with the sample: four ok requests of 3 prompt and 16 output tokens."""
    return [
        {
            "request_id": f"r{i}",
            "status": "ok",
            "error_kind": None,
            "finish_reason": "length",
            "input_tokens": 3,
            "output_tokens": 16,
            "token_source": "usage",
        }
        for i in range(n)
    ]


def test_the_sample_parses_into_its_counters() -> None:
    counters = sample()
    assert counters.success == {
        "stop": 0.0,
        "length": 4.0,
        "abort": 0.0,
        "error": 0.0,
        "repetition": 0.0,
    }
    assert (counters.prompt_tokens, counters.generation_tokens) == (12.0, 64.0)
    assert counters.ttft_count == counters.e2e_count == counters.queue_count == 4.0
    assert counters.ttft_mean_s == pytest.approx(0.11021113395690918 / 4)
    assert counters.e2e_mean_s == pytest.approx(0.3127429485321045 / 4)
    assert counters.tpot_mean_s == pytest.approx(0.013987014666652916 / 4)
    assert counters.itl_mean_s == pytest.approx(0.20980521999979374 / 60)
    assert (counters.running, counters.waiting) == (0.0, 0.0)
    assert counters.finished == 4.0


def test_a_delta_subtracts_counters_and_keeps_the_later_gauges() -> None:
    before = EngineCounters(success={"length": 1.0}, prompt_tokens=2.0, running=3.0)
    delta = sample().minus(before)
    assert delta.success["length"] == 3.0
    assert delta.success["stop"] == 0.0
    assert delta.prompt_tokens == 10.0
    assert delta.running == 0.0  # the later snapshot's gauge, not a difference


def test_records_that_match_the_engine_have_no_mismatch() -> None:
    assert count_mismatches(records(), sample()) == []


def test_a_dropped_record_is_found() -> None:
    problems = count_mismatches(records()[:3], sample())
    assert "finish reason 'length': 3 ok records, engine 4" in problems
    assert "prompt tokens: records 9, engine 12" in problems
    assert "generation tokens: records 48, engine 64" in problems


def test_a_duplicated_record_is_found() -> None:
    rows = records()
    problems = count_mismatches([*rows, rows[0]], sample())
    assert "request ids recorded more than once: ['r0']" in problems
    assert "finish reason 'length': 5 ok records, engine 4" in problems
    assert "generation tokens: records 80, engine 64" in problems


def test_one_token_too_many_is_found() -> None:
    rows = records()
    rows[2]["output_tokens"] = 17
    assert count_mismatches(rows, sample()) == ["generation tokens: records 65, engine 64"]


def test_a_cut_request_a_wrong_reason_and_an_abort_are_found() -> None:
    rows = records()
    rows[0]["finish_reason"] = "stop"
    rows.append({**records(1)[0], "request_id": "cut", "status": "cut", "error_kind": "cut"})
    aborted = EngineCounters(
        success={**sample().success, "abort": 1.0}, prompt_tokens=12.0, generation_tokens=64.0
    )
    problems = count_mismatches(rows, aborted)
    assert "records that are not ok: {'cut/cut': 1}" in problems
    assert "finish reason 'stop': 1 ok records, engine 0" in problems
    assert "finish reason 'length': 3 ok records, engine 4" in problems
    assert "engine finished 1 requests as 'abort'" in problems


def test_counts_from_the_stream_instead_of_usage_are_flagged() -> None:
    rows = records()
    rows[1]["token_source"] = "stream"
    assert count_mismatches(rows, sample()) == ["1 ok records without the server's usage counts"]

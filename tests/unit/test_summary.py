"""The metric definitions of DESIGN.md §3 on hand-made records with exact expected values."""

from __future__ import annotations

import math

import pytest

from servingperf.analysis import metrics
from servingperf.analysis.summary import summarize_window
from servingperf.model.specs import SloSpec
from servingperf.results.rundir import PhaseWindow
from tests.fakes.records import record, table

WINDOW = PhaseWindow(
    instance="m", phase="load", start_s=0.0, measure_start_s=5.0, measure_end_s=20.0
)


def _records() -> list:  # type: ignore[type-arg]
    return [
        # streamed, N=4 (usage), chunks carrying 1, 1, 2 tokens
        record(
            request_id="r1",
            t_sent_s=10.0,
            t_first_token_s=10.1,
            t_end_s=10.5,
            chunk_offsets_s=[0.1, 0.2, 0.4],
            chunk_tokens=[1, 1, 2],
            output_tokens=4,
            input_tokens=10,
        ),
        # streamed, N=1: no TPOT, no ITL
        record(
            request_id="r2",
            t_sent_s=11.0,
            t_first_token_s=11.2,
            t_end_s=11.25,
            chunk_offsets_s=[0.2],
            chunk_tokens=[1],
            output_tokens=1,
            input_tokens=5,
        ),
        # failed
        record(
            request_id="r3",
            t_sent_s=12.0,
            t_end_s=12.05,
            status="error",
            error_kind="http_status",
            error_message="HTTP 500",
        ),
        # cut at the end of the window
        record(request_id="r4", t_sent_s=19.5, status="cut", error_kind="cut"),
        # completed during the ramp-up: outside the window
        record(
            request_id="r5",
            t_sent_s=4.0,
            t_first_token_s=4.1,
            t_end_s=4.5,
            chunk_offsets_s=[0.1],
            chunk_tokens=[1],
            output_tokens=1,
            input_tokens=3,
        ),
        # non-streamed: TTFT and TPOT absent, NTPOT present
        record(
            request_id="r6",
            streamed=False,
            t_sent_s=13.0,
            t_end_s=14.0,
            output_tokens=10,
            input_tokens=7,
        ),
    ]


def test_per_request_definitions() -> None:
    t = table(*_records())
    ttft = metrics.ttft(t)
    assert ttft[0] == pytest.approx(0.1)
    assert ttft[1] == pytest.approx(0.2)
    assert math.isnan(ttft[5])  # non-streamed: absent, never zero
    tpot = metrics.tpot(t)
    assert tpot[0] == pytest.approx(0.4 / 3)
    assert math.isnan(tpot[1])  # N = 1
    assert math.isnan(tpot[5])
    ntpot = metrics.ntpot(t)
    assert ntpot[0] == pytest.approx(0.125)
    assert ntpot[1] == pytest.approx(0.25)
    assert ntpot[5] == pytest.approx(0.1)
    assert metrics.e2e(t)[5] == pytest.approx(1.0)


def test_itl_pools_chunk_gaps_divided_by_tokens_of_later_chunk() -> None:
    t = table(*_records())
    # r1: (0.2-0.1)/1, (0.4-0.2)/2; r2 and r5 have one chunk: no sample; gaps never cross requests
    assert sorted(metrics.itl(t)) == pytest.approx([0.1, 0.1])


def test_window_summary_exact_values() -> None:
    summary = summarize_window(table(*_records()), WINDOW, SloSpec(ttft_s=0.15))
    counts = summary["counts"]
    assert counts == {
        "issued": 5,
        "ok": 3,
        "error": 1,
        "cut": 1,
        "behind": 0,
        "measured": 3,
        "errors_by_kind": {"http_status": 1},
    }
    assert summary["error_rate"] == pytest.approx(1 / 5)
    throughput = summary["throughput"]
    assert throughput["request_rps"] == pytest.approx(3 / 15)
    assert throughput["output_tps"] == pytest.approx(15 / 15)
    assert throughput["input_tps"] == pytest.approx(22 / 15)
    assert throughput["goodput_rps"] == pytest.approx(1 / 15)  # r1 only; r6 has no TTFT
    stats = summary["stats"]
    assert stats["ttft_s"]["n"] == 2
    assert stats["ttft_s"]["mean"] == pytest.approx(0.15)
    assert stats["ttft_s"]["p90"] == pytest.approx(0.19)  # linear interpolation
    assert stats["tpot_s"]["n"] == 1
    assert stats["ntpot_s"]["mean"] == pytest.approx((0.125 + 0.25 + 0.1) / 3)
    assert stats["ntpot_s"]["p50"] == pytest.approx(0.125)
    assert stats["e2e_s"]["max"] == pytest.approx(1.0)
    assert stats["itl_s"]["n"] == 2
    assert stats["output_tokens"]["mean"] == pytest.approx(5.0)


def test_empty_window_has_no_figures_but_no_crash() -> None:
    summary = summarize_window(table(), WINDOW, None)
    assert summary["counts"]["issued"] == 0
    assert summary["error_rate"] is None
    assert summary["stats"]["ttft_s"] is None
    assert summary["throughput"]["request_rps"] == 0.0
    assert summary["throughput"]["goodput_rps"] is None


def test_input_throughput_absent_when_a_count_is_missing() -> None:
    rows = [
        record(
            t_sent_s=6.0,
            t_first_token_s=6.1,
            t_end_s=6.2,
            chunk_offsets_s=[0.1],
            chunk_tokens=[1],
            output_tokens=1,
            input_tokens=None,
        ),
    ]
    summary = summarize_window(table(*rows), WINDOW, None)
    assert summary["throughput"]["input_tps"] is None


def test_a_request_never_sent_counts_as_issued_at_its_scheduled_time() -> None:
    rows = [
        record(
            request_id="c1",
            t_scheduled_s=7.0,
            t_sent_s=None,
            t_end_s=7.001,
            status="error",
            error_kind="connect",
            error_message="refused",
        ),
        record(
            request_id="ok",
            t_sent_s=8.0,
            t_first_token_s=8.1,
            t_end_s=8.2,
            chunk_offsets_s=[0.1],
            chunk_tokens=[1],
            output_tokens=1,
        ),
    ]
    summary = summarize_window(table(*rows), WINDOW, None)
    assert summary["counts"]["issued"] == 2
    assert summary["counts"]["error"] == 1
    assert summary["error_rate"] == pytest.approx(0.5)

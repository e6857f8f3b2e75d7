"""Each peer view on hand-computed records: every expected figure below is worked out by hand
from the peer's definition (cited in its module), not by running the view's code.

The phase: W = [1, 11] s. Records (times in s from t0; chunk offsets after t_sent):
  a: sent 1.0, chunks at +0.10 (1 token), +0.20 (1), +0.40 (2); end +0.45; N = 4 (usage); in 3
  b: sent 2.0, chunks at +0.20 (1), +0.50 (1); end +0.52; N = 2; in 5
  c: sent 0.5 (ramp-up), chunks at +0.10 (1), +0.30 (1); end 0.85 (before W); N = 2; in 7
  d: sent 4.0, an error (no chunk), end 4.1
  e: sent 10.9, cut at 11.0 (one chunk at +0.05, 1 token, no end)
Scheduled time = sent for all.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from servingperf.analysis.peers import aiperf, guidellm, inference_perf, vllm_bench
from servingperf.analysis.peers.registry import PEERS, view_run
from servingperf.analysis.peers.requests import Requests
from servingperf.analysis.peers.weighted import merge_close, rate_distribution, weighted
from servingperf.errors import ConfigError
from servingperf.results.rundir import PhaseWindow, RunInfo
from tests.fakes.records import record, table

WINDOW = PhaseWindow("m", "load", start_s=0.0, measure_start_s=1.0, measure_end_s=11.0, end_s=11.2)


def _records():  # type: ignore[no-untyped-def]
    return table(
        record(
            request_id="a",
            t_sent_s=1.0,
            t_first_token_s=1.1,
            t_end_s=1.45,
            chunk_offsets_s=[0.1, 0.2, 0.4],
            chunk_tokens=[1, 1, 2],
            output_tokens=4,
            input_tokens=3,
        ),
        record(
            request_id="b",
            t_sent_s=2.0,
            t_first_token_s=2.2,
            t_end_s=2.52,
            chunk_offsets_s=[0.2, 0.5],
            chunk_tokens=[1, 1],
            output_tokens=2,
            input_tokens=5,
        ),
        record(
            request_id="c",
            t_sent_s=0.5,
            t_first_token_s=0.6,
            t_end_s=0.85,
            chunk_offsets_s=[0.1, 0.3],
            chunk_tokens=[1, 1],
            output_tokens=2,
            input_tokens=7,
        ),
        record(request_id="d", t_sent_s=4.0, t_end_s=4.1, status="error", error_kind="connect"),
        record(
            request_id="e",
            t_sent_s=10.9,
            t_first_token_s=10.95,
            chunk_offsets_s=[0.05],
            chunk_tokens=[1],
            status="cut",
            error_kind="cut",
            output_tokens=1,
        ),
    )


def _figures(module, records=None):  # type: ignore[no-untyped-def]
    figures, counts = module.view(Requests.of(records or _records()), WINDOW)
    return {f.name: f.value for f in figures}, counts


def test_vllm_bench_view() -> None:
    fig, counts = _figures(vllm_bench)
    assert counts == {"completed": 3, "failed": 1, "cut": 1}
    # duration: earliest scheduled 0.5 to the latest end of a finished request (d, the error: 4.1)
    assert fig["duration"] == pytest.approx(3.6)
    assert fig["total_output_tokens"] == 8 and fig["total_input_tokens"] == 15
    assert fig["output_throughput"] == pytest.approx(8 / 3.6)
    assert fig["request_throughput"] == pytest.approx(3 / 3.6)
    # TTFT = first chunk - sent: 100, 200, 100 ms
    assert fig["mean_ttft_ms"] == pytest.approx(400 / 3)
    assert fig["median_ttft_ms"] == pytest.approx(100)
    # latency ends at the last chunk: a 400, b 500, c 300 ms (not the last byte)
    assert fig["median_e2el_ms"] == pytest.approx(400)
    # TPOT = (latency - ttft) / (N - 1): a (400-100)/3 = 100, b 300/1 = 300, c 200/1 = 200
    assert fig["mean_tpot_ms"] == pytest.approx(200)
    # ITL: every chunk gap, not divided by tokens: a 100, 200; b 300; c 200
    assert fig["mean_itl_ms"] == pytest.approx(200)
    assert fig["p99_itl_ms"] == pytest.approx(np.percentile([100, 200, 300, 200], 99))
    assert fig["std_ttft_ms"] == pytest.approx(np.std([100, 200, 100]))


def test_guidellm_view() -> None:
    fig, counts = _figures(guidellm)
    # overlap with W = [1, 11]: a, b yes; c ended at 0.85 < 1: no; d errored; e incomplete
    assert counts == {"successful": 2, "incomplete": 1, "errored": 1}
    # latency end - start: a 0.45, b 0.52; weighted median = smallest value with cdf >= 0.5
    assert fig["request_latency.median"] == pytest.approx(0.45)
    assert fig["request_latency.mean"] == pytest.approx(0.485)
    # TTFT a 100, b 200 ms
    assert fig["time_to_first_token_ms.median"] == pytest.approx(100)
    assert fig["time_to_first_token_ms.p90"] == pytest.approx(200)
    # ITL = (last - first) / (N - 1): a (0.4-0.1)/3 = 100 ms weight 3; b 0.3/1 = 300 ms weight 1
    assert fig["inter_token_latency_ms.mean"] == pytest.approx((100 * 3 + 300) / 4)
    assert fig["inter_token_latency_ms.median"] == pytest.approx(100)
    assert fig["inter_token_latency_ms.p90"] == pytest.approx(300)
    # TPOT = (last - start) / N, first token included: a 0.4/4 = 100 ms (w 4), b 0.5/2 = 250 (w 2)
    assert fig["time_per_output_token_ms.mean"] == pytest.approx((100 * 4 + 250 * 2) / 6)
    # requests/s: ends at 1.45, 2.52 within [1, 11] plus zero-weight bounds 1 and 11:
    # midpoints 1.225, 1.985, 6.76; durations .225, .76, 4.775, 4.24; occurrences 0,1,1,0
    # rates 0, 1/.76, 1/4.775, 0; mean = sum(rate*dur)/sum(dur) = 2/10
    assert fig["requests_per_second.mean"] == pytest.approx(0.2)
    # output tokens: a at 1.1 (1), then linspace(1.1, 1.4, 3)[1:] = 1.25, 1.4 each (4-1)/2 = 1.5;
    # b at 2.2 (1), then 2.5 (1). Span 1.1..2.5 = 1.4 s; the last duration is half the last gap
    # (2.5 - 2.35 = .15): mean = (1 + 1.5 + 1.5 + 1 + 1) / (1.4) with durations summing to 1.4
    assert fig["output_tokens_per_second.mean"] == pytest.approx(6 / 1.4)


def test_inference_perf_view() -> None:
    fig, counts = _figures(inference_perf)
    assert counts == {"requests": 4, "successes": 3, "failures": 1, "cut": 1}
    # total time: latest end (d, the error: 4.1) - earliest start 0.5 over every non-cut request
    assert fig["benchmark_time_seconds"] == pytest.approx(3.6)
    assert fig["throughput.output_tokens_per_sec"] == pytest.approx(8 / 3.6)
    # token times: a 1.1, 1.2, 1.4, 1.4 (the 2-token chunk's two tokens share its time)
    # ITL per token: a .1, .2, 0; b .3; c .2 -> mean .16, and the zero is a sample
    assert fig["latency.inter_token_latency.mean"] == pytest.approx(0.16)
    assert fig["latency.inter_token_latency.median"] == pytest.approx(0.2)
    # TPOT = (last token - first token) / (N - 1): a .3/3 = .1, b .3, c .2
    assert fig["latency.time_per_output_token.mean"] == pytest.approx(0.2)
    # NTPOT = latency / N: a .45/4, b .52/2, c .35/2
    assert fig["latency.normalized_time_per_output_token.mean"] == pytest.approx(
        (0.45 / 4 + 0.26 + 0.175) / 3
    )
    assert fig["latency.time_to_first_token.median"] == pytest.approx(0.1)
    assert fig["latency.request_latency.p90"] == pytest.approx(
        np.percentile([0.45, 0.52, 0.35], 90)
    )


def test_inference_perf_skips_single_token_requests_for_ttft() -> None:
    records = table(
        record(
            request_id="one",
            t_sent_s=1.0,
            t_first_token_s=1.1,
            t_end_s=1.2,
            chunk_offsets_s=[0.1],
            chunk_tokens=[1],
            output_tokens=1,
        ),
        record(
            request_id="two",
            t_sent_s=2.0,
            t_first_token_s=2.3,
            t_end_s=2.5,
            chunk_offsets_s=[0.3, 0.4],
            chunk_tokens=[1, 1],
            output_tokens=2,
        ),
    )
    fig, _ = _figures(inference_perf, records)
    assert fig["latency.time_to_first_token.mean"] == pytest.approx(0.3)  # "one" is not streamable


def test_aiperf_view() -> None:
    fig, counts = _figures(aiperf)
    assert counts == {"valid": 3, "errors": 1, "cut": 1}
    # latency = last content chunk - start: a 400, b 500, c 300 ms
    assert fig["request_latency.avg"] == pytest.approx(400)
    # ITL = (latency - TTFT) / (OSL - 1): a 100, b 300, c 200 ms
    assert fig["inter_token_latency.avg"] == pytest.approx(200)
    assert fig["inter_chunk_latency.avg"] == pytest.approx(200)  # 100, 200, 300, 200
    # duration: latest final response (b: 2.5) - earliest start of a valid record (c: 0.5)
    assert fig["benchmark_duration"] == pytest.approx(2.0)
    assert fig["output_token_throughput"] == pytest.approx(8 / 2.0)
    assert fig["output_token_throughput_per_user.avg"] == pytest.approx((10 + 1 / 0.3 + 5) / 3)


def test_weighted_quantile_is_a_cdf_search_not_interpolation() -> None:
    result = weighted(np.asarray([1.0, 2.0, 3.0, 4.0]), None, (0.5, 0.9))
    assert result.median == 2.0  # numpy's linear interpolation would say 2.5
    assert result.percentiles[0.9] == 4.0
    with_weights = weighted(np.asarray([1.0, 2.0]), np.asarray([3.0, 1.0]), (0.9,))
    assert with_weights.mean == pytest.approx(1.25) and with_weights.median == 1.0


def test_merge_close_groups_from_each_group_start() -> None:
    times, weights = merge_close(
        np.asarray([0.0, 0.00005, 0.00009, 0.00015, 1.0]), np.ones(5), 1e-4
    )
    assert times.tolist() == [0.0, 0.00015, 1.0] and weights.tolist() == [3.0, 1.0, 1.0]


def test_rate_distribution_mean_is_events_over_span() -> None:
    result = rate_distribution(np.asarray([0.0, 1.0, 2.0, 3.0]), None, (0.5,))
    # durations .5, 1, 1, .5: rates 2, 1, 1, 2; time-weighted mean = 4 / 3
    assert result.mean == pytest.approx(4 / 3)
    assert result.median == pytest.approx(1.0)


def test_view_run_covers_every_load_window_and_unknown_peer_is_bad_input() -> None:
    info = RunInfo(
        "r", "s", "single-model", "2026-01-01T00:00:00+00:00", 0.0, {}, {}, {}, phases=[WINDOW]
    )
    for name in PEERS:
        result = view_run(info, _records(), name)
        assert [w.key for w in result.windows] == ["m"]
        assert result.ours["m"]["ttft_s.p50"] == pytest.approx(0.15)  # a and b, inside W
        data = result.to_json()
        assert data["source"]["commit"] and data["divergences"]
        assert all(
            not isinstance(f["value"], float) or math.isfinite(f["value"])
            for f in data["windows"][0]["figures"]
        )
    with pytest.raises(ConfigError, match="unknown peer"):
        view_run(info, _records(), "locust")

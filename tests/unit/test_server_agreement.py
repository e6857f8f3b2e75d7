"""Client-vs-server agreement, server series and the span decomposition, on hand-made samples."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from servingperf.analysis.decomposition import decompose, decomposition_summary, record_id_of
from servingperf.analysis.server_metrics import (
    Tolerance,
    agreement,
    bucket_distribution,
    client_distribution,
    gauge_series,
)
from servingperf.results.rundir import PhaseWindow
from servingperf.results.schema import METRIC_SAMPLE_SCHEMA, SPAN_SCHEMA
from tests.fakes.records import record, table

M = "m"


def labels(**extra: str) -> str:
    return json.dumps(dict(sorted({"engine": "0", "model_name": M, **extra}.items())))


def scrape(t: float, values: dict[str, float], instance: str = "i") -> list[dict[str, object]]:
    rows = []
    for key, value in values.items():
        name, _, reason = key.partition("#")
        extra = {"finished_reason": reason} if reason else {}
        rows.append(
            {
                "t_s": t,
                "source": "scrape",
                "instance": instance,
                "name": name,
                "labels": labels(**extra),
                "le": None,
                "value": value,
            }
        )
    return rows


def server_state(
    requests: float, tokens: float, ttft_sum: float, e2e_sum: float
) -> dict[str, float]:
    return {
        "vllm:request_success_total#length": requests,
        "vllm:request_success_total#abort": 0.0,
        "vllm:request_generation_tokens_sum": tokens,
        "vllm:request_prompt_tokens_sum": requests * 5,
        "vllm:time_to_first_token_seconds_sum": ttft_sum,
        "vllm:time_to_first_token_seconds_count": requests,
        "vllm:e2e_request_latency_seconds_sum": e2e_sum,
        "vllm:e2e_request_latency_seconds_count": requests,
        "vllm:request_queue_time_seconds_sum": requests * 0.001,
        "vllm:request_queue_time_seconds_count": requests,
    }


def samples(*rows: list[dict[str, object]]) -> pa.Table:
    flat = [r for batch in rows for r in batch]
    return pa.Table.from_pylist(flat, schema=METRIC_SAMPLE_SCHEMA)


def records(n: int, cut: int = 0, ttft: float = 0.1, e2e: float = 0.5) -> pa.Table:
    rows = [
        record(
            request_id=f"i:load:w0:u0:{k}",
            instance="i",
            model=M,
            t_sent_s=1.0 + k,
            t_first_token_s=1.0 + k + ttft,
            t_end_s=1.0 + k + e2e,
            output_tokens=8,
            input_tokens=5,
        )
        for k in range(n)
    ]
    rows += [
        record(
            request_id=f"i:load:w0:u1:{k}",
            instance="i",
            model=M,
            t_sent_s=5.0,
            t_first_token_s=None,
            status="cut",
            error_kind="cut",
        )
        for k in range(cut)
    ]
    return table(*rows)


WINDOW = PhaseWindow("i", "load", 1.0, 1.0, 9.0, 9.5)


def test_exact_counts_and_close_means_agree() -> None:
    # 3 requests before the phase (another phase's), 4 in it
    before = scrape(0.5, server_state(3, 24, 0.3, 1.5))
    after = scrape(9.6, server_state(7, 56, 0.3 + 4 * 0.099, 1.5 + 4 * 0.495))
    data = samples(before, after)
    result = agreement(records(4), data, [WINDOW], Tolerance())
    entry = result["windows"][0]
    assert result["verdict"] == entry["verdict"] == "agree"
    rows = {r["figure"]: r for r in entry["rows"]}
    assert rows["requests"]["client"] == 4 and rows["requests"]["server"] == 4
    assert rows["output_tokens"]["server"] == 32
    assert rows["input_tokens"]["server"] == 20
    assert rows["ttft_mean_s"]["server"] == pytest.approx(0.099)
    assert rows["queue_mean_s"]["verdict"] == "server only"


def test_one_request_missing_on_the_server_disagrees() -> None:
    data = samples(
        scrape(0.5, server_state(0, 0, 0, 0)), scrape(9.6, server_state(3, 24, 0.3, 1.5))
    )
    result = agreement(records(4), data, [WINDOW], Tolerance())
    assert result["verdict"] == "disagree"
    rows = {r["figure"]: r for r in result["windows"][0]["rows"]}
    assert rows["requests"]["verdict"] == "disagree"


def test_a_mean_beyond_the_bound_disagrees() -> None:
    data = samples(
        scrape(0.5, server_state(0, 0, 0, 0)), scrape(9.6, server_state(4, 32, 0.4, 4 * 0.2))
    )
    result = agreement(records(4, e2e=0.5), data, [WINDOW], Tolerance(rel=0.1, abs_s=0.02))
    rows = {r["figure"]: r for r in result["windows"][0]["rows"]}
    assert rows["e2e_mean_s"]["verdict"] == "disagree"
    assert rows["ttft_mean_s"]["verdict"] == "agree"
    assert result["verdict"] == "disagree"


def test_cut_requests_widen_the_count_rule() -> None:
    # 4 ok + 2 cut on the client; the server finished one of the cut ones
    data = samples(
        scrape(0.5, server_state(0, 0, 0, 0)), scrape(9.6, server_state(5, 40, 0.5, 2.5))
    )
    entry = agreement(records(4, cut=2), data, [WINDOW], Tolerance())["windows"][0]
    rows = {r["figure"]: r for r in entry["rows"]}
    assert rows["requests"]["verdict"] == "agree"
    assert rows["requests"]["rule"] == "client <= server <= client + 2 cut"
    too_many = samples(
        scrape(0.5, server_state(0, 0, 0, 0)), scrape(9.6, server_state(7, 56, 0.7, 3.5))
    )
    entry = agreement(records(4, cut=2), too_many, [WINDOW], Tolerance())["windows"][0]
    assert {r["figure"]: r for r in entry["rows"]}["requests"]["verdict"] == "disagree"


def test_without_a_scrape_after_the_window_it_is_unknown() -> None:
    data = samples(
        scrape(0.5, server_state(0, 0, 0, 0)), scrape(5.0, server_state(2, 16, 0.2, 1.0))
    )
    result = agreement(records(4), data, [WINDOW], Tolerance())
    assert result["verdict"] == "unknown"
    assert "no scrape" in result["windows"][0]["reason"]


def test_other_models_label_sets_do_not_count() -> None:
    elsewhere = scrape(9.6, server_state(9, 72, 1, 1))
    other = [dict(r, labels=str(r["labels"]).replace('"m"', '"other"')) for r in elsewhere]
    mine = scrape(9.6, server_state(4, 32, 0.4, 2.0))
    data = samples(scrape(0.5, server_state(0, 0, 0, 0)), mine, other)
    result = agreement(records(4), data, [WINDOW], Tolerance())
    assert result["verdict"] == "agree"


def test_gauges_and_batch_tokens_series() -> None:
    rows = []
    for k, (running, steps, tokens) in enumerate([(0, 0, 0), (3, 10, 40), (2, 30, 100)]):
        state = {
            "vllm:num_requests_running": running,
            "vllm:iteration_tokens_total_sum": tokens,
            "vllm:iteration_tokens_total_count": steps,
        }
        rows += scrape(float(k), state)
    series = gauge_series(samples(rows), "i", M)
    assert series["num_requests_running"] == [(0.0, 0), (1.0, 3), (2.0, 2)]
    assert series["batch_tokens"] == [(1.0, 4.0), (2.0, 3.0)]


def test_bucket_distribution_is_per_bucket_between_two_scrapes() -> None:
    def buckets(t: float, counts: list[float]) -> list[dict[str, object]]:
        bounds = [0.1, 1.0, float("inf")]
        return [
            {
                "t_s": t,
                "source": "scrape",
                "instance": "i",
                "name": "vllm:x_bucket",
                "labels": labels(),
                "le": b,
                "value": c,
            }
            for b, c in zip(bounds, counts, strict=True)
        ]

    data = samples(buckets(0.0, [1, 2, 2]), buckets(5.0, [3, 7, 8]))
    assert bucket_distribution(data, "i", "vllm:x", 0.0, 5.0, M) == [
        (0.1, 2.0),
        (1.0, 3.0),
        (float("inf"), 1.0),
    ]
    assert client_distribution([0.05, 0.1, 0.5, 3.0], [0.1, 1.0, float("inf")]) == [2, 1, 1]


def test_record_ids_from_vllm_request_ids() -> None:
    known = {"a:load:w0:u1:7", "plain"}
    assert record_id_of("cmpl-a:load:w0:u1:7-0", known) == "a:load:w0:u1:7"
    assert record_id_of("chatcmpl-a:load:w0:u1:7", known) == "a:load:w0:u1:7"
    assert record_id_of("plain", known) == "plain"
    assert record_id_of("cmpl-unknown-0", known) is None


def test_decomposition_parts_add_up_to_the_client_e2e() -> None:
    recs = records(2, e2e=0.5)
    spans = pa.Table.from_pylist(
        [
            {
                "span_request_id": "cmpl-i:load:w0:u0:0-0",
                "queue_s": 0.01,
                "prefill_s": 0.09,
                "decode_s": 0.35,
                "e2e_s": 0.46,
            },
            {
                "span_request_id": "cmpl-elsewhere-0",
                "queue_s": 1,
                "prefill_s": 1,
                "decode_s": 1,
                "e2e_s": 3,
            },
        ],
        schema=SPAN_SCHEMA,
    )
    parts = decompose(recs, spans)
    assert parts.num_rows == 1
    row = parts.to_pylist()[0]
    assert row["request_id"] == "i:load:w0:u0:0"
    assert row["other_s"] == pytest.approx(0.05)
    assert row["queue_s"] + row["prefill_s"] + row["decode_s"] + row["other_s"] == pytest.approx(
        row["e2e_s"]
    )
    summary = decomposition_summary(parts, recs)
    assert summary[0]["joined"] == 1 and summary[0]["ok"] == 2
    assert summary[0]["decode_share"] == pytest.approx(0.35 / 0.5)

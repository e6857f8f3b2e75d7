"""The emulator's vLLM metrics, computed from the engine on a virtual clock (exact timings).

The exposition is parsed back with prometheus-client's text parser (the one the scraper uses), so
every test also proves the text is valid Prometheus format 0.0.4.
"""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from servingperf.emulator.engine import Engine
from servingperf.emulator.vllm_metrics import TTFT_BUCKETS, EngineMetrics
from tests.unit.test_emulator_engine import (
    BASE,
    PER_SEQ,
    PREFILL,
    VirtualClock,
    drain,
    make_profile,
)


def samples(metrics: EngineMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition: (name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(metrics: EngineMetrics, name: str, model: str = "m", **labels: str) -> float:
    key = (name, tuple(sorted({"engine": "0", "model_name": model, **labels}.items())))
    return samples(metrics)[key]


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


async def test_finished_requests_give_vllm_definitions_exactly(clock: VirtualClock) -> None:
    engine = Engine(make_profile(max_batch=1), clock=clock, sleep=clock.sleep)
    metrics = EngineMetrics(engine, ["m"]).attach()
    first = engine.submit(10, 3, model="m")
    second = engine.submit(20, 2, model="m", finish_reason="stop")
    await drain(first)
    await drain(second)
    await engine.aclose()
    step1 = BASE + PER_SEQ + PREFILL * 10  # first's prefill step
    step = BASE + PER_SEQ
    # first: admitted at 0, tokens at step1, step1+step, step1+2 step; second queued meanwhile
    assert value(metrics, "vllm:request_success_total", finished_reason="length") == 1
    assert value(metrics, "vllm:request_success_total", finished_reason="stop") == 1
    assert value(metrics, "vllm:request_success_total", finished_reason="abort") == 0
    assert value(metrics, "vllm:prompt_tokens_total") == 30
    assert value(metrics, "vllm:generation_tokens_total") == 5
    assert value(metrics, "vllm:request_generation_tokens_sum") == 5
    assert value(metrics, "vllm:e2e_request_latency_seconds_count") == 2
    first_e2e = step1 + 2 * step
    second_queue = first_e2e  # admitted when the first left the batch
    second_e2e = second_queue + (BASE + PER_SEQ + PREFILL * 20) + step
    assert value(metrics, "vllm:e2e_request_latency_seconds_sum") == pytest.approx(
        first_e2e + second_e2e
    )
    assert value(metrics, "vllm:request_queue_time_seconds_sum") == pytest.approx(second_queue)
    assert value(metrics, "vllm:time_to_first_token_seconds_sum") == pytest.approx(
        step1 + second_queue + BASE + PER_SEQ + PREFILL * 20
    )
    assert value(metrics, "vllm:request_decode_time_seconds_sum") == pytest.approx(3 * step)
    # ITL: one sample per token that is not a request's first: 2 + 1
    assert value(metrics, "vllm:inter_token_latency_seconds_count") == 3
    assert value(metrics, "vllm:inter_token_latency_seconds_sum") == pytest.approx(3 * step)
    # time per output token: decode / (N - 1) per request
    assert value(metrics, "vllm:request_time_per_output_token_seconds_sum") == pytest.approx(
        step + step
    )
    # iteration tokens: prompt admitted + produced, per step (5 steps)
    assert value(metrics, "vllm:iteration_tokens_total_count") == 5
    assert value(metrics, "vllm:iteration_tokens_total_sum") == 30 + 5


async def test_histogram_buckets_are_cumulative_with_vllm_bounds(clock: VirtualClock) -> None:
    engine = Engine(make_profile(max_batch=8), clock=clock, sleep=clock.sleep)
    metrics = EngineMetrics(engine, ["m"]).attach()
    await asyncio.gather(*(drain(engine.submit(5, 4, model="m")) for _ in range(6)))
    await engine.aclose()
    family = next(
        f
        for f in text_string_to_metric_families(metrics.render().decode())
        if f.name == "vllm:time_to_first_token_seconds"
    )
    assert family.type == "histogram"
    buckets = [s for s in family.samples if s.name.endswith("_bucket")]
    bounds = [float(s.labels["le"]) for s in buckets]
    assert bounds == [*TTFT_BUCKETS, float("inf")]
    counts = [s.value for s in buckets]
    assert counts == sorted(counts)  # cumulative
    assert counts[-1] == 6


async def test_gauges_count_running_and_waiting_per_model(clock: VirtualClock) -> None:
    engine = Engine(make_profile(max_batch=2), clock=clock, sleep=clock.sleep)
    metrics = EngineMetrics(engine, ["a", "b"]).attach()
    sequences = [engine.submit(4, 50, model=m) for m in ("a", "a", "b", "b", "b")]
    await clock.sleep(0)  # the loop admits the first two
    for _ in range(3):
        await asyncio.sleep(0)
    assert value(metrics, "vllm:num_requests_running", "a") == 2
    assert value(metrics, "vllm:num_requests_running", "b") == 0
    assert value(metrics, "vllm:num_requests_waiting", "b") == 3
    usage = value(metrics, "vllm:kv_cache_usage_perc", "a")
    assert 0 < usage < 1
    assert usage == value(metrics, "vllm:kv_cache_usage_perc", "b")  # one device
    for seq in sequences:
        seq.cancel()
    await engine.aclose()


async def test_a_cancelled_request_counts_its_tokens_and_ttft_only(clock: VirtualClock) -> None:
    """As vLLM 0.32 does for a client abort: no finished-request metric, tokens so far counted."""
    engine = Engine(make_profile(max_batch=4), clock=clock, sleep=clock.sleep)
    metrics = EngineMetrics(engine, ["m"]).attach()
    seq = engine.submit(7, 100, model="m")
    got = 0
    async for _ in seq:
        got += 1
        if got == 5:
            seq.cancel()
    await engine.aclose()
    assert value(metrics, "vllm:generation_tokens_total") == seq.produced >= 5
    assert value(metrics, "vllm:prompt_tokens_total") == 7
    assert value(metrics, "vllm:time_to_first_token_seconds_count") == 1
    for reason in ("stop", "length", "abort"):
        assert value(metrics, "vllm:request_success_total", finished_reason=reason) == 0
    assert value(metrics, "vllm:e2e_request_latency_seconds_count") == 0
    assert value(metrics, "vllm:request_generation_tokens_count") == 0


async def test_an_engine_that_stops_counts_abort(clock: VirtualClock) -> None:
    engine = Engine(make_profile(max_batch=4), clock=clock, sleep=clock.sleep)
    metrics = EngineMetrics(engine, ["m"]).attach()
    engine.submit(3, 1000, model="m")
    await clock.sleep(0)
    await asyncio.sleep(0)
    await engine.aclose()
    assert value(metrics, "vllm:request_success_total", finished_reason="abort") == 1


async def test_shared_device_attributes_itl_to_each_model(clock: VirtualClock) -> None:
    engine = Engine(make_profile(max_batch=4), clock=clock, sleep=clock.sleep)
    metrics = EngineMetrics(engine, ["a", "b"]).attach()
    await asyncio.gather(
        drain(engine.submit(1, 5, model="a")), drain(engine.submit(1, 2, model="b"))
    )
    await engine.aclose()
    assert value(metrics, "vllm:inter_token_latency_seconds_count", "a") == 4
    assert value(metrics, "vllm:inter_token_latency_seconds_count", "b") == 1
    assert value(metrics, "vllm:generation_tokens_total", "a") == 5
    assert value(metrics, "vllm:generation_tokens_total", "b") == 2

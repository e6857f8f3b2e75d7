"""The emulator's ``GET /metrics`` on a real socket: valid Prometheus text, vLLM's names, and
figures that agree with the emulator's own ground truth for the same requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from servingperf.emulator.groundtruth import read_ground_truth
from servingperf.emulator.server import RunningServer, ServeOptions, start_server

TIMEOUT = aiohttp.ClientTimeout(total=30)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    running = await start_server(
        ServeOptions(
            profile="flan-t5-small",
            model_ids=("alpha",),
            load_time_s=0,
            ground_truth_path=tmp_path / "gt.jsonl",
        )
    )
    try:
        yield running
    finally:
        await running.close()


async def scrape(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with session.get(f"{url}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert sample.labels["model_name"] == "alpha"
            assert sample.labels["engine"] == "0"
            if sample.name == "vllm:request_success_total":
                values[f"success:{sample.labels['finished_reason']}"] = sample.value
            elif "le" not in sample.labels:
                values[sample.name] = sample.value
    return values


async def test_metrics_agree_with_ground_truth(server: RunningServer, tmp_path: Path) -> None:
    body = {
        "model": "alpha",
        "prompt": "one two three four",
        "max_tokens": 8,
        "min_tokens": 8,
        "ignore_eos": True,
        "stream": True,
    }
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        before = await scrape(session, server.url)
        assert before["success:length"] == 0

        async def one(index: int) -> None:
            headers = {"X-Request-Id": f"req-{index}"}
            async with session.post(
                f"{server.url}/v1/completions", json=body, headers=headers
            ) as response:
                assert response.status == 200
                await response.read()

        await asyncio.gather(*(one(i) for i in range(6)))
        after = await scrape(session, server.url)
    truth = read_ground_truth(tmp_path / "gt.jsonl")
    assert len(truth) == 6
    assert after["success:length"] == 6
    assert after["vllm:generation_tokens_total"] == sum(r.output_tokens for r in truth) == 48
    assert after["vllm:prompt_tokens_total"] == sum(r.prompt_tokens for r in truth)
    assert after["vllm:e2e_request_latency_seconds_count"] == 6
    assert after["vllm:inter_token_latency_seconds_count"] == 6 * 7
    assert after["vllm:num_requests_running"] == 0
    # the server's E2E runs from submission to the last token; the ground truth from the
    # handler's start to the last byte written: the same requests, a few ms apart at most
    server_e2e = after["vllm:e2e_request_latency_seconds_sum"] / 6
    truth_e2e = sum((r.end or 0) - r.arrival for r in truth) / 6
    assert server_e2e == pytest.approx(truth_e2e, abs=0.05)
    assert server_e2e <= truth_e2e + 0.005

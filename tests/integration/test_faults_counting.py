"""How the OpenAI client counts what a misbehaving server streams, against the emulator's shape
faults (issue #22): chunks carrying several tokens, usage that disagrees with the stream,
reasoning before content, 429s and empty 200s. In-process emulator, real client, real sockets;
every record is compared with the emulator's ground truth (tokens really generated, and when the
chunk carrying each token's text was written)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from servingperf.analysis import metrics
from servingperf.emulator.server import RunningServer, ServeOptions, start_server
from servingperf.load.execute import RequestRunner
from servingperf.load.sinks import ListSink, LoadCounters
from servingperf.model.records import (
    ErrorKind,
    Exchange,
    GenerationRequest,
    RequestContext,
    RequestRecord,
    TokenSource,
)
from servingperf.model.specs import FaultSpec, ProtocolKind
from servingperf.model.target import Target
from servingperf.protocols.openai import OpenAIClient
from servingperf.results.record_writer import records_to_table
from tests.support.toy_tokenizer import write_toy_tokenizer

TOKENS = 16
STEP_S = 0.01  # the emulator's decode step: 10 ms a token, whatever the batch


@pytest.fixture
async def serve() -> AsyncIterator[list[RunningServer]]:
    servers: list[RunningServer] = []
    yield servers
    for server in servers:
        await server.close()


async def _start(servers: list[RunningServer], faults: FaultSpec) -> RunningServer:
    overrides = {"decode_base_s": STEP_S}
    options = ServeOptions(profile="instant", load_time_s=0, faults=faults, overrides=overrides)
    server = await start_server(options)
    servers.append(server)
    return server


async def _run(
    server: RunningServer,
    n: int = 3,
    *,
    chat: bool = False,
    stream: bool = True,
    count_from: TokenSource = TokenSource.USAGE,
    **target: Any,
) -> list[RequestRecord]:
    """``n`` requests of ``TOKENS`` tokens one after the other, as one closed-loop user sends
    them, frozen into records (offsets from t0 = 0)."""
    kind = ProtocolKind.OPENAI_CHAT if chat else ProtocolKind.OPENAI_COMPLETIONS
    client = OpenAIClient(
        Target(url=server.url, model="instant", protocol=kind, request_timeout_s=10, **target)
    )
    sink = ListSink()
    runner = RequestRunner(client, sink, LoadCounters("m", "p"), 0.0, 10.0)
    try:
        for i in range(n):
            request = GenerationRequest(
                f"r{i}", "instant", "one two three", TOKENS, TOKENS, True, stream=stream
            )
            context = RequestContext("m", "instant", "p", 0, 0, i, TOKENS, count_from)
            await runner.run(Exchange(request, time.monotonic()), context)
    finally:
        await client.aclose()
    for _ in range(200):  # a handler logs its ground truth just after the last byte
        if len(server.ground_truth) >= n:
            break
        await asyncio.sleep(0.01)
    return list(sink.records)


def _truth(server: RunningServer) -> dict[str, Any]:
    return {t.request_id: t for t in server.ground_truth}


def _chunk_gaps_vs_truth(record: RequestRecord, truth: Any) -> list[float]:
    """Per token-bearing chunk after the first: client ITL sample minus the server's (the gap
    between the writes of the chunks carrying the text, over the tokens of the later one)."""
    written = sorted(set(truth.token_written))
    client = [b - a for a, b in itertools.pairwise(record.chunk_offsets_s)]
    server = [b - a for a, b in itertools.pairwise(written)]
    tokens = record.chunk_tokens[1:]
    return [(c - s) / t for c, s, t in zip(client, server, tokens, strict=True)]


# --- 1. chunks carrying several tokens ---------------------------------------------------------

MERGED = FaultSpec(multi_token_p=1.0, tokens_per_chunk=4)
HELD = FaultSpec(multi_token_p=1.0, tokens_per_chunk=4, multi_token_empty_text=True)


@pytest.mark.parametrize("faults", [MERGED, HELD], ids=["merged", "empty-text"])
@pytest.mark.parametrize(
    ("counting", "source"),
    [
        ({"chunk_usage": True}, "server"),
        ({"token_ids": True}, "server"),
        ({"tokenizer": "toy"}, "tokenizer"),
    ],
    ids=["running-usage", "token-ids", "tokenizer"],
)
async def test_a_chunk_of_four_tokens_counts_four_and_itl_is_per_token(
    serve: list[RunningServer],
    tmp_path: Path,
    faults: FaultSpec,
    counting: dict[str, Any],
    source: str,
) -> None:
    if counting.get("tokenizer") == "toy":
        counting = {"tokenizer": str(write_toy_tokenizer(tmp_path))}
    server = await _start(serve, faults)
    records = await _run(server, **counting)
    truth = _truth(server)
    for record in records:
        assert record.status == "ok", record.error_message
        assert record.chunk_tokens == [4, 4, 4, 4]
        assert record.chunk_token_source == source
        assert (record.stream_output_tokens, record.usage_output_tokens) == (TOKENS, TOKENS)
        assert record.token_mismatch is False
        server_record = truth[record.request_id]
        assert server_record.fault == "multi_token"
        assert server_record.output_tokens == TOKENS
        # the first token is the first chunk with text (held chunks never count)
        assert record.t_first_token_s is not None and record.t_sent_s is not None
        client_ttft = record.t_first_token_s - record.t_sent_s
        assert abs(client_ttft - (server_record.first_token_written - server_record.arrival)) < 0.1
        errors = _chunk_gaps_vs_truth(record, server_record)
        assert max(abs(e) for e in errors) < 0.025  # loaded 2-core machine: per sample
    itl = metrics.itl(records_to_table(records))
    assert itl.size == 3 * len(records)
    server_itl = []
    for record in records:
        written = sorted(set(truth[record.request_id].token_written))
        server_itl += [(b - a) / 4 for a, b in itertools.pairwise(written)]
    # each sample is a 4-step gap over 4 tokens: the server's time per token, not four of it
    assert abs(float(np.median(itl)) - float(np.median(server_itl))) < 0.01


async def test_without_counts_a_chunk_is_one_token_and_the_usage_disagrees(
    serve: list[RunningServer],
) -> None:
    """No per-chunk counts and no tokenizer: one per chunk, the documented fallback; the usage
    block then disagrees, and the record says so."""
    server = await _start(serve, MERGED)
    for record in await _run(server):
        assert record.chunk_tokens == [1, 1, 1, 1]
        assert record.chunk_token_source == "chunks"
        assert (record.stream_output_tokens, record.usage_output_tokens) == (4, TOKENS)
        assert record.token_mismatch is True
        assert (record.output_tokens, record.token_source) == (TOKENS, "usage")


async def test_a_short_last_group_carries_what_is_left(serve: list[RunningServer]) -> None:
    """16 tokens in groups of 5, text held back (vLLM): the last chunk carries the last one."""
    faults = FaultSpec(multi_token_p=1.0, tokens_per_chunk=5, multi_token_empty_text=True)
    server = await _start(serve, faults)
    for record in await _run(server, 1, chunk_usage=True):
        assert record.chunk_tokens == [5, 5, 5, 1]
        assert record.stream_output_tokens == TOKENS
        assert record.token_mismatch is False


# --- 2. usage that disagrees with the stream --------------------------------------------------

MISMATCH = FaultSpec(usage_mismatch_p=1.0, usage_extra_tokens=5)


@pytest.mark.parametrize("chat", [False, True], ids=["completions", "chat"])
async def test_a_usage_block_of_21_after_16_streamed_is_flagged(
    serve: list[RunningServer], chat: bool
) -> None:
    server = await _start(serve, MISMATCH)
    records = await _run(server, chat=chat)
    truth = _truth(server)
    for record in records:
        assert record.status == "ok"
        assert truth[record.request_id].fault == "usage_mismatch"
        assert truth[record.request_id].output_tokens == TOKENS  # what was really sent
        assert (record.stream_output_tokens, record.usage_output_tokens) == (TOKENS, TOKENS + 5)
        assert record.token_mismatch is True
        assert (record.output_tokens, record.token_source) == (TOKENS + 5, "usage")


async def test_the_scenario_may_take_n_from_the_stream(serve: list[RunningServer]) -> None:
    server = await _start(serve, MISMATCH)
    for record in await _run(server, count_from=TokenSource.STREAM):
        assert (record.output_tokens, record.token_source) == (TOKENS, "stream")
        assert record.usage_output_tokens == TOKENS + 5
        assert record.token_mismatch is True


async def test_non_streamed_usage_is_not_compared(serve: list[RunningServer]) -> None:
    server = await _start(serve, MISMATCH)
    for record in await _run(server, stream=False, count_from=TokenSource.STREAM):
        assert record.stream_output_tokens is None  # nothing streamed to compare with
        assert record.token_mismatch is None
        assert (record.output_tokens, record.token_source) == (TOKENS + 5, "usage")


# --- 3. reasoning before content ---------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
async def test_reasoning_first_keeps_first_token_and_first_content_apart(
    serve: list[RunningServer], stream: bool
) -> None:
    server = await _start(serve, FaultSpec(reasoning_p=1.0, reasoning_tokens=8))
    records = await _run(server, chat=True, stream=stream)
    truth = _truth(server)
    for record in records:
        assert record.status == "ok", record.error_message
        assert record.output_tokens == TOKENS
        if not stream:
            assert record.t_first_token_s is None and record.t_first_content_s is None
            continue
        assert record.t_first_token_s is not None and record.t_first_content_s is not None
        # the first content token (token 8) comes 8 decode steps after the first reasoning one
        written = truth[record.request_id].token_written
        client_s = record.t_first_content_s - record.t_first_token_s
        assert client_s > 0
        assert abs(client_s - (written[8] - written[0])) < 0.05
        assert record.chunk_tokens == [1] * TOKENS
    assert {t.fault for t in server.ground_truth} == {"reasoning_first"}


# --- 4. rate limiting and empty answers ---------------------------------------------------------


@pytest.mark.parametrize("chat", [False, True], ids=["completions", "chat"])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
async def test_429_is_rate_limited_and_5xx_is_not(
    serve: list[RunningServer], chat: bool, stream: bool
) -> None:
    server = await _start(serve, FaultSpec(seed=2, error_status={429: 0.5, 503: 0.5}))
    records = await _run(server, 8, chat=chat, stream=stream)
    labels = {t.request_id: str(t.fault) for t in server.ground_truth}
    kinds = {(labels[r.request_id], r.error_kind) for r in records}
    assert kinds == {("http_429", ErrorKind.RATE_LIMITED.value), ("http_503", "http_status")}
    for record in records:
        assert (record.error_message or "").startswith(f"HTTP {labels[record.request_id][5:]}")


@pytest.mark.parametrize("chat", [False, True], ids=["completions", "chat"])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
async def test_an_empty_200_says_empty_response(
    serve: list[RunningServer], chat: bool, stream: bool
) -> None:
    server = await _start(serve, FaultSpec(empty_200_p=1.0))
    records = await _run(server, 2, chat=chat, stream=stream)
    for record in records:
        assert (record.status, record.error_kind) == ("error", "protocol")
        assert (record.error_message or "").startswith("empty response")
    assert {(t.fault, t.status, t.outcome) for t in server.ground_truth} == {
        ("empty_200", 200, "empty")
    }

"""A reasoning model in the emulator (profile ``reasoning_tokens``), read by servingperf's client.

Every chat answer's first ``reasoning_tokens`` tokens are reasoning (``delta.reasoning`` when
streamed, ``message.reasoning`` when not), the rest content; a shorter answer is all reasoning.
The client counts the reasoning tokens as output tokens and keeps the first content token after
the first token (TTFO after TTFT, by the reasoning's decode steps); the emulator's ground truth
says the same count. Completions have no reasoning.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import AsyncIterator

import pytest

from servingperf.emulator.server import RunningServer, ServeOptions, start_server
from servingperf.emulator.tokenizer import tokens_of
from servingperf.model.records import Exchange, GenerationRequest, RequestStatus
from servingperf.model.specs import ProtocolKind
from servingperf.model.target import Target
from servingperf.protocols.openai import OpenAIClient

REASONING = 5
STEP_S = 0.004


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    options = ServeOptions(
        profile="instant",
        model_ids=("m",),
        load_time_s=0,
        overrides={"decode_base_s": STEP_S, "reasoning_tokens": REASONING},
    )
    running = await start_server(options)
    try:
        yield running
    finally:
        await running.close()


async def generate(server: RunningServer, chat: bool, tokens: int, stream: bool) -> Exchange:
    protocol = ProtocolKind.OPENAI_CHAT if chat else ProtocolKind.OPENAI_COMPLETIONS
    client = OpenAIClient(
        Target(url=f"http://127.0.0.1:{server.port}", model="m", protocol=protocol)
    )
    request = GenerationRequest(
        f"r-{chat}-{tokens}-{stream}", "m", "hello", tokens, tokens, stream=stream
    )
    exchange = Exchange(request=request, mono_scheduled=time.monotonic())
    try:
        await client.generate(exchange)
    finally:
        await client.aclose()
    assert exchange.status is RequestStatus.OK, exchange.error_message
    return exchange


def truth(server: RunningServer, request_id: str) -> int:
    (record,) = [r for r in server.ground_truth if r.request_id == request_id]
    return record.reasoning_tokens


@pytest.mark.parametrize("tokens", [12, 3])
async def test_a_streamed_chat_answer_reasons_first(server: RunningServer, tokens: int) -> None:
    exchange = await generate(server, chat=True, tokens=tokens, stream=True)
    reasoning = min(REASONING, tokens)
    assert exchange.reasoning_tokens == reasoning
    assert sum(exchange.chunk_tokens) == tokens  # reasoning counts as output
    assert exchange.usage_output_tokens == tokens
    assert truth(server, exchange.request.request_id) == reasoning
    assert exchange.mono_first_token is not None
    if tokens > REASONING:
        assert exchange.mono_first_content is not None
        # the first content token comes the reasoning's decode steps after the first token
        assert exchange.mono_first_content - exchange.mono_first_token >= REASONING * STEP_S * 0.9
    else:
        assert exchange.mono_first_content is None  # all of it was reasoning


async def test_a_whole_chat_answer_carries_its_reasoning(server: RunningServer) -> None:
    body = json.dumps(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 9,
         "ignore_eos": True}
    ).encode()  # fmt: skip
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/v1/chat/completions",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    answer = await asyncio.to_thread(lambda: json.load(urllib.request.urlopen(request, timeout=10)))
    message = answer["choices"][0]["message"]
    assert len(tokens_of(message["reasoning"])) == REASONING
    assert len(tokens_of(message["content"])) == 9 - REASONING
    assert answer["usage"]["completion_tokens"] == 9


async def test_completions_have_no_reasoning(server: RunningServer) -> None:
    exchange = await generate(server, chat=False, tokens=12, stream=True)
    assert exchange.reasoning_tokens == 0
    assert exchange.mono_first_content == exchange.mono_first_token
    assert truth(server, exchange.request.request_id) == 0

"""The emulator's HTTP front end, on a real loopback socket, driven by an aiohttp client."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from servingperf.emulator.groundtruth import read_ground_truth
from servingperf.emulator.server import RunningServer, ServeOptions, start_server
from servingperf.emulator.tokenizer import count_tokens, token_text

TIMEOUT = aiohttp.ClientTimeout(total=30)


async def wait_until(predicate: Callable[[], object], timeout_s: float = 10.0) -> None:
    """Poll ``predicate`` every 10 ms (at most ``timeout_s``), failing when it stays false."""
    for _ in range(int(timeout_s / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    running = await start_server(
        ServeOptions(
            profile="instant",
            model_ids=("alpha", "beta"),
            load_time_s=0,
            ground_truth_path=tmp_path / "gt.jsonl",
            port_file=tmp_path / "port",
        )
    )
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        yield session


async def read_events(response: aiohttp.ClientResponse) -> list[str]:
    """The ``data:`` payloads of an SSE response, in order."""
    events: list[str] = []
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("data: "):
            events.append(line[len("data: ") :])
        else:
            assert line == "", f"unexpected SSE line {line!r}"
    return events


async def stream(
    client: aiohttp.ClientSession, url: str, body: dict[str, Any], request_id: str | None = None
) -> list[str]:
    headers = {"X-Request-Id": request_id} if request_id else {}
    async with client.post(url, json=body, headers=headers) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        return await read_events(response)


async def test_port_file_and_url(server: RunningServer, tmp_path: Path) -> None:
    assert (tmp_path / "port").read_text().strip() == str(server.port)
    assert server.url == f"http://127.0.0.1:{server.port}"


async def test_streaming_completions(server: RunningServer, client: aiohttp.ClientSession) -> None:
    body = {
        "model": "alpha",
        "prompt": "Tell me a story.",
        "stream": True,
        "max_tokens": 12,
        "ignore_eos": True,
        "stream_options": {"include_usage": True},
    }
    events = await stream(client, server.url + "/v1/completions", body)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    token_chunks, usage_chunk = chunks[:-1], chunks[-1]
    assert len(token_chunks) == 12
    for i, chunk in enumerate(token_chunks):
        assert chunk["object"] == "text_completion"
        assert chunk["model"] == "alpha"
        (choice,) = chunk["choices"]
        assert choice["text"] == token_text(i)
        assert choice["finish_reason"] == ("length" if i == 11 else None)
    assert usage_chunk["choices"] == []
    prompt_tokens = count_tokens("Tell me a story.")
    assert usage_chunk["usage"] == {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": 12,
        "total_tokens": prompt_tokens + 12,
    }


async def test_streaming_chat_opens_with_a_role_only_chunk(
    server: RunningServer, client: aiohttp.ClientSession
) -> None:
    body = {
        "model": "beta",
        "messages": [{"role": "user", "content": "Hi!"}],
        "stream": True,
        "max_completion_tokens": 5,
        "min_tokens": 5,
    }
    events = await stream(client, server.url + "/v1/chat/completions", body)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert len(chunks) == 6  # role chunk + 5 tokens, no usage chunk unless asked
    role = chunks[0]["choices"][0]
    assert role["delta"] == {"role": "assistant", "content": ""}
    assert role["finish_reason"] is None
    for i, chunk in enumerate(chunks[1:]):
        assert chunk["object"] == "chat.completion.chunk"
        (choice,) = chunk["choices"]
        assert choice["delta"] == {"content": token_text(i)}
        assert choice["finish_reason"] == ("length" if i == 4 else None)
        assert "usage" not in chunk


async def test_continuous_usage_stats_in_every_chunk(
    server: RunningServer, client: aiohttp.ClientSession
) -> None:
    body = {
        "model": "alpha",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Go"}],
        "stream": True,
        "max_tokens": 4,
        "ignore_eos": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True},
    }
    events = await stream(client, server.url + "/v1/chat/completions", body)
    chunks = [json.loads(e) for e in events[:-1]]
    completion = [c["usage"]["completion_tokens"] for c in chunks]
    assert completion == [0, 1, 2, 3, 4, 4]  # role, four tokens, final usage chunk
    assert chunks[-1]["choices"] == []


@pytest.mark.parametrize("chat", [False, True])
async def test_non_streaming_usage(
    server: RunningServer, client: aiohttp.ClientSession, chat: bool
) -> None:
    if chat:
        path, body = "/v1/chat/completions", {"messages": [{"role": "user", "content": "a b c"}]}
    else:
        path, body = "/v1/completions", {"prompt": "a b c"}
    body |= {"model": "alpha", "max_tokens": 9, "ignore_eos": True}
    async with client.post(server.url + path, json=body) as response:
        assert response.status == 200
        data = await response.json()
    (choice,) = data["choices"]
    text = choice["message"]["content"] if chat else choice["text"]
    assert count_tokens(text) == 9
    assert choice["finish_reason"] == "length"
    usage = data["usage"]
    assert usage["completion_tokens"] == 9
    assert usage["total_tokens"] == usage["prompt_tokens"] + 9
    if not chat:
        assert usage["prompt_tokens"] == 3
    assert data["object"] == ("chat.completion" if chat else "text_completion")


async def test_ignore_eos_forces_exact_lengths(
    server: RunningServer, client: aiohttp.ClientSession
) -> None:
    for n in (1, 2, 57, 300):
        body = {
            "model": "alpha",
            "prompt": "x",
            "stream": True,
            "max_tokens": n,
            "ignore_eos": True,
        }
        events = await stream(client, server.url + "/v1/completions", body)
        assert len(events) == n + 1  # n token chunks and [DONE]
    # Without forcing, the natural length of "instant" (mean 16) is cut at max_tokens or stops.
    body = {"model": "alpha", "prompt": "x", "max_tokens": 3}
    async with client.post(server.url + "/v1/completions", json=body) as response:
        data = await response.json()
    assert data["usage"]["completion_tokens"] <= 3


async def test_default_model_is_the_first(
    server: RunningServer, client: aiohttp.ClientSession
) -> None:
    async with client.post(server.url + "/v1/completions", json={"prompt": "p"}) as response:
        assert response.status == 200
        assert (await response.json())["model"] == "alpha"


async def test_unknown_model_is_404_openai_shaped(
    server: RunningServer, client: aiohttp.ClientSession
) -> None:
    body = {"model": "gamma", "prompt": "hello", "stream": True}
    async with client.post(server.url + "/v1/completions", json=body) as response:
        assert response.status == 404
        error = (await response.json())["error"]
    assert "gamma" in error["message"]
    assert error["type"] == "NotFoundError"
    assert error["code"] == 404


@pytest.mark.parametrize(
    ("path", "payload", "fragment"),
    [
        ("/v1/completions", b"{not json", "not valid JSON"),
        ("/v1/completions", b"[1, 2]", "JSON object"),
        ("/v1/completions", b'{"model": "alpha"}', "'prompt' is required"),
        ("/v1/completions", b'{"prompt": "x", "max_tokens": "ten"}', "'max_tokens'"),
        ("/v1/completions", b'{"prompt": "x", "max_tokens": 0}', "'max_tokens' must be >= 1"),
        ("/v1/completions", b'{"prompt": "x", "min_tokens": 5, "max_tokens": 2}', "min_tokens"),
        ("/v1/completions", b'{"prompt": "x", "stream_options": {}}', "'stream' is true"),
        ("/v1/completions", b'{"prompt": "x", "ignore_eos": "yes"}', "'ignore_eos'"),
        ("/v1/completions", b'{"prompt": ["a", "b"]}', "several prompts"),
        ("/v1/completions", b'{"prompt": "x", "n": 2}', "'n'"),
        ("/v1/chat/completions", b'{"messages": []}', "'messages'"),
        ("/v1/chat/completions", b'{"messages": [{"content": "x"}]}', "role"),
    ],
)
async def test_invalid_bodies_are_400_with_a_clear_message(
    server: RunningServer, client: aiohttp.ClientSession, path: str, payload: bytes, fragment: str
) -> None:
    headers = {"Content-Type": "application/json"}
    async with client.post(server.url + path, data=payload, headers=headers) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert fragment in error["message"]
    assert error["type"] == "BadRequestError"


async def test_models_lists_every_served_id(
    server: RunningServer, client: aiohttp.ClientSession
) -> None:
    async with client.get(server.url + "/v1/models") as response:
        assert response.status == 200
        data = await response.json()
    assert data["object"] == "list"
    assert [m["id"] for m in data["data"]] == ["alpha", "beta"]


async def test_health_is_503_while_loading_then_200(client: aiohttp.ClientSession) -> None:
    running = await start_server(ServeOptions(profile="flan-t5-small", load_time_s=0.5))
    try:
        started = time.monotonic()
        async with client.get(running.url + "/health") as response:
            assert response.status == 503
        body = {"model": "flan-t5-small", "prompt": "early"}
        async with client.post(running.url + "/v1/completions", json=body) as response:
            assert response.status == 503
        async with client.get(running.url + "/v1/models") as response:
            assert response.status == 503
        status = 503
        async with asyncio.timeout(10):
            while status != 200:
                async with client.get(running.url + "/health") as response:
                    status = response.status
                if status != 200:
                    await asyncio.sleep(0.05)
        assert time.monotonic() - started >= 0.45
        async with client.post(running.url + "/v1/completions", json=body | {"max_tokens": 2}) as r:
            assert r.status == 200
        assert [g.status for g in running.ground_truth] == [503, 200]
    finally:
        await running.close()


async def test_client_disconnect_mid_stream_leaves_the_server_healthy(
    client: aiohttp.ClientSession,
) -> None:
    running = await start_server(
        ServeOptions(
            profile="flan-t5-small",
            overrides={"decode_base_s": 0.002},
            load_time_s=0,
        )
    )
    try:
        body = {"prompt": "go", "stream": True, "max_tokens": 100_000, "ignore_eos": True}
        headers = {"X-Request-Id": "leaver"}
        response = await client.post(running.url + "/v1/completions", json=body, headers=headers)
        received = 0
        async for raw in response.content:
            if raw.startswith(b"data: "):
                received += 1
                if received == 5:
                    break
        response.close()  # drop the connection mid-stream
        await wait_until(lambda: running.ground_truth)
        (record,) = running.ground_truth
        assert record.request_id == "leaver"
        assert record.outcome == "disconnected"
        assert 5 <= record.output_tokens < 100_000
        await wait_until(lambda: not running.engine.stats().running)
        async with client.get(running.url + "/health") as r:
            assert r.status == 200
        short = {"prompt": "again", "stream": True, "max_tokens": 3, "ignore_eos": True}
        events = await stream(client, running.url + "/v1/completions", short)
        assert len(events) == 4
    finally:
        await running.close()


async def test_ground_truth_matches_requests_one_to_one(
    server: RunningServer, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    first_seen: dict[str, float] = {}
    sent: dict[str, float] = {}

    async def one(i: int) -> None:
        rid = f"req-{i}"
        streaming = i % 3 != 0
        body = {"model": "alpha" if i % 2 else "beta", "prompt": "p " * i, "stream": streaming}
        body |= {"max_tokens": 1 + i % 7, "ignore_eos": True}
        sent[rid] = time.monotonic()
        async with client.post(
            server.url + "/v1/completions", json=body, headers={"X-Request-Id": rid}
        ) as response:
            assert response.status == 200
            async for raw in response.content:
                if raw.strip() and rid not in first_seen:
                    first_seen[rid] = time.monotonic()

    await asyncio.gather(*(one(i) for i in range(30)))
    async with client.post(
        server.url + "/v1/completions",
        json={"model": "nope", "prompt": "x"},
        headers={"X-Request-Id": "bad-model"},
    ) as response:
        assert response.status == 404

    records = {g.request_id: g for g in server.ground_truth}
    assert len(server.ground_truth) == 31
    assert set(records) == {*sent, "bad-model"}
    for rid, g in records.items():
        if rid == "bad-model":
            assert g.status == 404
            assert g.outcome == "rejected"
            assert g.token_written == []
            continue
        i = int(rid.split("-")[1])
        assert g.status == 200
        assert g.outcome == "ok"
        assert g.model == ("alpha" if i % 2 else "beta")
        assert g.streamed == (i % 3 != 0)
        expected_tokens = 1 + i % 7
        assert g.output_tokens == expected_tokens
        assert len(g.token_written) == (expected_tokens if g.streamed else 1)
        assert g.prompt_tokens == i
        assert g.finish_reason == "length"
        assert g.admitted is not None
        assert g.first_token_written is not None
        assert g.end is not None
        # Same host, same monotonic clock: the server's times sit inside the client's.
        assert sent[rid] <= g.arrival <= g.admitted <= g.first_token_written
        assert g.first_token_written <= first_seen[rid]
        assert g.token_written == sorted(g.token_written)
        assert g.token_written[-1] <= g.end
    from_file = read_ground_truth(tmp_path / "gt.jsonl")
    assert from_file == server.ground_truth


async def test_client_leaving_a_non_streaming_request_frees_its_slot(
    client: aiohttp.ClientSession,
) -> None:
    running = await start_server(
        ServeOptions(profile="flan-t5-small", overrides={"decode_base_s": 0.002}, load_time_s=0)
    )
    try:
        body = {"prompt": "go", "max_tokens": 100_000, "ignore_eos": True}
        task = asyncio.create_task(client.post(running.url + "/v1/completions", json=body))
        await wait_until(lambda: running.engine.stats().running)
        task.cancel()  # the client gives up and closes its connection
        await asyncio.wait({task})
        await wait_until(lambda: not running.engine.stats().running and running.ground_truth)
        (record,) = running.ground_truth
        assert record.outcome == "disconnected"
        assert record.output_tokens == 0
    finally:
        await running.close()


async def test_closing_the_server_ends_streams_with_an_error_event(
    client: aiohttp.ClientSession,
) -> None:
    running = await start_server(
        ServeOptions(profile="flan-t5-small", overrides={"decode_base_s": 0.002}, load_time_s=0)
    )
    closed = False
    close: asyncio.Task[None] | None = None
    try:
        body = {"prompt": "go", "stream": True, "max_tokens": 100_000, "ignore_eos": True}
        async with client.post(running.url + "/v1/completions", json=body) as response:
            events: list[str] = []
            async for raw in response.content:
                if raw.startswith(b"data: "):
                    events.append(raw.decode()[6:].strip())
                    if len(events) == 3:
                        close = asyncio.create_task(running.close())
        assert close is not None
        await close
        closed = True
        assert events[-1] == "[DONE]"
        assert "error" in json.loads(events[-2])
        (record,) = running.ground_truth
        assert record.outcome == "aborted"
        assert record.finish_reason is None
    finally:
        if not closed:
            await running.close()

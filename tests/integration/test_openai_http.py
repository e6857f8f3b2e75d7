"""The OpenAI client's lean HTTP/1.1 transport (the open-loop engine's hot path) against a scripted
loopback server: every body framing, any split of the bytes, errors as records, keep-alive reuse,
and a cancelled request never poisoning the next one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from servingperf.model.records import Exchange, GenerationRequest, RequestStatus
from servingperf.model.specs import ProtocolKind
from servingperf.model.target import Target
from servingperf.protocols.openai import OpenAIClient

Script = Callable[[bytes], list[bytes]]  # request bytes -> response pieces, written one by one


def _event(text: str, finish: str | None = None) -> bytes:
    chunk = {"choices": [{"index": 0, "text": text, "finish_reason": finish}]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":3}}\n\n'
STREAM = (
    _event("a") + _event("") + _event("b") + _event("c", "length") + USAGE + b"data: [DONE]\n\n"
)


def _chunked(body: bytes, size: int) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


HEAD_CHUNKED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)


@dataclass
class Server:
    port: int
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)


@contextlib.asynccontextmanager
async def serve(script: Script, pause_s: float = 0.0) -> AsyncIterator[Server]:
    state = Server(port=0)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                state.requests.append(request)
                for piece in script(request):
                    if piece == b"<close>":
                        writer.close()
                        return
                    writer.write(piece)
                    await writer.drain()
                    if pause_s:
                        await asyncio.sleep(pause_s)
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


def _client(port: int, chat: bool = False) -> OpenAIClient:
    protocol = ProtocolKind.OPENAI_CHAT if chat else ProtocolKind.OPENAI_COMPLETIONS
    return OpenAIClient(Target(url=f"http://127.0.0.1:{port}", model="m", protocol=protocol))


def _exchange(stream: bool = True, request_id: str = "r1") -> Exchange:
    request = GenerationRequest(request_id, "m", "hello", 3, stream=stream)
    return Exchange(request=request, mono_scheduled=time.monotonic())


def _bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


@pytest.mark.parametrize("split", ["whole", "bytewise", "chunk-7"])
async def test_chunked_stream_any_split(split: str) -> None:
    body = _chunked(STREAM, 7 if split == "chunk-7" else len(STREAM))
    raw = HEAD_CHUNKED + body
    pieces = _bytewise(raw) if split == "bytewise" else [raw]
    async with serve(lambda _: pieces) as server:
        client = _client(server.port)
        exchange = _exchange()
        await client.generate(exchange)
        await client.aclose()
    assert exchange.status is RequestStatus.OK, exchange.error_message
    assert exchange.chunk_tokens == [1, 1, 1]  # the empty-text chunk carries no token
    assert exchange.usage_output_tokens == 3
    assert exchange.usage_input_tokens == 3
    assert exchange.finish_reason == "length"
    assert exchange.mono_sent is not None
    assert exchange.mono_first_token is not None
    assert exchange.mono_sent <= exchange.mono_first_token <= exchange.chunk_monos[-1]
    assert exchange.mono_end is not None
    assert exchange.mono_end >= exchange.chunk_monos[-1]
    request = server.requests[0]
    assert b"POST /v1/completions HTTP/1.1" in request
    assert b"X-Request-Id: r1" in request
    assert json.loads(request.split(b"\r\n\r\n", 1)[1])["stream_options"]["include_usage"]


async def test_content_length_and_close_delimited_streams() -> None:
    length_head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(STREAM)
    close_head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
    for pieces in ([length_head + STREAM], [close_head, STREAM, b"<close>"]):
        async with serve(lambda _, p=pieces: p) as server:  # type: ignore[misc]
            client = _client(server.port)
            exchange = _exchange()
            await client.generate(exchange)
            await client.aclose()
        assert exchange.status is RequestStatus.OK, exchange.error_message
        assert sum(exchange.chunk_tokens) == 3


async def test_non_streaming_reads_usage() -> None:
    body = json.dumps(
        {
            "choices": [{"text": "a b", "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 2},
        }
    ).encode()
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    async with serve(lambda _: _bytewise(raw)) as server:
        client = _client(server.port)
        exchange = _exchange(stream=False)
        await client.generate(exchange)
        await client.aclose()
    assert exchange.status is RequestStatus.OK
    assert exchange.usage_output_tokens == 2
    assert exchange.mono_first_token is None


async def test_http_errors_and_broken_streams_are_failed_records() -> None:
    error = b'{"error":{"message":"no such model"}}'
    cases = {
        "http_status": [
            b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n%s" % (len(error), error)
        ],
        "protocol": [HEAD_CHUNKED, _chunked(_event("a"), 100)[:-5], b"<close>"],
        "not-json": [HEAD_CHUNKED + _chunked(b"data: {nope\n\n", 100)],
        "no-done": [HEAD_CHUNKED + _chunked(_event("a") + USAGE, 100)],
        "garbage": [b"SSH-2.0-OpenSSH\r\n\r\n"],
    }
    for name, pieces in cases.items():
        async with serve(lambda _, p=pieces: p) as server:  # type: ignore[misc]
            client = _client(server.port)
            exchange = _exchange()
            await client.generate(exchange)
            await client.aclose()
        assert exchange.status is RequestStatus.ERROR, name
        expected = "http_status" if name == "http_status" else "protocol"
        assert exchange.error_kind is not None, name
        assert exchange.error_kind.value == expected, name
    assert "HTTP 404" in (await _failed_message(cases["http_status"]))


async def _failed_message(pieces: list[bytes]) -> str:
    async with serve(lambda _: pieces) as server:
        client = _client(server.port)
        exchange = _exchange()
        await client.generate(exchange)
        await client.aclose()
    return exchange.error_message or ""


async def test_refused_connection_is_a_connect_error() -> None:
    async with serve(lambda _: []) as server:
        port = server.port
    client = _client(port)  # nothing listens there any more
    exchange = _exchange()
    await client.generate(exchange)
    await client.aclose()
    assert exchange.status is RequestStatus.ERROR
    assert exchange.error_kind is not None
    assert exchange.error_kind.value == "connect"


async def test_keep_alive_reuses_one_connection_and_a_cancel_drops_it() -> None:
    raw = HEAD_CHUNKED + _chunked(STREAM, 16)
    async with serve(lambda _: [raw]) as server:
        client = _client(server.port)
        for index in range(3):
            exchange = _exchange(request_id=f"r{index}")
            await client.generate(exchange)
            assert exchange.status is RequestStatus.OK
        assert server.connections == 1
        await client.aclose()
    slow = [HEAD_CHUNKED, _chunked(_event("a"), 100)[:-5]]  # then nothing: the stream hangs
    async with serve(lambda r: slow if b"slow" in r else [raw]) as server:
        client = _client(server.port)
        hung = _exchange(request_id="slow")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await client.generate(hung)
        assert hung.chunk_tokens == [1]  # what arrived before the cancel is kept
        after = _exchange(request_id="next")
        await client.generate(after)
        assert after.status is RequestStatus.OK
        assert server.connections == 2  # the half-read connection was not reused
        await client.aclose()


async def test_chat_stream_counts_content_and_reasoning_but_not_the_role_chunk() -> None:
    def delta(**fields: str) -> bytes:
        return b"data: " + json.dumps({"choices": [{"delta": fields}]}).encode() + b"\n\n"

    body = (
        delta(role="assistant", content="")
        + delta(reasoning_content="hmm")
        + delta(content="hi")
        + b"data: [DONE]\n\n"
    )
    async with serve(lambda _: [HEAD_CHUNKED + _chunked(body, 9)]) as server:
        client = _client(server.port, chat=True)
        exchange = _exchange()
        await client.generate(exchange)
        await client.aclose()
    assert exchange.status is RequestStatus.OK
    assert exchange.chunk_tokens == [1, 1]
    assert exchange.mono_first_content is not None
    assert exchange.mono_first_token is not None
    assert exchange.mono_first_content >= exchange.mono_first_token
    assert b"/v1/chat/completions" in server.requests[0]


async def test_the_clients_own_deadline_fails_a_hung_stream_as_a_timeout() -> None:
    raw = HEAD_CHUNKED + _chunked(STREAM, 16)
    slow = [HEAD_CHUNKED, _chunked(_event("a"), 100)[:-5]]  # then nothing: the stream hangs
    async with serve(lambda r: slow if b"slow" in r else [raw]) as server:
        target = Target(
            url=f"http://127.0.0.1:{server.port}",
            model="m",
            protocol=ProtocolKind.OPENAI_COMPLETIONS,
            request_timeout_s=0.3,
        )
        client = OpenAIClient(target)
        hung = _exchange(request_id="slow")
        started = time.monotonic()
        await asyncio.wait_for(client.generate(hung), 10)  # bounded even if the deadline broke
        assert time.monotonic() - started >= 0.3
        assert hung.status is RequestStatus.ERROR
        assert hung.error_kind is not None and hung.error_kind.value == "timeout"
        assert hung.chunk_tokens == [1]  # what arrived before the deadline is kept
        after = _exchange(request_id="next")
        await client.generate(after)
        assert after.status is RequestStatus.OK
        assert server.connections == 2  # the timed-out connection was dropped
        await client.aclose()


async def test_bytes_after_the_response_end_keep_the_request_but_drop_the_connection() -> None:
    raw = HEAD_CHUNKED + _chunked(STREAM, 16) + b"HTTP/1.1 200 OK\r\nbogus"
    async with serve(lambda _: [raw]) as server:
        client = _client(server.port)
        for index in range(2):
            exchange = _exchange(request_id=f"r{index}")
            await client.generate(exchange)
            assert exchange.status is RequestStatus.OK, exchange.error_message
            assert exchange.chunk_tokens == [1, 1, 1]
        await client.aclose()
    assert server.connections == 2


def _counted(text: str, ids: list[int], running: int, finish: str | None = None) -> bytes:
    """A vLLM chunk with its token ids and running usage (both per-chunk server counts)."""
    choice = {"index": 0, "text": text, "token_ids": ids, "finish_reason": finish}
    usage = {"prompt_tokens": 3, "completion_tokens": running}
    return b"data: " + json.dumps({"choices": [choice], "usage": usage}).encode() + b"\n\n"


# vLLM streaming "日本" as byte-level tokens: two chunks with empty text, then the text; an
# end-of-sequence token whose text is skipped closes the answer.
VLLM_HELD = (
    _counted("", [1], 1)
    + _counted("", [2], 2)
    + _counted("日本", [3], 3)
    + _counted(" ok", [4], 4)
    + _counted("", [5], 5, "stop")
    + b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5}}\n\n'
    + b"data: [DONE]\n\n"
)


@pytest.mark.parametrize("split", ["whole", "bytewise", "chunk-7"])
@pytest.mark.parametrize("ask", ["chunk_usage", "token_ids"])
async def test_tokens_on_chunks_without_text_are_carried_by_the_next_text(
    split: str, ask: str
) -> None:
    raw = HEAD_CHUNKED + _chunked(VLLM_HELD, 7 if split == "chunk-7" else len(VLLM_HELD))
    pieces = _bytewise(raw) if split == "bytewise" else [raw]
    async with serve(lambda _: pieces) as server:
        target = Target(
            url=f"http://127.0.0.1:{server.port}",
            model="m",
            protocol=ProtocolKind.OPENAI_COMPLETIONS,
            chunk_usage=ask == "chunk_usage",
            token_ids=ask == "token_ids",
        )
        client = OpenAIClient(target)
        exchange = _exchange()
        await client.generate(exchange)
        await client.aclose()
    assert exchange.status is RequestStatus.OK, exchange.error_message
    assert exchange.chunk_tokens == [3, 1]  # "日本" brings its two held tokens
    assert exchange.tokens_without_text == 1  # the end-of-sequence token
    assert exchange.streamed_tokens == exchange.usage_output_tokens == 5
    assert exchange.chunk_source is not None and exchange.chunk_source.value == "server"
    sent = json.loads(server.requests[0].split(b"\r\n\r\n", 1)[1])
    if ask == "chunk_usage":
        assert sent["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}
        assert "return_token_ids" not in sent
    else:
        assert sent["stream_options"] == {"include_usage": True}
        assert sent["return_token_ids"] is True


async def test_nothing_extra_is_asked_by_default() -> None:
    async with serve(lambda _: [HEAD_CHUNKED + _chunked(STREAM, 16)]) as server:
        client = _client(server.port)
        exchange = _exchange()
        await client.generate(exchange)
        await client.aclose()
    sent = json.loads(server.requests[0].split(b"\r\n\r\n", 1)[1])
    assert sent["stream_options"] == {"include_usage": True}
    assert "return_token_ids" not in sent
    assert exchange.chunk_tokens == [1, 1, 1]  # the empty chunk carries nothing
    assert exchange.chunk_source is not None and exchange.chunk_source.value == "chunks"

"""Property-based fuzzing of streamed-response parsing: the SSE parser and the OpenAI client's
chunk handling, fed malformed streams split anywhere (bounded budget: at most 200 examples each).

Properties: parsing never raises; a request ends ok or as a PROTOCOL error with a message; token
chunks carry at least one token and arrive in time order; a request succeeds only if its stream
held ``[DONE]``; and the outcome does not depend on how the bytes were split on the wire.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

from aiohttp import web
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from servingperf.model.records import ErrorKind, Exchange, GenerationRequest, RequestStatus
from servingperf.model.specs import ProtocolKind
from servingperf.model.target import Target
from servingperf.protocols.openai import OpenAIClient
from servingperf.protocols.sse import SseParser

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- strategies --------------------------------------------------------------------------------

_text = st.text(max_size=12)
_count = st.one_of(st.integers(-3, 50), st.floats(allow_nan=True), st.none(), _text)


@st.composite
def chunk_json(draw: st.DrawFn) -> Any:
    """One chunk's JSON value: mostly OpenAI-shaped (completions or chat), some of it wrong."""
    choice = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "text": st.one_of(_text, st.none(), st.integers()),
                "delta": st.one_of(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "content": st.one_of(_text, st.none()),
                            "role": st.just("assistant"),
                            "reasoning_content": st.one_of(_text, st.none()),
                        },
                    ),
                    st.none(),
                    _text,
                ),
                "finish_reason": st.one_of(st.none(), st.sampled_from(["stop", "length"]), _count),
                "index": st.integers(0, 2),
                "token_ids": st.one_of(st.lists(st.integers(0, 9), max_size=4), _count),
            },
        )
    )
    usage = st.fixed_dictionaries(
        {}, optional={"completion_tokens": _count, "prompt_tokens": _count}
    )
    return draw(
        st.one_of(
            st.fixed_dictionaries(
                {"choices": st.lists(st.one_of(st.just(choice), _text), max_size=2)},
                optional={"usage": st.one_of(usage, st.none(), _text), "id": _text},
            ),
            st.fixed_dictionaries({"error": st.one_of(_text, st.dictionaries(_text, _text))}),
            st.lists(st.integers(), max_size=3),
            st.integers(),
            _text,
            st.none(),
        )
    )


@st.composite
def event_payload(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["json", "json", "json", "done", "garbage", "truncated"]))
    if kind == "done":
        return "[DONE]"
    if kind == "garbage":
        return draw(st.text(max_size=30))
    encoded = json.dumps(draw(chunk_json()))
    if kind == "truncated":
        return encoded[: draw(st.integers(0, max(0, len(encoded) - 1)))]
    return encoded


@st.composite
def valid_payloads(draw: st.DrawFn) -> list[str]:
    """A well-formed OpenAI stream (completions or chat shapes), usage chunk and ``[DONE]``;
    now and then the server counts each chunk's tokens (``token_ids`` or running usage), and
    chunks carry several tokens or hold their text back (``""``), as vLLM does."""
    chat = draw(st.booleans())
    n = draw(st.integers(0, 6))
    counts = draw(st.sampled_from([None, "token_ids", "usage"]))
    out = (
        [json.dumps({"choices": [{"delta": {"role": "assistant", "content": ""}}]})] if chat else []
    )
    running = 0
    for i in range(n):
        text = f"t{i}" if draw(st.integers(0, 3)) else ""
        choice: dict[str, Any] = {"delta": {"content": text}} if chat else {"text": text}
        choice["finish_reason"] = "length" if i == n - 1 else None
        chunk: dict[str, Any] = {"choices": [choice]}
        tokens = draw(st.integers(1, 3))
        running += tokens
        if counts == "token_ids":
            choice["token_ids"] = list(range(tokens))
        elif counts == "usage":
            chunk["usage"] = {"completion_tokens": running, "prompt_tokens": 1}
        out.append(json.dumps(chunk))
    if draw(st.booleans()):
        usage = {"completion_tokens": n, "prompt_tokens": draw(st.integers(0, 9))}
        out.append(json.dumps({"choices": [], "usage": usage}))
    out.append("[DONE]")
    return out


@st.composite
def sse_stream(draw: st.DrawFn) -> bytes:
    """A stream of events with mixed line endings, comments, other fields, a BOM, and framing
    mistakes (a missing blank line, a missing final newline, stray bytes); half of the streams
    are well-formed OpenAI streams with at most one such mistake."""
    valid = draw(st.booleans())
    payloads = draw(valid_payloads()) if valid else draw(st.lists(event_payload(), max_size=12))
    out = b"\xef\xbb\xbf" if draw(st.integers(0, 9)) == 0 else b""
    mistakes = 1 if valid else 10**6
    for payload in payloads:
        eol = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
        if draw(st.integers(0, 9)) == 0:
            out += b": keep-alive" + eol
        if draw(st.integers(0, 9)) == 0:
            out += b"event: message" + eol + b"id: 7" + eol
        lines = payload.split("\n")
        out += b"".join(b"data: " + line.encode("utf-8", "surrogatepass") + eol for line in lines)
        if mistakes and draw(st.integers(0, 19)) == 0:  # now and then the blank line is missing
            mistakes -= 1
        else:
            out += eol
        if mistakes and draw(st.integers(0, 29)) == 0:
            mistakes -= 1
            out += draw(st.binary(max_size=8))
    return out


@st.composite
def split(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=8))))
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@st.composite
def stream_and_split(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    data = draw(st.one_of(sse_stream(), st.binary(max_size=200)))
    return data, draw(split(data))


# --- the SSE parser ----------------------------------------------------------------------------


def _parse(pieces: list[bytes]) -> list[str]:
    parser = SseParser()
    events: list[str] = []
    for piece in pieces:
        events += parser.feed(piece)
    return events + parser.close()


@FUZZ
@given(stream_and_split())
def test_sse_parser_never_raises_and_ignores_how_bytes_are_split(
    case: tuple[bytes, list[bytes]],
) -> None:
    data, pieces = case
    assert _parse(pieces) == _parse([data])


@FUZZ
@given(st.lists(st.text().filter(lambda t: "\n" not in t and "\r" not in t), max_size=8), st.data())
def test_sse_parser_returns_well_framed_payloads_exactly(
    payloads: list[str], data: st.DataObject
) -> None:
    wire = b"".join(
        b"data: "
        + p.encode("utf-8", "surrogatepass")
        + data.draw(st.sampled_from([b"\n", b"\r\n"]))
        + b"\n"
        for p in payloads
    )
    decoded = [p.encode("utf-8", "surrogatepass").decode("utf-8", "replace") for p in payloads]
    assert _parse(data.draw(split(wire))) == decoded


# --- the OpenAI client, over a real loopback socket (public API only) ----------------------------


def _check(exchange: Exchange) -> None:
    """Invariants of every finished exchange, whatever the server sent."""
    event(f"{exchange.status.value} {exchange.error_kind or ''}")
    assert exchange.status in (RequestStatus.OK, RequestStatus.ERROR)
    assert exchange.mono_end is not None
    if exchange.status is RequestStatus.ERROR:
        assert exchange.error_kind in (
            ErrorKind.PROTOCOL,
            ErrorKind.HTTP_STATUS,
            ErrorKind.RATE_LIMITED,
        ), exchange
        assert exchange.error_message
    assert all(t >= 1 for t in exchange.chunk_tokens)
    assert len(exchange.chunk_tokens) == len(exchange.chunk_monos)
    assert exchange.chunk_monos == sorted(exchange.chunk_monos)
    if exchange.usage_output_tokens is not None:
        assert exchange.usage_output_tokens >= 0


def _outcome(exchange: Exchange) -> tuple[object, ...]:
    return (
        exchange.status,
        exchange.error_kind,
        tuple(exchange.chunk_tokens),
        exchange.tokens_without_text,
        exchange.chunk_source,
        exchange.usage_output_tokens,
        exchange.usage_input_tokens,
        exchange.finish_reason,
    )


async def _generate(port: int, *, chat: bool, stream: bool) -> Exchange:
    kind = ProtocolKind.OPENAI_CHAT if chat else ProtocolKind.OPENAI_COMPLETIONS
    client = OpenAIClient(
        Target(url=f"http://127.0.0.1:{port}", model="m", protocol=kind, request_timeout_s=10)
    )
    exchange = Exchange(GenerationRequest("r", "m", "p", 8, stream=stream), time.monotonic())
    try:
        # Bounded: once the server has written and closed, the client must finish.
        await asyncio.wait_for(client.generate(exchange), 10)
    finally:
        await client.aclose()
    return exchange


async def _sse_over_aiohttp(pieces: list[bytes], chat: bool) -> Exchange:
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for piece in pieces:
            if piece:
                await response.write(piece)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/completions", handler)
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        return await _generate(runner.addresses[0][1], chat=chat, stream=True)
    finally:
        await runner.cleanup()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream_and_split(), st.booleans())
def test_openai_client_reads_any_sse_stream_safely(
    case: tuple[bytes, list[bytes]], chat: bool
) -> None:
    data, pieces = case
    exchange = asyncio.run(_sse_over_aiohttp(pieces, chat))
    _check(exchange)
    if exchange.status is RequestStatus.OK:
        assert "[DONE]" in _parse([data])
    # The same bytes in one write give the same outcome: splitting on the wire does not matter.
    assert _outcome(asyncio.run(_sse_over_aiohttp([data], chat))) == _outcome(exchange)


# --- hostile HTTP framing, from a bare TCP server ----------------------------------------------


@st.composite
def chunked(draw: st.DrawFn, body: bytes) -> bytes:
    """``body`` in chunked transfer encoding, sometimes with broken chunk sizes or CRLFs."""
    out = b""
    position = 0
    while position < len(body):
        size = draw(st.integers(1, max(1, len(body) - position)))
        piece = body[position : position + size]
        position += size
        header = draw(
            st.sampled_from(
                [f"{len(piece):x}", f"{len(piece):X}", f"{len(piece):x};ext=1", "zz", "-1", ""]
            )
            if draw(st.integers(0, 9)) == 0
            else st.just(f"{len(piece):x}")
        )
        out += header.encode() + b"\r\n" + piece + draw(st.sampled_from([b"\r\n"] * 9 + [b""]))
    return out + draw(st.sampled_from([b"0\r\n\r\n"] * 4 + [b"", b"0\r\n", b"fffffff\r\n"]))


_WHOLE_BODY = json.dumps(
    {"choices": [{"text": "abc", "finish_reason": "length"}], "usage": {"completion_tokens": 3}}
).encode()
_GOOD_STATUS = [b"HTTP/1.1 200 OK"] * 6 + [b"HTTP/1.0 200 OK", b"HTTP/1.1 200"]
_BAD_STATUS = [
    b"HTTP/1.1 500 Oops",
    b"HTTP/1.1 429 Too Many Requests",
    b"HTTP/1.1 abc",
    b"HTTP/2 200",
    b"garbage",
]


@st.composite
def http_response(draw: st.DrawFn, stream: bool) -> bytes:
    """A response to a streamed (SSE body) or whole (JSON body) request, framed by length,
    chunks or connection close, with broken framing, headers or status now and then."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=300))
    status = draw(st.sampled_from(_GOOD_STATUS if draw(st.integers(0, 4)) else _BAD_STATUS))
    if stream:
        body = draw(sse_stream())
    else:
        body = draw(
            st.one_of(st.just(_WHOLE_BODY), chunk_json().map(lambda v: json.dumps(v).encode()))
        )
    framing = draw(st.sampled_from(["chunked", "length", "close", "wrong-length"]))
    headers = [b"Content-Type: text/event-stream"]
    if framing == "chunked":
        headers.append(b"Transfer-Encoding: chunked")
        payload = draw(chunked(body))
    elif framing == "length":
        headers.append(b"Content-Length: %d" % len(body))
        payload = body
    elif framing == "wrong-length":
        length = draw(st.sampled_from([b"-5", b"abc", b"99999999", b"%d" % (len(body) + 7)]))
        headers.append(b"Content-Length: " + length)
        payload = body
    else:
        payload = body
    if draw(st.integers(0, 9)) == 0:
        headers.append(
            draw(
                st.sampled_from(
                    [b"Content-Encoding: gzip", b"Connection: close", b"X-Odd", b": empty name"]
                )
            )
        )
    wire = status + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + payload
    if draw(st.integers(0, 5)) == 0:  # truncated anywhere
        wire = wire[: draw(st.integers(0, len(wire)))]
    return wire


async def _raw_http(wire: list[bytes], chat: bool, stream: bool) -> Exchange:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            for piece in wire:
                writer.write(piece)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        return await _generate(port, chat=chat, stream=stream)
    finally:
        server.close()
        await server.wait_closed()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.booleans(), st.booleans(), st.data())
def test_openai_client_survives_hostile_http(chat: bool, stream: bool, data: st.DataObject) -> None:
    wire = data.draw(http_response(stream))
    pieces = data.draw(split(wire))
    exchange = asyncio.run(_raw_http(pieces, chat, stream))
    _check(exchange)
    if exchange.status is RequestStatus.OK:
        assert wire.startswith(b"HTTP/1.")

"""The contract suite of the gRPC and KServe v2 clients, on loopback.

Every client (caikit, TGIS, KServe v2 gRPC, KServe v2 REST) runs through the same cases: records
versus the emulator's ground truth under closed-loop load (streaming and not), a server error
status, a deadline exceeded, a server that is not there, a malformed or truncated response,
cancellation, and readiness probes. The emulator's gRPC and KServe REST front ends are started in
this process from the emulator's building blocks (engine, ground truth log, serving context);
malformed and truncated responses come from small fake servers defined here, since a correct
server never sends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp import web

from servingperf.emulator.engine import Engine
from servingperf.emulator.groundtruth import GroundTruthLog, GroundTruthRecord
from servingperf.emulator.grpc_context import ServingContext
from servingperf.emulator.grpc_server import start_grpc_server
from servingperf.emulator.http import OpenAIFrontEnd
from servingperf.emulator.kserve_v2_rest import KServeV2RestFrontEnd
from servingperf.emulator.profiles import resolve_profile
from servingperf.errors import TargetError
from servingperf.load.closed_loop import ClosedLoopUsers
from servingperf.load.phase import PhasePlan, run_phase_loop
from servingperf.load.sinks import ListSink, LoadCounters, NullProgress, PhaseOutputs
from servingperf.model.records import (
    ErrorKind,
    Exchange,
    GenerationRequest,
    RequestContext,
    RequestStatus,
)
from servingperf.model.specs import ProtocolKind
from servingperf.model.target import Target
from servingperf.protocols import caikit, kserve_v2_grpc, kserve_v2_rest, openai, tgis
from servingperf.protocols._generated import caikit_data_model_nlp_pb2 as dm
from servingperf.protocols._generated import generation_pb2 as gen
from servingperf.protocols.registry import Client
from servingperf.results.record_writer import records_to_table
from tests.support.ground_truth import compare
from tests.support.toy_tokenizer import write_toy_tokenizer

CAIKIT = ProtocolKind.CAIKIT_GRPC
TGIS = ProtocolKind.TGIS_GRPC
KSERVE_GRPC = ProtocolKind.KSERVE_V2_GRPC
KSERVE_REST = ProtocolKind.KSERVE_V2_REST
OPENAI = ProtocolKind.OPENAI_COMPLETIONS
OPENAI_CHAT = ProtocolKind.OPENAI_CHAT
HTTP_KINDS = (KSERVE_REST, OPENAI, OPENAI_CHAT)
# every client of the registry: the same cases for each wire protocol
ALL_KINDS = (CAIKIT, TGIS, KSERVE_GRPC, KSERVE_REST, OPENAI, OPENAI_CHAT)

PER_REQUEST_TOLERANCE_S = 0.250  # one request's worst case on a loaded 2-core machine (119 ms seen)
MEDIAN_TOLERANCE_S = 0.020


# --- harness ------------------------------------------------------------------------------------


@dataclass
class Emulator:
    ctx: ServingContext
    engine: Engine
    log: GroundTruthLog
    grpc_port: int
    http_port: int

    def target(self, kind: ProtocolKind, model: str = "m", **fields: Any) -> Target:
        rest = kind in HTTP_KINDS
        url = f"http://127.0.0.1:{self.http_port}" if rest else f"127.0.0.1:{self.grpc_port}"
        return Target(url=url, model=model, protocol=kind, **fields)

    def truth(self) -> dict[str, GroundTruthRecord]:
        return {record.request_id: record for record in self.log.records}


@contextlib.asynccontextmanager
async def running_emulator(
    overrides: Mapping[str, float] | None = None, ready: Callable[[], bool] | None = None
) -> AsyncIterator[Emulator]:
    engine = Engine(resolve_profile("flan-t5-small", overrides or {}))
    log = GroundTruthLog()
    ctx = ServingContext({"m": engine}, log, is_ready=ready or (lambda: True), seed=3)
    server, grpc_port = await start_grpc_server(ctx)
    openai_front = OpenAIFrontEnd({"m": engine}, ground_truth=log, load_time_s=0.0, seed=3)
    app = openai_front.build_app()
    KServeV2RestFrontEnd(ctx).add_routes(app)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=2.0)
    try:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        http_port = int(runner.addresses[0][1])
        openai_front.mark_listening()
        yield Emulator(ctx, engine, log, grpc_port, http_port)
    finally:
        await server.stop(0.5)
        await runner.cleanup()
        await engine.aclose()


def make_client(kind: ProtocolKind, target: Target, *, rest_generate: bool = False) -> Client:
    if kind is CAIKIT:
        return caikit.create(target)
    if kind is TGIS:
        return tgis.create(target)
    if kind is KSERVE_GRPC:
        return kserve_v2_grpc.create(target)
    if kind in (OPENAI, OPENAI_CHAT):
        return openai.create(target)
    if rest_generate:
        return kserve_v2_rest.KServeV2RestClient(target, unary_endpoint="generate")
    return kserve_v2_rest.create(target)


def exchange(request_id: str, *, stream: bool, max_tokens: int = 12, model: str = "m") -> Exchange:
    request = GenerationRequest(
        request_id=request_id,
        model=model,
        prompt="Summarise the plot of a short story in one line.",
        max_tokens=max_tokens,
        ignore_eos=True,
        stream=stream,
    )
    return Exchange(request=request, mono_scheduled=time.monotonic())


async def wait_until(predicate: Callable[[], object], timeout_s: float = 10.0) -> None:
    """Poll every 10 ms, at most ``timeout_s``; fail when the condition stays false."""
    for _ in range(int(timeout_s / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


def closed_port() -> int:
    """A loopback port that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- records versus ground truth -----------------------------------------------------------------


@dataclass(frozen=True)
class Mode:
    name: str
    kind: ProtocolKind
    stream: bool
    rest_generate: bool = False


MODES = (
    Mode("caikit-stream", CAIKIT, True),
    Mode("caikit-unary", CAIKIT, False),
    Mode("tgis-stream", TGIS, True),
    Mode("tgis-unary", TGIS, False),
    Mode("kserve-grpc-infer", KSERVE_GRPC, False),
    Mode("kserve-rest-stream", KSERVE_REST, True),
    Mode("kserve-rest-infer", KSERVE_REST, False),
    Mode("kserve-rest-generate", KSERVE_REST, False, rest_generate=True),
)


@pytest.mark.parametrize("mode", MODES, ids=[m.name for m in MODES])
async def test_records_match_ground_truth(mode: Mode) -> None:
    sink = ListSink()
    counters = LoadCounters(instance="m", phase="load")

    def make(user: int, sequence: int) -> tuple[GenerationRequest, RequestContext]:
        request = GenerationRequest(
            request_id=f"{mode.name}-{user}-{sequence}",
            model="m",
            prompt=f"User {user} asks question {sequence} about the weather in a city.",
            max_tokens=24,
            ignore_eos=True,
            stream=mode.stream,
        )
        context = RequestContext("m", "m", "load", 0, user, sequence, 24)
        return request, context

    async with running_emulator() as emulator:
        client = make_client(
            mode.kind, emulator.target(mode.kind), rest_generate=mode.rest_generate
        )
        try:
            await client.probe()
            t0 = time.monotonic()
            plan = PhasePlan(duration_s=1.5, ramp_up_s=0.2, request_timeout_s=30)
            users = ClosedLoopUsers.spread(16, plan.ramp_up_s, make, backoff=None)
            await run_phase_loop(
                plan, users, client, PhaseOutputs(sink, NullProgress(), counters, t0)
            )
        finally:
            await client.aclose()
        ok_ids = {r.request_id for r in sink.records if r.status == "ok"}
        await wait_until(lambda: ok_ids <= emulator.truth().keys())
        truth = emulator.truth()

    errors = [(r.error_kind, r.error_message) for r in sink.records if r.status == "error"]
    assert errors == []
    assert len(ok_ids) >= 10
    comparison = compare(records_to_table(sink.records), truth)
    assert comparison.matched == len(ok_ids)
    assert comparison.missing_on_server == []
    assert comparison.token_mismatches == []
    for record in sink.records:
        if record.status == "ok":
            assert record.output_tokens == 24
            assert record.input_tokens == truth[record.request_id].prompt_tokens
            assert record.streamed is mode.stream
            assert (record.t_first_token_s is not None) is mode.stream
    server_ok = {rid for rid, r in truth.items() if r.outcome == "ok"}
    cut_ids = {r.request_id for r in sink.records if r.status == "cut"}
    assert server_ok - ok_ids <= cut_ids  # the server finished a request only the cut left unread
    # E2E (end - sent versus the server's end - arrival): the one latency a unary call has.
    e2e_errors = [
        (r.t_end_s - r.t_sent_s) - (truth[r.request_id].end - truth[r.request_id].arrival)
        for r in sink.records
        if r.status == "ok" and r.t_end_s is not None and r.t_sent_s is not None
    ]
    assert comparison.worst(e2e_errors) <= PER_REQUEST_TOLERANCE_S
    assert comparison.median(e2e_errors) <= MEDIAN_TOLERANCE_S
    if mode.stream:
        assert comparison.worst(comparison.ttft_error_s) <= PER_REQUEST_TOLERANCE_S
        assert comparison.worst(comparison.tpot_error_s) <= PER_REQUEST_TOLERANCE_S
        assert comparison.median(comparison.ttft_error_s) <= MEDIAN_TOLERANCE_S
        assert comparison.median(comparison.tpot_error_s) <= MEDIAN_TOLERANCE_S


# --- contract cases against the emulator --------------------------------------------------------


def kind_stream_cases(kinds: tuple[ProtocolKind, ...]) -> list[Any]:
    cases = []
    for kind in kinds:
        for stream in (True, False):
            if stream and kind is KSERVE_GRPC:
                continue
            cases.append(
                pytest.param(kind, stream, id=f"{kind.value}-{'stream' if stream else 'unary'}")
            )
    return cases


@pytest.mark.parametrize(("kind", "stream"), kind_stream_cases(ALL_KINDS))
async def test_server_error_status(kind: ProtocolKind, stream: bool) -> None:
    async with running_emulator() as emulator:
        client = make_client(kind, emulator.target(kind, model="no-such-model"))
        try:
            ex = exchange("err-1", stream=stream, model="no-such-model")
            await client.generate(ex)
        finally:
            await client.aclose()
        await wait_until(lambda: "err-1" in emulator.truth())
        server = emulator.truth()["err-1"]
    assert ex.status is RequestStatus.ERROR
    assert ex.mono_sent is not None
    assert ex.mono_first_token is None
    if kind in HTTP_KINDS:
        assert ex.error_kind is ErrorKind.HTTP_STATUS
        assert ex.error_message is not None
        assert ex.error_message.startswith("HTTP 404")
        assert server.status == 404
    else:
        assert ex.error_kind is ErrorKind.GRPC_STATUS
        assert ex.error_message is not None
        assert ex.error_message.startswith("NOT_FOUND")
        assert server.status == grpc.StatusCode.NOT_FOUND.value[0]
    assert server.outcome == "rejected"


@pytest.mark.parametrize(("kind", "stream"), kind_stream_cases(ALL_KINDS))
async def test_deadline_exceeded_is_a_timeout_and_frees_the_server(
    kind: ProtocolKind, stream: bool
) -> None:
    # 40 tokens at >= 50 ms a step cannot finish within the 0.4 s deadline.
    async with running_emulator({"decode_base_s": 0.05}) as emulator:
        client = make_client(kind, emulator.target(kind, request_timeout_s=0.4))
        try:
            ex = exchange("slow-1", stream=stream, max_tokens=40)
            await client.generate(ex)
        finally:
            await client.aclose()
        await wait_until(lambda: "slow-1" in emulator.truth())
        await wait_until(lambda: emulator.engine.stats().running == 0)
        server = emulator.truth()["slow-1"]
    assert ex.status is RequestStatus.ERROR
    assert ex.error_kind is ErrorKind.TIMEOUT, ex.error_message
    assert ex.mono_end is not None
    assert ex.mono_sent is not None
    assert 0.3 <= ex.mono_end - ex.mono_sent < 5.0
    assert server.outcome == "disconnected"
    assert server.output_tokens < 40


@pytest.mark.parametrize(("kind", "stream"), kind_stream_cases(ALL_KINDS))
async def test_unavailable_server(kind: ProtocolKind, stream: bool) -> None:
    port = closed_port()
    url = f"http://127.0.0.1:{port}" if kind in HTTP_KINDS else f"127.0.0.1:{port}"
    client = make_client(kind, Target(url=url, model="m", protocol=kind, request_timeout_s=10))
    try:
        ex = exchange("down-1", stream=stream)
        await client.generate(ex)
        with pytest.raises(TargetError, match=str(port)) as raised:
            await client.probe()
    finally:
        await client.aclose()
    assert ex.status is RequestStatus.ERROR
    assert ex.error_kind is ErrorKind.CONNECT, ex.error_message
    assert "connect" in str(raised.value).lower() or "answers" in str(raised.value)


async def test_kserve_grpc_refuses_to_stream_without_sending() -> None:
    async with running_emulator() as emulator:
        client = make_client(KSERVE_GRPC, emulator.target(KSERVE_GRPC))
        try:
            ex = exchange("s-1", stream=True)
            await client.generate(ex)
        finally:
            await client.aclose()
        assert emulator.log.records == []
    assert ex.error_kind is ErrorKind.PROTOCOL
    assert ex.error_message == kserve_v2_grpc.NO_STREAMING


@pytest.mark.parametrize(("kind", "stream"), kind_stream_cases(ALL_KINDS))
async def test_cancellation_reaches_the_server(kind: ProtocolKind, stream: bool) -> None:
    async with running_emulator({"decode_base_s": 0.02}) as emulator:
        client = make_client(kind, emulator.target(kind))
        ex = exchange("cancel-1", stream=stream, max_tokens=200)
        try:
            task = asyncio.create_task(client.generate(ex))
            if stream:
                await wait_until(lambda: len(ex.chunk_tokens) >= 2)
            else:
                await wait_until(lambda: emulator.engine.stats().running == 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            await client.aclose()
        await wait_until(lambda: "cancel-1" in emulator.truth())
        await wait_until(lambda: emulator.engine.stats().running == 0)
        server = emulator.truth()["cancel-1"]
    assert ex.status is RequestStatus.PENDING  # the load engine records it as cut
    assert (ex.mono_first_token is not None) is stream
    assert server.outcome == "disconnected"
    assert server.output_tokens < 200


GRPC_AND_V2 = (CAIKIT, TGIS, KSERVE_GRPC, KSERVE_REST)  # readiness from the serving context


@pytest.mark.parametrize("kind", GRPC_AND_V2, ids=[k.value for k in GRPC_AND_V2])
async def test_probe_waits_for_readiness(kind: ProtocolKind) -> None:
    ready = False
    async with running_emulator(ready=lambda: ready) as emulator:
        client = make_client(kind, emulator.target(kind))
        try:
            with pytest.raises(TargetError):
                await client.probe()
            ready = True
            await client.probe()
        finally:
            await client.aclose()


@pytest.mark.parametrize("kind", [TGIS, KSERVE_GRPC, KSERVE_REST], ids=lambda k: k.value)
async def test_probe_names_an_unknown_model(kind: ProtocolKind) -> None:
    async with running_emulator() as emulator:
        client = make_client(kind, emulator.target(kind, model="no-such-model"))
        try:
            with pytest.raises(TargetError, match="no-such-model"):
                await client.probe()
        finally:
            await client.aclose()


# --- fake servers: what a correct server never sends --------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RawUnary = Callable[[bytes, grpc.aio.ServicerContext[Any, Any]], Awaitable[bytes]]
RawStream = Callable[[bytes, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[bytes]]

CAIKIT_UNARY = "/caikit.runtime.Nlp.NlpService/TextGenerationTaskPredict"
CAIKIT_STREAM = "/caikit.runtime.Nlp.NlpService/ServerStreamingTextGenerationTaskPredict"
TGIS_UNARY = "/fmaas.GenerationService/Generate"
TGIS_STREAM = "/fmaas.GenerationService/GenerateStream"
KSERVE_INFER = "/inference.GRPCInferenceService/ModelInfer"
GARBAGE = b"\xff\xff\xff\xff"  # not a protobuf message: field 0 is invalid


class _RawHandlers(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    def __init__(self, unary: dict[str, RawUnary], stream: dict[str, RawStream]) -> None:
        self._unary = unary
        self._stream = stream

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        method = handler_call_details.method
        if method in self._unary:
            return grpc.unary_unary_rpc_method_handler(self._unary[method])
        if method in self._stream:
            return grpc.unary_stream_rpc_method_handler(self._stream[method])
        return None


@contextlib.asynccontextmanager
async def fake_grpc(unary: dict[str, RawUnary], stream: dict[str, RawStream]) -> AsyncIterator[int]:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_RawHandlers(unary, stream),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(0.5)


def _garbage_unary(seen: list[tuple[tuple[str, str], ...]]) -> RawUnary:
    async def handler(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        seen.append(tuple((k, str(v)) for k, v in context.invocation_metadata() or ()))
        return GARBAGE

    return handler


def _stream_of(messages: list[bytes]) -> RawStream:
    async def handler(
        request: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        for message in messages:
            yield message

    return handler


UNFINISHED = {
    CAIKIT: [
        dm.GeneratedTextStreamResult(
            generated_text=" a", details=dm.TokenStreamDetails(generated_tokens=n)
        ).SerializeToString()
        for n in (1, 2)
    ],
    TGIS: [
        gen.GenerationResponse(text=" a", generated_token_count=n).SerializeToString()
        for n in (1, 2)
    ],
}


@pytest.mark.parametrize(("kind", "stream"), kind_stream_cases((CAIKIT, TGIS, KSERVE_GRPC)))
async def test_malformed_grpc_response(kind: ProtocolKind, stream: bool) -> None:
    seen: list[tuple[tuple[str, str], ...]] = []
    unary = {path: _garbage_unary(seen) for path in (CAIKIT_UNARY, TGIS_UNARY, KSERVE_INFER)}
    streams = {path: _stream_of([GARBAGE]) for path in (CAIKIT_STREAM, TGIS_STREAM)}
    async with fake_grpc(unary, streams) as port:
        target = Target(
            url=f"127.0.0.1:{port}",
            model="m",
            protocol=kind,
            token="t0ken",
            extra_headers=(("X-Tenant", "blue"),),
        )
        client = make_client(kind, target)
        try:
            ex = exchange("bad-1", stream=stream)
            await client.generate(ex)
        finally:
            await client.aclose()
    assert ex.status is RequestStatus.ERROR
    assert ex.error_kind is ErrorKind.PROTOCOL, ex.error_message
    if not stream:
        metadata = dict(seen[0])
        assert metadata["x-request-id"] == "bad-1"
        assert metadata["authorization"] == "Bearer t0ken"
        assert metadata["x-tenant"] == "blue"
        if kind is CAIKIT:
            assert metadata["mm-model-id"] == "m"


@pytest.mark.parametrize("kind", [CAIKIT, TGIS], ids=lambda k: k.value)
async def test_grpc_stream_without_a_finish_reason_is_truncated(kind: ProtocolKind) -> None:
    streams = {path: _stream_of(UNFINISHED[kind]) for path in (CAIKIT_STREAM, TGIS_STREAM)}
    async with fake_grpc({}, streams) as port:
        client = make_client(kind, Target(url=f"127.0.0.1:{port}", model="m", protocol=kind))
        try:
            ex = exchange("trunc-1", stream=True)
            await client.generate(ex)
        finally:
            await client.aclose()
    assert ex.error_kind is ErrorKind.PROTOCOL
    assert ex.error_message == "the stream ended without a finish reason"
    assert ex.chunk_tokens == [1, 1]  # what arrived is kept


def _tgis(text: str, count: int, stop: Any = 0) -> bytes:
    return gen.GenerationResponse(
        text=text, generated_token_count=count, stop_reason=stop
    ).SerializeToString()


def _caikit(text: str, count: int, finish: Any = 0) -> bytes:
    details = dm.TokenStreamDetails(generated_tokens=count, finish_reason=finish)
    return dm.GeneratedTextStreamResult(generated_text=text, details=details).SerializeToString()


# A multi-byte character over two tokens, the first message without text (held back), then a
# final message whose end-of-sequence token has no text: the server's counts say 4 tokens.
HELD_BACK = {
    TGIS: [_tgis("", 1), _tgis("日本", 2), _tgis(" ok", 3), _tgis("", 4, gen.EOS_TOKEN)],
    CAIKIT: [
        _caikit("", 1),
        _caikit("日本", 2),
        _caikit(" ok", 3),
        _caikit("", 4, dm.FinishReason.EOS_TOKEN),
    ],
}
# A server that sends text without counts: the target's tokenizer counts each message.
UNCOUNTED = {
    TGIS: [_tgis(" the model", 0), _tgis(" serves a", 0), _tgis(" token", 0, gen.MAX_TOKENS)],
    CAIKIT: [
        _caikit(" the model", 0),
        _caikit(" serves a", 0),
        _caikit(" token", 0, dm.FinishReason.MAX_TOKENS),
    ],
}


@pytest.mark.parametrize("kind", [CAIKIT, TGIS], ids=lambda k: k.value)
async def test_grpc_streams_follow_the_chunk_counting_rule(
    kind: ProtocolKind, tmp_path: Path
) -> None:
    """The counting rule of every protocol (servingperf.protocols.chunk_tokens): server counts
    first, tokens of text-less messages carried by the next text, else the tokenizer."""
    streams = {path: _stream_of(HELD_BACK[kind]) for path in (CAIKIT_STREAM, TGIS_STREAM)}
    async with fake_grpc({}, streams) as port:
        client = make_client(kind, Target(url=f"127.0.0.1:{port}", model="m", protocol=kind))
        try:
            held = exchange("held-1", stream=True)
            await client.generate(held)
        finally:
            await client.aclose()
    assert held.status is RequestStatus.OK, held.error_message
    assert held.chunk_tokens == [2, 1]  # "日本" carries its held-back token
    assert held.tokens_without_text == 1
    assert held.streamed_tokens == held.usage_output_tokens == 4
    tokenizer = str(write_toy_tokenizer(tmp_path))
    streams = {path: _stream_of(UNCOUNTED[kind]) for path in (CAIKIT_STREAM, TGIS_STREAM)}
    async with fake_grpc({}, streams) as port:
        target = Target(url=f"127.0.0.1:{port}", model="m", protocol=kind, tokenizer=tokenizer)
        client = make_client(kind, target)
        try:
            counted = exchange("uncounted-1", stream=True)
            await client.generate(counted)
        finally:
            await client.aclose()
    assert counted.status is RequestStatus.OK, counted.error_message
    assert counted.chunk_tokens == [2, 2, 1]
    assert counted.chunk_source is not None and counted.chunk_source.value == "tokenizer"
    assert counted.usage_output_tokens is None  # N comes from the stream


def _exhausted(details: str) -> RawStream:
    async def handler(
        request: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, details)
        yield b""  # type: ignore[unreachable]  # makes this an async generator

    return handler


@pytest.mark.parametrize(
    ("details", "expected"),
    [
        ("too many requests", ErrorKind.RATE_LIMITED),
        ("larger than max (9 vs. 4)", ErrorKind.GRPC_STATUS),
    ],
    ids=["shed-load", "message-size"],
)
async def test_resource_exhausted_is_rate_limited_unless_a_size_limit(
    details: str, expected: ErrorKind
) -> None:
    streams = {TGIS_STREAM: _exhausted(details)}
    async with fake_grpc({}, streams) as port:
        client = make_client(TGIS, Target(url=f"127.0.0.1:{port}", model="m", protocol=TGIS))
        try:
            ex = exchange("busy-1", stream=True)
            await client.generate(ex)
        finally:
            await client.aclose()
    assert ex.error_kind is expected, ex.error_message
    assert (ex.error_message or "").startswith("RESOURCE_EXHAUSTED")


@contextlib.asynccontextmanager
async def fake_http(
    routes: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]],
) -> AsyncIterator[str]:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_post(path, handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def _not_json(request: web.Request) -> web.Response:
    return web.Response(body=b"<html>oops</html>", content_type="application/json")


async def _no_counts(request: web.Request) -> web.Response:
    return web.json_response({"model_name": "m", "text_output": " a b c"})


async def _bad_event(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b'data: {"text_output": " a", "num_output_tokens": 1}\n\n')
    await response.write(b"data: {oops\n\n")
    await response.write_eof()
    return response


async def _empty_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write_eof()
    return response


async def _cut_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    response.content_length = 10_000  # promises more than it sends
    await response.prepare(request)
    await response.write(b'data: {"text_output": " a", "num_output_tokens": 1}\n\n')
    assert request.transport is not None
    request.transport.close()
    return response


@pytest.mark.parametrize(
    ("route", "handler", "stream", "rest_generate", "expected"),
    [
        ("infer", _not_json, False, False, "malformed response"),
        ("generate", _no_counts, False, True, "no num_output_tokens"),
        ("generate_stream", _bad_event, True, False, "event is not JSON"),
        ("generate_stream", _cut_stream, True, False, ""),
        ("generate_stream", _empty_stream, True, False, "empty response"),
    ],
    ids=[
        "infer-not-json",
        "generate-without-counts",
        "stream-bad-event",
        "stream-cut",
        "stream-empty",
    ],
)
async def test_malformed_or_truncated_rest_response(
    route: str,
    handler: Handler,
    stream: bool,
    rest_generate: bool,
    expected: str,
) -> None:
    async with fake_http({f"/v2/models/m/{route}": handler}) as url:
        target = Target(url=url, model="m", protocol=KSERVE_REST, request_timeout_s=10)
        client = make_client(KSERVE_REST, target, rest_generate=rest_generate)
        try:
            ex = exchange("bad-rest", stream=stream)
            await client.generate(ex)
        finally:
            await client.aclose()
    assert ex.status is RequestStatus.ERROR
    assert ex.error_kind is ErrorKind.PROTOCOL, ex.error_message
    assert expected in (ex.error_message or "")
    if stream and handler is not _empty_stream:
        assert ex.chunk_tokens == [1]


def test_raw_bytes_helper_is_what_the_fake_sends() -> None:
    # Guard for the fakes above: GARBAGE really is not parseable as any of the messages.
    for message_type in (dm.GeneratedTextResult, gen.BatchedGenerationResponse):
        with pytest.raises(Exception, match=r"(?i)error|truncated|invalid"):
            message_type.FromString(GARBAGE)
    assert struct.unpack("<I", GARBAGE)[0] == 0xFFFFFFFF

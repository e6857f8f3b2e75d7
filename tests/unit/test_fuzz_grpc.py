"""Property-based fuzzing of the gRPC and KServe v2 response handling (bounded budget).

- TGIS and caikit streams: ``grpc_common.consume_stream`` with each protocol's message reader,
  fed messages built from arbitrary field values or parsed from arbitrary bytes (grpc.aio yields
  None for bytes it cannot parse), and optionally a status error mid-stream. A request must end
  ok or failed with a kind; it may only succeed after a finish reason.
- KServe v2 tensors: decoding ``ModelInferResponse`` messages, raw tensor bytes and JSON bodies
  raises nothing but ``TensorError``.
- The KServe v2 REST client, over a real loopback socket, reads any SSE stream safely.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from aiohttp import web
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from servingperf.model.records import ErrorKind, Exchange, GenerationRequest, RequestStatus
from servingperf.model.specs import ProtocolKind
from servingperf.model.target import Target
from servingperf.protocols import caikit, kserve_v2_tensors, tgis
from servingperf.protocols._generated import caikit_data_model_nlp_pb2, generation_pb2
from servingperf.protocols._generated import grpc_predict_v2_pb2 as pb
from servingperf.protocols.grpc_common import Progress, consume_stream
from servingperf.protocols.kserve_v2_rest import KServeV2RestClient
from servingperf.protocols.kserve_v2_tensors import TensorError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_u32 = st.integers(0, 2**32 - 1)
# Stop / finish reasons the clients know (NOT_FINISHED .. ERROR); unknown ones: tests below.
_enum = st.integers(0, 7)
_STOP = generation_pb2.StopReason
_FINISH = caikit_data_model_nlp_pb2.FinishReason


class _Call:
    """What ``consume_stream`` uses of a grpc.aio stream: async iteration, done(), cancel()."""

    def __init__(self, messages: list[Any], error: grpc.aio.AioRpcError | None) -> None:
        self._messages = messages
        self._error = error
        self._done = False
        self.cancelled = False

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        for message in self._messages:
            yield message
        if self._error is not None:
            self._done = True
            raise self._error
        self._done = True

    def done(self) -> bool:
        return self._done

    def cancel(self) -> bool:
        self.cancelled = True
        return True


_codes = st.sampled_from(
    [
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNKNOWN,
    ]
)
_errors = st.one_of(
    st.none(),
    st.builds(
        lambda code, details: grpc.aio.AioRpcError(
            code, grpc.aio.Metadata(), grpc.aio.Metadata(), details
        ),
        _codes,
        st.one_of(st.none(), st.text(max_size=30), st.just("failed to connect to all addresses")),
    ),
)


def _parsed(cls: Any, raw: bytes) -> Any:
    """The message grpc.aio would yield for ``raw``: parsed, or None when it cannot be; an
    unknown stop / finish reason is reset (see the xfail tests below)."""
    try:
        message = cls.FromString(raw)
    except DecodeError:
        return None
    if hasattr(message, "stop_reason") and message.stop_reason not in _STOP.values():
        message.stop_reason = 0
    details = getattr(message, "details", None)
    if details is not None and details.finish_reason not in _FINISH.values():
        details.finish_reason = 0
    return message


tgis_messages = st.one_of(
    st.builds(
        generation_pb2.GenerationResponse,
        input_token_count=_u32,
        generated_token_count=_u32,
        text=st.text(max_size=8),
        stop_reason=_enum,
    ),
    st.binary(max_size=40).map(lambda raw: _parsed(generation_pb2.GenerationResponse, raw)),
)


def _caikit_message(text: str, details: dict[str, int] | None) -> Any:
    message = caikit_data_model_nlp_pb2.GeneratedTextStreamResult(generated_text=text)
    if details is not None:
        message.details.generated_tokens = details["generated"]
        message.details.input_token_count = details["input"]
        message.details.finish_reason = details["finish"]  # type: ignore[assignment]
    return message


caikit_messages = st.one_of(
    st.builds(
        _caikit_message,
        st.text(max_size=8),
        st.one_of(
            st.none(),
            st.fixed_dictionaries({"generated": _u32, "input": _u32, "finish": _enum}),
        ),
    ),
    st.binary(max_size=40).map(
        lambda raw: _parsed(caikit_data_model_nlp_pb2.GeneratedTextStreamResult, raw)
    ),
)


def _run_stream(messages: list[Any], error: Any, read: Callable[[Any], Progress]) -> Exchange:
    exchange = Exchange(GenerationRequest("r", "m", "p", 8), time.monotonic(), time.monotonic())
    call = _Call(messages, error)
    asyncio.run(consume_stream(exchange, call, read))  # type: ignore[arg-type]
    return exchange


def _check(exchange: Exchange) -> None:
    event(f"{exchange.status.value} {exchange.error_kind or ''}")
    assert exchange.status in (RequestStatus.OK, RequestStatus.ERROR)
    if exchange.status is RequestStatus.ERROR:
        assert exchange.error_kind in (
            ErrorKind.PROTOCOL,
            ErrorKind.GRPC_STATUS,
            ErrorKind.RATE_LIMITED,
            ErrorKind.TIMEOUT,
            ErrorKind.CONNECT,
        )
        assert exchange.error_message
    else:
        assert exchange.finish_reason
    assert all(t >= 1 for t in exchange.chunk_tokens)
    assert exchange.chunk_monos == sorted(exchange.chunk_monos)


@FUZZ
@given(st.lists(tgis_messages, max_size=8), _errors)
def test_tgis_stream_handling_never_raises(messages: list[Any], error: Any) -> None:
    exchange = _run_stream(messages, error, tgis.read_response)
    _check(exchange)
    read = messages[: messages.index(None)] if None in messages else messages  # stops there
    counts = [m.generated_token_count for m in read]
    if exchange.usage_output_tokens is not None:  # the server's count, when it gave one
        assert exchange.usage_output_tokens == max(counts)
        assert sum(exchange.chunk_tokens) <= exchange.usage_output_tokens


@FUZZ
@given(st.lists(caikit_messages, max_size=8), _errors)
def test_caikit_stream_handling_never_raises(messages: list[Any], error: Any) -> None:
    _check(_run_stream(messages, error, caikit.read_stream_message))


def test_tgis_unknown_stop_reason() -> None:
    """A stop reason this build does not know (a newer server) is kept by number, not fatal."""
    message = generation_pb2.GenerationResponse(generated_token_count=1, text="x", stop_reason=99)
    exchange = _run_stream([message], None, tgis.read_response)
    assert exchange.status is RequestStatus.OK
    assert exchange.finish_reason == "UNKNOWN_99"


def test_caikit_unknown_finish_reason() -> None:
    message = _caikit_message("x", {"generated": 1, "input": 1, "finish": 99})
    exchange = _run_stream([message], None, caikit.read_stream_message)
    assert exchange.status is RequestStatus.OK
    assert exchange.finish_reason == "UNKNOWN_99"


# --- KServe v2 tensors -------------------------------------------------------------------------

_datatypes = st.sampled_from(
    ["BYTES", "BOOL", "INT32", "INT64", "UINT32", "FP32", "FP64", "UINT8", "BF16", "", "X"]
)


def _output(name: str, datatype: str, raw_values: list[Any]) -> Any:
    output = pb.ModelInferResponse.InferOutputTensor(name=name, datatype=datatype)
    if datatype == "BYTES":
        output.contents.bytes_contents.extend(
            v if isinstance(v, bytes) else str(v).encode() for v in raw_values
        )
    elif datatype == "BOOL":
        output.contents.bool_contents.extend(bool(v) for v in raw_values)
    elif datatype in ("INT32", "INT64", "UINT32"):
        output.contents.int_contents.extend(
            v for v in raw_values if isinstance(v, int) and -(2**31) <= v < 2**31
        )
    return output


@st.composite
def infer_responses(draw: st.DrawFn) -> Any:
    names = (
        [*kserve_v2_tensors.OUTPUT_NAMES, "other"]
        if hasattr(kserve_v2_tensors, "OUTPUT_NAMES")
        else [
            kserve_v2_tensors.TEXT_OUTPUT,
            kserve_v2_tensors.NUM_OUTPUT_TOKENS,
            kserve_v2_tensors.NUM_INPUT_TOKENS,
            kserve_v2_tensors.FINISH_REASON,
            "other",
        ]
    )
    outputs = draw(
        st.lists(
            st.builds(
                _output,
                st.sampled_from(names),
                _datatypes,
                st.lists(
                    st.one_of(st.integers(-5, 300), st.binary(max_size=6), st.text(max_size=5))
                ),
            ),
            max_size=5,
        )
    )
    response = pb.ModelInferResponse(model_name="m", outputs=outputs)
    if draw(st.booleans()):
        count = draw(st.sampled_from([len(outputs), len(outputs), len(outputs) + 1]))
        response.raw_output_contents.extend(
            draw(st.lists(st.binary(max_size=24), min_size=count, max_size=count))
        )
    return response


def _only_tensor_errors(fn: Callable[[], Any]) -> Any:
    try:
        result = fn()
    except TensorError as exc:
        result = exc
    event(type(result).__name__)
    if isinstance(result, TensorError):
        assert str(result)  # a message that says what is wrong
        return None
    return result


@FUZZ
@given(infer_responses())
def test_infer_response_decoding_raises_only_tensor_errors(response: Any) -> None:
    outputs = _only_tensor_errors(lambda: kserve_v2_tensors.pb_outputs(response))
    if outputs is not None:
        _only_tensor_errors(lambda: kserve_v2_tensors.generation_from_tensors(outputs))


@FUZZ
@given(_datatypes, st.binary(max_size=64))
def test_raw_tensor_decoding_raises_only_tensor_errors(datatype: str, data: bytes) -> None:
    _only_tensor_errors(lambda: kserve_v2_tensors.decode_raw(datatype, data))


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**20) | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=15,
)
_outputs_json = st.fixed_dictionaries(
    {
        "outputs": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "name": st.one_of(
                        st.sampled_from(
                            [
                                kserve_v2_tensors.TEXT_OUTPUT,
                                kserve_v2_tensors.NUM_OUTPUT_TOKENS,
                                kserve_v2_tensors.FINISH_REASON,
                            ]
                        ),
                        _json,
                    ),
                    "data": _json,
                    "datatype": _datatypes,
                },
            ),
            max_size=4,
        )
    }
)


@FUZZ
@given(st.one_of(_json, _outputs_json))
def test_json_body_decoding_raises_only_tensor_errors(body: Any) -> None:
    outputs = _only_tensor_errors(lambda: kserve_v2_tensors.json_outputs(body))
    if outputs is not None:
        _only_tensor_errors(lambda: kserve_v2_tensors.generation_from_tensors(outputs))
    _only_tensor_errors(lambda: kserve_v2_tensors.generation_from_json(body))


# --- the KServe v2 REST client over a real socket -----------------------------------------------

_event = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "text_output": st.one_of(st.text(max_size=6), st.integers(), st.none()),
            "num_output_tokens": st.one_of(st.integers(-2, 20), st.floats(), st.text(max_size=3)),
            "num_input_tokens": st.integers(-2, 20),
            "finish_reason": st.one_of(
                st.sampled_from(["length", "stop"]), st.none(), st.integers()
            ),
            "details": st.dictionaries(st.just("finish_reason"), _json, max_size=1),
        },
    ).map(json.dumps),
    st.just('{"error": "boom"}'),
    st.text(max_size=20),
)


async def _kserve_stream(events: list[str], raw_tail: bytes) -> Exchange:
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for item in events:
            await response.write(b"data: " + item.encode("utf-8", "surrogatepass") + b"\n\n")
        if raw_tail:
            await response.write(raw_tail)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v2/models/m/generate_stream", handler)
    app.router.add_post("/v2/models/m/generate", handler)
    app.router.add_post("/v2/models/m/infer", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    target = Target(
        url=f"http://127.0.0.1:{runner.addresses[0][1]}",
        model="m",
        protocol=ProtocolKind.KSERVE_V2_REST,
        request_timeout_s=10,
    )
    client = KServeV2RestClient(target)
    exchange = Exchange(GenerationRequest("r", "m", "p", 8, stream=True), time.monotonic())
    try:
        await asyncio.wait_for(client.generate(exchange), 10)
    finally:
        await client.aclose()
        await runner.cleanup()
    return exchange


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_event, max_size=6), st.one_of(st.just(b""), st.binary(max_size=12)))
def test_kserve_rest_stream_over_a_real_socket(events: list[str], raw_tail: bytes) -> None:
    exchange = asyncio.run(_kserve_stream(events, raw_tail))
    event(f"{exchange.status.value} {exchange.error_kind or ''}")
    assert exchange.status in (RequestStatus.OK, RequestStatus.ERROR)
    if exchange.status is RequestStatus.ERROR:
        assert exchange.error_kind in (ErrorKind.PROTOCOL, ErrorKind.HTTP_STATUS)
        assert exchange.error_message
    assert all(t >= 1 for t in exchange.chunk_tokens)

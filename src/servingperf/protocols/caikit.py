"""caikit-nlp runtime gRPC client: ``caikit.runtime.Nlp.NlpService``.

Unary requests call ``TextGenerationTaskPredict`` (one ``GeneratedTextResult``), streaming ones
``ServerStreamingTextGenerationTaskPredict`` (``GeneratedTextStreamResult`` messages whose
``details.generated_tokens`` is the cumulative count and whose last ``details.finish_reason`` is
set). The model is named by the ``mm-model-id`` metadata header, as caikit routes it; the request
id travels as ``x-request-id``. Output length: ``max_new_tokens`` and ``min_new_tokens``; caikit
has no ``ignore_eos``, so a request that ignores EOS asks for ``min_new_tokens = max_new_tokens``.
The readiness probe is the standard gRPC health check (``grpc.health.v1.Health/Check``), which the
caikit runtime serves; a server without it (UNIMPLEMENTED) still counts as answering.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, cast

import grpc

from servingperf.errors import TargetError
from servingperf.model.records import Exchange, GenerationRequest
from servingperf.model.target import Target
from servingperf.protocols._generated import (
    caikit_data_model_nlp_pb2,
    caikit_runtime_Nlp_pb2,
    caikit_runtime_Nlp_pb2_grpc,
)
from servingperf.protocols.grpc_common import (
    GrpcClient,
    Progress,
    await_unary,
    call_metadata,
    consume_stream,
    enum_name,
    probe_failure,
    probe_timeout_s,
)

if TYPE_CHECKING:
    from servingperf.protocols._generated.caikit_runtime_Nlp_pb2_grpc import NlpServiceAsyncStub

MODEL_HEADER = "mm-model-id"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
_SERVING = 1  # grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING

FinishReason = caikit_data_model_nlp_pb2.FinishReason


def prompt_text(request: GenerationRequest) -> str:
    if request.system_prompt:
        return f"{request.system_prompt}\n\n{request.prompt}"
    return request.prompt


def length_limits(request: GenerationRequest) -> tuple[int | None, int | None]:
    """``(max_new_tokens, min_new_tokens)`` for a request (see the module docstring)."""
    minimum = request.min_tokens
    if request.ignore_eos and request.max_tokens is not None and minimum is None:
        minimum = request.max_tokens
    return request.max_tokens, minimum


def health_status(raw: bytes) -> int:
    """The ``status`` (field 1, varint) of a serialized ``HealthCheckResponse``; 0 if absent.

    Decoded by hand so that we need not register grpc.health.v1 in the protobuf pool (grpcio's
    health package, if a program also imports it, registers the same names).
    """
    if len(raw) >= 2 and raw[0] == 0x08:  # field 1, wire type varint; statuses are < 128
        return raw[1] & 0x7F
    return 0


def read_stream_message(message: caikit_data_model_nlp_pb2.GeneratedTextStreamResult) -> Progress:
    details = message.details
    has_details = message.HasField("details")
    finish = details.finish_reason if has_details else FinishReason.NOT_FINISHED
    return Progress(
        generated_total=details.generated_tokens if has_details else 0,
        text=message.generated_text,
        input_tokens=details.input_token_count if has_details else 0,
        finish_reason=None
        if finish == FinishReason.NOT_FINISHED
        else enum_name(FinishReason, finish),
    )


class CaikitClient(GrpcClient):
    """One client per model instance: one channel, shared by all users of the instance."""

    def __init__(self, target: Target) -> None:
        super().__init__(target, ((MODEL_HEADER, target.model),))

    @staticmethod
    def _stub(channel: grpc.aio.Channel) -> NlpServiceAsyncStub:
        return cast("NlpServiceAsyncStub", caikit_runtime_Nlp_pb2_grpc.NlpServiceStub(channel))

    async def probe(self) -> None:
        channel = await self._channels.get()
        # No (de)serializers: the request and response stay raw bytes.
        check = channel.unary_unary(
            HEALTH_CHECK, request_serializer=None, response_deserializer=None
        )
        try:
            raw = await check(b"", metadata=self._metadata, timeout=probe_timeout_s(self._target))
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.UNIMPLEMENTED:
                return  # a gRPC server answered; it just has no health service
            raise probe_failure(self._address, exc, "health check") from exc
        status = health_status(bytes(raw))
        if status != _SERVING:
            raise TargetError(f"{self._address}: health check says not serving (status {status})")

    async def generate(self, exchange: Exchange) -> None:
        request = exchange.request
        max_new, min_new = length_limits(request)
        metadata = call_metadata(self._metadata, request.request_id)
        channel = await self._channels.for_call(exchange)
        if channel is None:
            return
        stub = self._stub(channel)
        if request.stream:
            stream_request = caikit_runtime_Nlp_pb2.ServerStreamingTextGenerationTaskRequest(
                text=prompt_text(request), max_new_tokens=max_new, min_new_tokens=min_new
            )
            exchange.mono_sent = time.monotonic()
            call = stub.ServerStreamingTextGenerationTaskPredict(
                stream_request, metadata=metadata, timeout=self._timeout_s
            )
            await consume_stream(exchange, call, read_stream_message, self._counter)
            return
        unary_request = caikit_runtime_Nlp_pb2.TextGenerationTaskRequest(
            text=prompt_text(request), max_new_tokens=max_new, min_new_tokens=min_new
        )
        exchange.mono_sent = time.monotonic()
        result = await await_unary(
            exchange,
            stub.TextGenerationTaskPredict(
                unary_request, metadata=metadata, timeout=self._timeout_s
            ),
        )
        if result is None:
            return
        now = time.monotonic()
        exchange.usage_output_tokens = result.generated_tokens
        if result.input_token_count > 0:
            exchange.usage_input_tokens = result.input_token_count
        exchange.finish_reason = enum_name(FinishReason, result.finish_reason)
        exchange.succeed(now)


def create(target: Target) -> CaikitClient:
    return CaikitClient(target)

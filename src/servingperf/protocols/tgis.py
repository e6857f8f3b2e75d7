"""TGIS gRPC client: ``fmaas.GenerationService`` of IBM text-generation-inference.

Unary requests call ``Generate`` with a batch of one (``BatchedGenerationRequest``); streaming ones
``GenerateStream``, whose messages carry the cumulative ``generated_token_count``, the delta
``text``, the ``input_token_count`` (TGIS sends it in the first message) and, in the last one, a
``stop_reason`` other than ``NOT_FINISHED``. The model is the request's ``model_id`` field; the
request id travels as ``x-request-id`` metadata. Output length: ``stopping.max_new_tokens`` and
``min_new_tokens`` (TGIS has no ``ignore_eos``: a request that ignores EOS asks for
``min_new_tokens = max_new_tokens``). Finish reasons are TGIS's ``StopReason`` names
(``MAX_TOKENS``, ``EOS_TOKEN``...). The readiness probe is ``ModelInfo`` for the target's model.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, cast

import grpc

from servingperf.model.records import ErrorKind, Exchange, GenerationRequest
from servingperf.model.target import Target
from servingperf.protocols._generated import generation_pb2, generation_pb2_grpc
from servingperf.protocols.grpc_common import (
    GrpcClient,
    Progress,
    await_probe,
    await_unary,
    call_metadata,
    consume_stream,
    enum_name,
    probe_timeout_s,
)

if TYPE_CHECKING:
    from servingperf.protocols._generated.generation_pb2_grpc import GenerationServiceAsyncStub

StopReason = generation_pb2.StopReason


def parameters(request: GenerationRequest) -> generation_pb2.Parameters:
    """Greedy decoding with the request's length limits (see the module docstring)."""
    minimum = request.min_tokens
    if request.ignore_eos and request.max_tokens is not None and minimum is None:
        minimum = request.max_tokens
    stopping = generation_pb2.StoppingCriteria(
        max_new_tokens=request.max_tokens or 0, min_new_tokens=minimum or 0
    )
    return generation_pb2.Parameters(method=generation_pb2.GREEDY, stopping=stopping)


def prompt_text(request: GenerationRequest) -> str:
    if request.system_prompt:
        return f"{request.system_prompt}\n\n{request.prompt}"
    return request.prompt


def read_response(message: generation_pb2.GenerationResponse) -> Progress:
    stop = message.stop_reason
    return Progress(
        generated_total=message.generated_token_count,
        text=message.text,
        input_tokens=message.input_token_count,
        finish_reason=None if stop == StopReason.NOT_FINISHED else enum_name(StopReason, stop),
    )


class TgisClient(GrpcClient):
    """One client per model instance: one channel, shared by all users of the instance."""

    @staticmethod
    def _stub(channel: grpc.aio.Channel) -> GenerationServiceAsyncStub:
        return cast(
            "GenerationServiceAsyncStub", generation_pb2_grpc.GenerationServiceStub(channel)
        )

    async def probe(self) -> None:
        stub = self._stub(await self._channels.get())
        await await_probe(
            stub.ModelInfo(
                generation_pb2.ModelInfoRequest(model_id=self._target.model),
                metadata=self._metadata,
                timeout=probe_timeout_s(self._target),
            ),
            self._address,
            f"ModelInfo for model {self._target.model!r}",
        )

    async def generate(self, exchange: Exchange) -> None:
        request = exchange.request
        metadata = call_metadata(self._metadata, request.request_id)
        text = generation_pb2.GenerationRequest(text=prompt_text(request))
        params = parameters(request)
        channel = await self._channels.for_call(exchange)
        if channel is None:
            return
        stub = self._stub(channel)
        if request.stream:
            single = generation_pb2.SingleGenerationRequest(
                model_id=self._target.model, request=text, params=params
            )
            exchange.mono_sent = time.monotonic()
            call = stub.GenerateStream(single, metadata=metadata, timeout=self._timeout_s)
            await consume_stream(exchange, call, read_response, self._counter)
            return
        batch = generation_pb2.BatchedGenerationRequest(
            model_id=self._target.model, requests=[text], params=params
        )
        exchange.mono_sent = time.monotonic()
        reply = await await_unary(
            exchange, stub.Generate(batch, metadata=metadata, timeout=self._timeout_s)
        )
        if reply is None:
            return
        now = time.monotonic()
        if len(reply.responses) != 1:
            exchange.fail(
                now,
                ErrorKind.PROTOCOL,
                f"Generate answered {len(reply.responses)} responses to a batch of one",
            )
            return
        response = reply.responses[0]
        exchange.usage_output_tokens = response.generated_token_count
        if response.input_token_count > 0:
            exchange.usage_input_tokens = response.input_token_count
        exchange.finish_reason = enum_name(StopReason, response.stop_reason)
        exchange.succeed(now)


def create(target: Target) -> TgisClient:
    return TgisClient(target)

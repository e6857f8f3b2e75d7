"""KServe v2 (Open Inference Protocol) gRPC client: ``inference.GRPCInferenceService``.

Every request is one ``ModelInfer`` call: the protocol has no server streaming (Triton's
``ModelStreamInfer`` is not part of it), so a request that asks to stream fails at once, without
being sent, with a PROTOCOL error that says so (scenarios should not combine the two). Tensor
conventions (inputs ``text_input``..., outputs ``text_output``, ``num_output_tokens``...) are in
:mod:`servingperf.protocols.kserve_v2_tensors`; the response must carry ``num_output_tokens``, or
the request fails as PROTOCOL. The request id travels as ``x-request-id`` metadata and as the
request's ``id``. The probe calls ``ServerLive`` and ``ModelReady`` for the target's model.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, cast

import grpc

from servingperf.errors import TargetError
from servingperf.model.records import ErrorKind, Exchange
from servingperf.model.target import Target
from servingperf.protocols._generated import grpc_predict_v2_pb2 as pb
from servingperf.protocols._generated import grpc_predict_v2_pb2_grpc
from servingperf.protocols.grpc_common import (
    GrpcClient,
    await_probe,
    await_unary,
    call_metadata,
    probe_timeout_s,
)
from servingperf.protocols.kserve_v2_tensors import (
    TensorError,
    generation_from_tensors,
    infer_request_pb,
    pb_outputs,
)

if TYPE_CHECKING:
    from servingperf.protocols._generated.grpc_predict_v2_pb2_grpc import (
        GRPCInferenceServiceAsyncStub,
    )

NO_STREAMING = "kserve-v2-grpc cannot stream (ModelInfer is unary): run it with streaming off"


class KServeV2GrpcClient(GrpcClient):
    """One client per model instance: one channel, shared by all users of the instance."""

    @staticmethod
    def _stub(channel: grpc.aio.Channel) -> GRPCInferenceServiceAsyncStub:
        return cast(
            "GRPCInferenceServiceAsyncStub",
            grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel),
        )

    async def probe(self) -> None:
        stub = self._stub(await self._channels.get())
        timeout = probe_timeout_s(self._target)
        model = self._target.model
        live = await await_probe(
            stub.ServerLive(pb.ServerLiveRequest(), metadata=self._metadata, timeout=timeout),
            self._address,
            "ServerLive",
        )
        if not live.live:
            raise TargetError(f"{self._address}: ServerLive says the server is not live")
        ready = await await_probe(
            stub.ModelReady(
                pb.ModelReadyRequest(name=model), metadata=self._metadata, timeout=timeout
            ),
            self._address,
            f"ModelReady for model {model!r}",
        )
        if not ready.ready:
            raise TargetError(f"{self._address}: model {model!r} is not ready")

    async def generate(self, exchange: Exchange) -> None:
        request = exchange.request
        if request.stream:
            exchange.fail(time.monotonic(), ErrorKind.PROTOCOL, NO_STREAMING)
            return
        message = infer_request_pb(request, self._target.model)
        metadata = call_metadata(self._metadata, request.request_id)
        channel = await self._channels.for_call(exchange)
        if channel is None:
            return
        stub = self._stub(channel)
        exchange.mono_sent = time.monotonic()
        response = await await_unary(
            exchange, stub.ModelInfer(message, metadata=metadata, timeout=self._timeout_s)
        )
        if response is None:
            return
        now = time.monotonic()
        try:
            result = generation_from_tensors(pb_outputs(response))
        except TensorError as exc:
            exchange.fail(now, ErrorKind.PROTOCOL, f"malformed response: {exc}")
            return
        if result.output_tokens is None:
            exchange.fail(
                now, ErrorKind.PROTOCOL, "the response carries no num_output_tokens (N unknown)"
            )
            return
        exchange.usage_output_tokens = result.output_tokens
        if result.input_tokens is not None:
            exchange.usage_input_tokens = result.input_tokens
        exchange.finish_reason = result.finish_reason
        exchange.succeed(now)


def create(target: Target) -> KServeV2GrpcClient:
    return KServeV2GrpcClient(target)

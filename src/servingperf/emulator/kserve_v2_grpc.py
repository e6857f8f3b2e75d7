"""The emulator's KServe v2 gRPC front end: ``inference.GRPCInferenceService``.

``ServerLive`` is always true once serving; ``ServerReady`` and ``ModelReady`` turn true when the
load time has passed; ``ModelReady``/``ModelMetadata`` answer NOT_FOUND for a model not served.
``ModelInfer`` runs one unary generation (tensor conventions in
:mod:`servingperf.emulator.kserve_v2_format`); a malformed request is INVALID_ARGUMENT. The request
id is the ``x-request-id`` metadata, else the request's ``id``.
"""

from __future__ import annotations

import grpc

from servingperf.emulator.grpc_calls import Context, refuse, request_id, run_unary
from servingperf.emulator.grpc_context import ServingContext
from servingperf.emulator.kserve_v2_format import (
    BadRequest,
    GenerationAnswer,
    infer_response_pb,
    model_metadata_pb,
    parse_infer_pb,
)
from servingperf.emulator.lengths import OutputPlan
from servingperf.emulator.tokenizer import count_tokens, generated_text
from servingperf.protocols._generated import grpc_predict_v2_pb2 as pb
from servingperf.protocols._generated import grpc_predict_v2_pb2_grpc as pb_grpc

SERVICE = "inference.GRPCInferenceService"


class KServeV2InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, ctx: ServingContext) -> None:
        self._ctx = ctx

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: Context
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: Context
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._ctx.is_ready())

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Context
    ) -> pb.ModelReadyResponse:
        await self._known(request.name, context)
        return pb.ModelReadyResponse(ready=self._ctx.is_ready())

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="servingperf-emulator", version="1")

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        await self._known(request.name, context)
        return model_metadata_pb(request.name)

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Context
    ) -> pb.ModelInferResponse:
        endpoint = f"/{SERVICE}/ModelInfer"
        rid = request_id(context) or request.id or None
        try:
            ask = parse_infer_pb(request)
        except BadRequest as exc:
            record = self._ctx.new_record(rid, endpoint, streamed=False)
            record.model = request.model_name
            try:
                await refuse(context, record, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            finally:
                record.end = self._ctx.clock()
                self._ctx.ground_truth.add(record)
            raise AssertionError("abort returned") from exc  # pragma: no cover
        prompt_tokens = count_tokens(ask.text)
        model = request.model_name
        answer_id = rid or ""

        def respond(plan: OutputPlan) -> pb.ModelInferResponse:
            answer = GenerationAnswer(
                text=generated_text(plan.tokens),
                output_tokens=plan.tokens,
                input_tokens=prompt_tokens,
                finish_reason=plan.finish_reason,
            )
            return infer_response_pb(model, answer_id, ask, answer)

        return await run_unary(
            self._ctx,
            context,
            endpoint,
            rid=rid,
            model=model,
            prompt_tokens=prompt_tokens,
            ask=ask.length,
            respond=respond,
            wire_finish=str,
        )

    async def _known(self, name: str, context: Context) -> None:
        if name not in self._ctx.engines:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"model {name!r} is not served here")

"""The emulator's TGIS front end: ``fmaas.GenerationService`` (Generate, GenerateStream,
ModelInfo).

``Generate`` serves a batch of exactly one request (several in one call are refused with
INVALID_ARGUMENT: one request, one sequence, one ground truth record). ``GenerateStream`` first
sends a message with ``input_token_count`` and no text, as TGIS does, then one message per token
with its text and the cumulative ``generated_token_count``, the last with ``stop_reason``
``MAX_TOKENS`` or ``EOS_TOKEN``. ``stopping.max_new_tokens`` / ``min_new_tokens`` are the length
limits (0 means unset, as in TGIS); an empty ``model_id`` means the first served model.
"""

from __future__ import annotations

import grpc

from servingperf.emulator.grpc_calls import Context, refuse, request_id, run_stream, run_unary
from servingperf.emulator.grpc_context import LengthAsk, ServingContext
from servingperf.emulator.lengths import OutputPlan
from servingperf.emulator.tokenizer import count_tokens, generated_text, token_text
from servingperf.protocols._generated import generation_pb2 as gen
from servingperf.protocols._generated import generation_pb2_grpc as gen_grpc

SERVICE = "fmaas.GenerationService"
_STOP = {"length": gen.MAX_TOKENS, "stop": gen.EOS_TOKEN}


def wire_finish(reason: str) -> str:
    return gen.StopReason.Name(_STOP[reason])


def length_ask(params: gen.Parameters) -> LengthAsk:
    stopping = params.stopping
    return LengthAsk(
        max_tokens=stopping.max_new_tokens or None, min_tokens=stopping.min_new_tokens or None
    )


class TgisGenerationServicer(gen_grpc.GenerationServiceServicer):
    def __init__(self, ctx: ServingContext) -> None:
        self._ctx = ctx

    async def Generate(
        self, request: gen.BatchedGenerationRequest, context: Context
    ) -> gen.BatchedGenerationResponse:
        endpoint = f"/{SERVICE}/Generate"
        if len(request.requests) != 1:
            record = self._ctx.new_record(request_id(context), endpoint, streamed=False)
            try:
                await refuse(
                    record=record,
                    context=context,
                    code=grpc.StatusCode.INVALID_ARGUMENT,
                    message="the emulator serves exactly one request per Generate call,"
                    f" got {len(request.requests)}",
                )
            finally:
                record.end = self._ctx.clock()
                self._ctx.ground_truth.add(record)
        prompt_tokens = count_tokens(request.requests[0].text)

        def respond(plan: OutputPlan) -> gen.BatchedGenerationResponse:
            return gen.BatchedGenerationResponse(
                responses=[
                    gen.GenerationResponse(
                        input_token_count=prompt_tokens,
                        generated_token_count=plan.tokens,
                        text=generated_text(plan.tokens),
                        stop_reason=_STOP[plan.finish_reason],
                    )
                ]
            )

        return await run_unary(
            self._ctx,
            context,
            endpoint,
            rid=request_id(context),
            model=request.model_id,
            prompt_tokens=prompt_tokens,
            ask=length_ask(request.params),
            respond=respond,
            wire_finish=wire_finish,
        )

    # grpc.aio lets a streaming handler write with context.write and return None; the stubs
    # only know the generator form.
    async def GenerateStream(  # type: ignore[override]
        self, request: gen.SingleGenerationRequest, context: Context
    ) -> None:
        prompt_tokens = count_tokens(request.request.text)

        def token_message(index: int, finish: str | None) -> gen.GenerationResponse:
            return gen.GenerationResponse(
                generated_token_count=index + 1,
                text=token_text(index),
                stop_reason=gen.NOT_FINISHED if finish is None else _STOP[finish],
            )

        await run_stream(
            self._ctx,
            context,
            f"/{SERVICE}/GenerateStream",
            rid=request_id(context),
            model=request.model_id,
            prompt_tokens=prompt_tokens,
            ask=length_ask(request.params),
            token_message=token_message,
            wire_finish=wire_finish,
            opening=gen.GenerationResponse(input_token_count=prompt_tokens),
        )

    async def ModelInfo(
        self, request: gen.ModelInfoRequest, context: Context
    ) -> gen.ModelInfoResponse:
        name = request.model_id or self._ctx.default_model
        engine = self._ctx.engines.get(name)
        if engine is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"model {name!r} is not served here")
            raise AssertionError("abort returned")  # pragma: no cover
        if not self._ctx.is_ready():
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the model is loading")
        return gen.ModelInfoResponse(
            model_kind=gen.ModelInfoResponse.DECODER_ONLY,
            max_sequence_length=engine.profile.output_tokens_max * 2,
            max_new_tokens=engine.profile.output_tokens_max,
        )

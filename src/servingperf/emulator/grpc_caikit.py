"""The emulator's caikit-nlp front end: ``caikit.runtime.Nlp.NlpService`` text generation.

``TextGenerationTaskPredict`` answers one ``GeneratedTextResult``;
``ServerStreamingTextGenerationTaskPredict`` first sends a message without text whose details give
the input token count (as caikit-nlp relays TGIS's first message), then one message per token with
the token's text and ``details.generated_tokens`` counting up, the last with
``details.finish_reason`` (``MAX_TOKENS`` when the length limit ended it, ``EOS_TOKEN`` when the
emulated model "stopped"). The model comes from the ``mm-model-id`` metadata (absent: the first
served model). ``max_new_tokens`` / ``min_new_tokens`` are the length limits; caikit's other
sampling fields are accepted and ignored.
"""

from __future__ import annotations

from servingperf.emulator.grpc_calls import (
    Context,
    metadata_value,
    request_id,
    run_stream,
    run_unary,
)
from servingperf.emulator.grpc_context import LengthAsk, ServingContext
from servingperf.emulator.lengths import OutputPlan
from servingperf.emulator.tokenizer import count_tokens, generated_text, token_text
from servingperf.protocols._generated import (
    caikit_data_model_nlp_pb2 as dm,
)
from servingperf.protocols._generated import (
    caikit_runtime_Nlp_pb2 as nlp,
)
from servingperf.protocols._generated import (
    caikit_runtime_Nlp_pb2_grpc as nlp_grpc,
)

MODEL_KEY = "mm-model-id"
SERVICE = "caikit.runtime.Nlp.NlpService"
_FINISH = {"length": dm.MAX_TOKENS, "stop": dm.EOS_TOKEN}


def wire_finish(reason: str) -> str:
    return dm.FinishReason.Name(_FINISH[reason])


def length_ask(
    request: nlp.TextGenerationTaskRequest | nlp.ServerStreamingTextGenerationTaskRequest,
) -> LengthAsk:
    return LengthAsk(
        max_tokens=request.max_new_tokens if request.HasField("max_new_tokens") else None,
        min_tokens=request.min_new_tokens if request.HasField("min_new_tokens") else None,
    )


class CaikitNlpServicer(nlp_grpc.NlpServiceServicer):
    def __init__(self, ctx: ServingContext) -> None:
        self._ctx = ctx

    async def TextGenerationTaskPredict(
        self, request: nlp.TextGenerationTaskRequest, context: Context
    ) -> dm.GeneratedTextResult:
        prompt_tokens = count_tokens(request.text)

        def respond(plan: OutputPlan) -> dm.GeneratedTextResult:
            return dm.GeneratedTextResult(
                generated_text=generated_text(plan.tokens),
                generated_tokens=plan.tokens,
                finish_reason=_FINISH[plan.finish_reason],
                input_token_count=prompt_tokens,
            )

        return await run_unary(
            self._ctx,
            context,
            f"/{SERVICE}/TextGenerationTaskPredict",
            rid=request_id(context),
            model=metadata_value(context, MODEL_KEY),
            prompt_tokens=prompt_tokens,
            ask=length_ask(request),
            respond=respond,
            wire_finish=wire_finish,
        )

    # grpc.aio lets a streaming handler write with context.write and return None; the stubs
    # only know the generator form.
    async def ServerStreamingTextGenerationTaskPredict(  # type: ignore[override]
        self, request: nlp.ServerStreamingTextGenerationTaskRequest, context: Context
    ) -> None:
        prompt_tokens = count_tokens(request.text)

        def token_message(index: int, finish: str | None) -> dm.GeneratedTextStreamResult:
            details = dm.TokenStreamDetails(
                generated_tokens=index + 1, input_token_count=prompt_tokens
            )
            if finish is not None:
                details.finish_reason = _FINISH[finish]
            return dm.GeneratedTextStreamResult(generated_text=token_text(index), details=details)

        opening = dm.GeneratedTextStreamResult(
            details=dm.TokenStreamDetails(input_token_count=prompt_tokens)
        )
        await run_stream(
            self._ctx,
            context,
            f"/{SERVICE}/ServerStreamingTextGenerationTaskPredict",
            rid=request_id(context),
            model=metadata_value(context, MODEL_KEY),
            prompt_tokens=prompt_tokens,
            ask=length_ask(request),
            token_message=token_message,
            wire_finish=wire_finish,
            opening=opening,
        )

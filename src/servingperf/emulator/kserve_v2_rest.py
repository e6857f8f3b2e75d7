"""The emulator's KServe v2 REST front end (aiohttp routes), with the generate extension.

Routes: ``GET /v2/health/live`` (200 ``{"live": true}``), ``GET /v2/health/ready`` and ``GET
/v2/models/{m}/ready`` (200 ``{"ready": true}``, or 503 with ``"ready": false`` while loading),
``GET /v2`` and ``GET /v2/models/{m}`` (metadata), ``POST /v2/models/{m}/infer``, ``POST
/v2/models/{m}/generate`` and ``POST /v2/models/{m}/generate_stream`` (Server-Sent Events, one
event per token, the last with ``finish_reason`` when asked for; the stream simply ends). Errors
are ``{"error": "..."}``: 400 malformed, 404 unknown model, 503 loading or shutting down. Formats
are in :mod:`servingperf.emulator.kserve_v2_format`; ground truth as in the OpenAI front end
(``endpoint`` is the URL path, ``status`` the HTTP status). The routes are added to an existing
app (:meth:`KServeV2RestFrontEnd.add_routes`), so one port can serve OpenAI and v2 together; the
app must run with ``handler_cancellation=True`` so a departed client frees its batch slot.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from servingperf.emulator.engine import Sequence
from servingperf.emulator.groundtruth import GroundTruthRecord
from servingperf.emulator.grpc_context import Refusal, RefusalKind, ServingContext
from servingperf.emulator.kserve_v2_format import (
    BadRequest,
    GenerationAnswer,
    GenerationAsk,
    error_json,
    generate_response_json,
    infer_response_json,
    model_metadata,
    parse_generate_json,
    parse_infer_json,
)
from servingperf.emulator.lengths import OutputPlan
from servingperf.emulator.tokenizer import count_tokens, generated_text, token_text

REQUEST_ID_HEADER = "X-Request-Id"
_JSON = "application/json"
_STATUS = {
    RefusalKind.LOADING: 503,
    RefusalKind.CLOSING: 503,
    RefusalKind.UNKNOWN_MODEL: 404,
    RefusalKind.INVALID: 400,
}
_ABORTED = "the server stopped before the generation finished"


class KServeV2RestFrontEnd:
    """Serves the context's models over the v2 REST API and logs ground truth."""

    def __init__(self, ctx: ServingContext) -> None:
        self._ctx = ctx

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v2/health/live", self._live)
        app.router.add_get("/v2/health/ready", self._ready)
        app.router.add_get("/v2", self._server_metadata)
        app.router.add_get("/v2/models/{model}", self._model_metadata)
        app.router.add_get("/v2/models/{model}/ready", self._model_ready)
        app.router.add_post("/v2/models/{model}/infer", self._infer)
        app.router.add_post("/v2/models/{model}/generate", self._generate)
        app.router.add_post("/v2/models/{model}/generate_stream", self._generate_stream)

    # --- health and metadata -------------------------------------------------------------------

    async def _live(self, request: web.Request) -> web.Response:
        return web.json_response({"live": True})

    async def _ready(self, request: web.Request) -> web.Response:
        ready = self._ctx.is_ready()
        return web.json_response({"ready": ready}, status=200 if ready else 503)

    async def _server_metadata(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"name": "servingperf-emulator", "version": "1", "extensions": ["generate"]}
        )

    async def _model_metadata(self, request: web.Request) -> web.Response:
        model = request.match_info["model"]
        if model not in self._ctx.engines:
            return _error(404, f"model {model!r} is not served here")
        return web.json_response(model_metadata(model))

    async def _model_ready(self, request: web.Request) -> web.Response:
        model = request.match_info["model"]
        if model not in self._ctx.engines:
            return _error(404, f"model {model!r} is not served here")
        ready = self._ctx.is_ready()
        return web.json_response({"name": model, "ready": ready}, status=200 if ready else 503)

    # --- generation ----------------------------------------------------------------------------

    async def _infer(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, kind="infer")

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, kind="generate")

    async def _generate_stream(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, kind="stream")

    async def _serve(self, request: web.Request, *, kind: str) -> web.StreamResponse:
        record = self._ctx.new_record(
            request.headers.get(REQUEST_ID_HEADER), request.path, streamed=kind == "stream"
        )
        sequence: Sequence | None = None
        try:
            model = request.match_info["model"]
            record.model = model
            try:
                body = await request.read()
                if kind == "infer":
                    ask, body_id = parse_infer_json(body)
                    if body_id and REQUEST_ID_HEADER not in request.headers:
                        record.request_id = body_id
                else:
                    ask = parse_generate_json(body, stream=kind == "stream")
                prompt_tokens = count_tokens(ask.text)
                sequence, plan = self._ctx.admit(record, model, prompt_tokens, ask.length)
            except BadRequest as exc:
                return await self._reject(request, record, 400, str(exc))
            except Refusal as refusal:
                return await self._reject(request, record, _STATUS[refusal.kind], refusal.message)
            if kind == "stream":
                return await self._stream(request, record, ask, sequence, plan, model)
            return await self._whole(request, record, ask, sequence, plan, model, kind)
        except asyncio.CancelledError:
            record.outcome = "disconnected"
            raise
        finally:
            if sequence is not None:
                sequence.cancel()
                record.admitted = sequence.admitted_at
            if record.end is None:
                record.end = self._ctx.clock()
            self._ctx.ground_truth.add(record)

    async def _whole(
        self,
        request: web.Request,
        record: GroundTruthRecord,
        ask: GenerationAsk,
        sequence: Sequence,
        plan: OutputPlan,
        model: str,
        kind: str,
    ) -> web.StreamResponse:
        await sequence.wait_finished()
        if not sequence.complete:
            record.outcome = "aborted"
            return await self._send(request, record, 500, error_json(_ABORTED))
        answer = GenerationAnswer(
            text=generated_text(plan.tokens),
            output_tokens=plan.tokens,
            input_tokens=record.prompt_tokens,
            finish_reason=plan.finish_reason,
        )
        if kind == "infer":
            body = infer_response_json(model, record.request_id, ask, answer)
        else:
            body = generate_response_json(model, ask, answer)
        record.finish_reason = plan.finish_reason
        return await self._send(request, record, 200, body, tokens=plan.tokens)

    async def _stream(
        self,
        request: web.Request,
        record: GroundTruthRecord,
        ask: GenerationAsk,
        sequence: Sequence,
        plan: OutputPlan,
        model: str,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                REQUEST_ID_HEADER: record.request_id,
            }
        )
        last = plan.tokens - 1
        try:
            await response.prepare(request)
            async for index in sequence:
                answer = GenerationAnswer(
                    text=token_text(index),
                    output_tokens=1,
                    input_tokens=record.prompt_tokens,
                    finish_reason=plan.finish_reason if index == last else None,
                )
                await response.write(
                    b"data: " + generate_response_json(model, ask, answer) + b"\n\n"
                )
                self._ctx.note_token(record)
            if sequence.complete:
                record.finish_reason = plan.finish_reason
            else:
                record.outcome = "aborted"
                await response.write(b"data: " + error_json(_ABORTED) + b"\n\n")
            await response.write_eof()
            record.end = self._ctx.clock()
        except ConnectionError:  # a write met a closed transport: the client went away
            record.outcome = "disconnected"
        return response

    async def _reject(
        self, request: web.Request, record: GroundTruthRecord, status: int, message: str
    ) -> web.StreamResponse:
        record.outcome = "rejected"
        return await self._send(request, record, status, error_json(message))

    async def _send(
        self,
        request: web.Request,
        record: GroundTruthRecord,
        status: int,
        body: bytes,
        *,
        tokens: int = 0,
    ) -> web.StreamResponse:
        """Write a whole JSON body; a generation's body is its one token-bearing chunk."""
        record.status = status
        response = web.StreamResponse(
            status=status, headers={"Content-Type": _JSON, REQUEST_ID_HEADER: record.request_id}
        )
        response.content_length = len(body)
        try:
            await response.prepare(request)
            await response.write(body)
            if tokens:
                now = self._ctx.clock()
                record.first_token_written = now
                record.token_written.append(now)
                record.output_tokens = tokens
            await response.write_eof()
            record.end = self._ctx.clock()
        except ConnectionError:
            record.outcome = "disconnected"
        return response


def _error(status: int, message: str) -> web.Response:
    return web.Response(status=status, body=error_json(message), content_type=_JSON)

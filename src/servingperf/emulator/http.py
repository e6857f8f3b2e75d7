"""The emulator's OpenAI-compatible HTTP front end (aiohttp), as vLLM serves the API.

Routes: ``POST /v1/completions``, ``POST /v1/chat/completions`` (streaming and not),
``GET /v1/models``, ``GET /health``, and ``GET /metrics`` (vLLM's Prometheus metrics, see
:mod:`servingperf.emulator.vllm_metrics`; answered while loading too, with zeros).
Until the *load time* has passed since the server started
listening, ``/health`` and every other route answer 503 (the model is "loading"); then ``/health``
answers 200 with an empty body. Each served model id maps to an :class:`Engine`; several ids may
share one engine (one emulated device).

Every generation request leaves one :class:`GroundTruthRecord`, taken at the true moments: a token
time is read right after ``await response.write`` returned for the chunk carrying it. Output
lengths come from :func:`plan_output` with a random generator seeded from the server seed and the
request id, so the same request id gets the same natural length whatever the arrival order.
The app must run with ``handler_cancellation=True`` (see :mod:`servingperf.emulator.server`) so a
client that goes away cancels its handler at once and its sequence leaves the batch.

With a :class:`~servingperf.emulator.faults.FaultInjector`, each generation request may get one
injected fault (an error status, a latency spike, a stall, a disconnect or a malformed chunk at a
given token), and the server may never become ready, fail its start or crash; the ground truth
says which (``fault``). Without an injector the cost is a few ``None`` checks per request and
one integer comparison per streamed token.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
import uuid
from collections.abc import Callable, Mapping

from aiohttp import web

from servingperf import __version__
from servingperf.emulator.engine import Clock, Engine, Sequence
from servingperf.emulator.faults import (
    MID_STREAM,
    SHAPES,
    FaultInjector,
    FaultKind,
    RequestFault,
    corrupt_body,
    corrupt_chunk,
)
from servingperf.emulator.groundtruth import GroundTruthLog, GroundTruthRecord
from servingperf.emulator.lengths import OutputPlan, plan_output
from servingperf.emulator.openai_format import (
    GenerationCall,
    InvalidRequest,
    StreamEncoder,
    error_body,
    full_response,
    models_body,
    parse_chat,
    parse_completion,
)
from servingperf.emulator.vllm_metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from servingperf.emulator.vllm_metrics import EngineMetrics

REQUEST_ID_HEADER = "X-Request-Id"
_FAULT_OUTCOMES = frozenset({"dropped", "crashed"})  # set by injected faults: kept as they are
MAX_BODY_BYTES = 16 * 1024 * 1024  # room for very long prompts given as token ids
_JSON = "application/json"


class OpenAIFrontEnd:
    """Serves ``engines`` (model id -> engine) over the OpenAI API and logs ground truth.

    ``load_time_s`` counts from :meth:`mark_listening`; until then, and until it has passed, the
    server reports itself loading.
    """

    def __init__(
        self,
        engines: Mapping[str, Engine],
        *,
        ground_truth: GroundTruthLog,
        load_time_s: float,
        seed: int = 0,
        clock: Clock = time.monotonic,
        faults: FaultInjector | None = None,
        metrics: EngineMetrics | None = None,
    ) -> None:
        if not engines:
            raise ValueError("serve at least one model")
        self._engines = dict(engines)
        self._default_model = next(iter(self._engines))
        self._log = ground_truth
        self._load_time_s = load_time_s
        self._seed = seed
        self._clock = clock
        self._ready_at = math.inf
        self._ready = False
        self._created = int(time.time())
        self._faults = faults
        self._metrics = metrics

    @property
    def model_ids(self) -> tuple[str, ...]:
        return tuple(self._engines)

    def _reasoning(self, model: str) -> RequestFault | None:
        """The reasoning shape of a chat answer from ``model``: its profile's first
        ``reasoning_tokens`` tokens are reasoning (None for a model that does not reason)."""
        tokens = self._engines[model].profile.reasoning_tokens
        return RequestFault(FaultKind.REASONING_FIRST, tokens=tokens) if tokens > 0 else None

    def mark_listening(self) -> None:
        """Start the load-time countdown (the socket is bound and accepting)."""
        self._ready_at = self._clock() + self._load_time_s
        self._ready = self._load_time_s <= 0
        if self._faults is not None and not self._faults.arm(self._load_time_s):
            self._ready_at, self._ready = math.inf, False  # injected: never ready

    def seconds_until_ready(self) -> float:
        """Time left until ready (0 when ready); only meaningful after :meth:`mark_listening`."""
        return 0.0 if self.ready else self._ready_at - self._clock()

    @property
    def ready(self) -> bool:
        if not self._ready and self._clock() >= self._ready_at:
            self._ready = True
        return self._ready

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        if self._metrics is not None:
            app.router.add_get("/metrics", self._metrics_text)
        app.router.add_get("/version", self._version)
        return app

    # --- simple routes -------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        if not self.ready:
            return _json_response(503, error_body(503, "the model is loading"))
        return web.Response(status=200)

    async def _metrics_text(self, request: web.Request) -> web.Response:
        assert self._metrics is not None
        response = web.Response(status=200, body=self._metrics.render())
        response.headers["Content-Type"] = METRICS_CONTENT_TYPE
        return response

    async def _version(self, request: web.Request) -> web.Response:
        """The server's version, as vLLM's ``GET /version`` gives it (a run's fingerprint)."""
        return _json_response(200, json.dumps({"version": __version__}).encode())

    async def _models(self, request: web.Request) -> web.Response:
        if not self.ready:
            return _json_response(503, error_body(503, "the model is loading"))
        return _json_response(200, models_body(self._engines, self._created))

    # --- generation ----------------------------------------------------------------------------

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def _generate(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        record = GroundTruthRecord(
            request_id=request.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex,
            model="",
            endpoint=request.path,
            streamed=False,
            arrival=self._clock(),
        )
        faults = self._faults
        if faults is not None and not faults.admit(record, _closer(request)):
            return web.StreamResponse()  # crashed: the connection is gone, nothing is answered
        try:
            return await self._answer(request, record, chat)
        except asyncio.CancelledError:
            if record.outcome not in _FAULT_OUTCOMES:
                record.outcome = "disconnected"
            raise
        finally:
            if record.end is None:
                record.end = self._clock()
            if faults is None or faults.release(record):
                self._log.add(record)

    async def _answer(
        self, request: web.Request, record: GroundTruthRecord, chat: bool
    ) -> web.StreamResponse:
        if not self.ready:
            return await self._reject(request, record, 503, "the model is loading")
        try:
            body = await request.read()
            call = parse_chat(body) if chat else parse_completion(body)
        except InvalidRequest as exc:
            return await self._reject(request, record, 400, str(exc))
        except web.HTTPException as exc:  # e.g. 413, a body beyond MAX_BODY_BYTES
            return await self._reject(request, record, exc.status, exc.reason)
        model = call.model if call.model is not None else self._default_model
        record.model = model
        record.streamed = call.stream
        record.prompt_tokens = call.prompt_tokens
        engine = self._engines.get(model)
        if engine is None:
            return await self._reject(request, record, 404, f"The model `{model}` does not exist.")
        fault = None if self._faults is None else self._faults.draw(record)
        if fault is not None and fault.kind is FaultKind.HTTP_STATUS:
            return await self._reject(
                request, record, fault.status, f"injected fault: HTTP {fault.status}"
            )
        if fault is not None and fault.kind is FaultKind.EMPTY_200:
            record.outcome = "empty"
            return await self._send(request, record, 200, b"")
        if fault is not None and fault.kind is FaultKind.LATENCY_SPIKE:
            await asyncio.sleep(fault.seconds)
        plan = plan_output(
            engine.profile,
            random.Random(f"{self._seed}:{record.request_id}"),
            max_tokens=call.max_tokens,
            min_tokens=call.min_tokens,
            ignore_eos=call.ignore_eos,
        )
        try:
            seq = engine.submit(
                call.prompt_tokens,
                plan.tokens,
                model=model,
                finish_reason=plan.finish_reason,
                prompt_units=call.prompt_units,
            )
        except RuntimeError as exc:  # the engine is closing (shutdown) or its loop failed
            return await self._reject(request, record, 503, str(exc))
        try:
            if call.stream:
                return await self._stream(request, record, call, seq, plan, model, fault)
            return await self._whole(request, record, call, seq, plan, model, fault)
        finally:
            seq.cancel()  # no-op when finished; frees the batch slot of a departed client
            record.admitted = seq.admitted_at
            record.cached_tokens = seq.cached_tokens
            record.adapter_load_s = seq.adapter_load_s

    async def _stream(
        self,
        request: web.Request,
        record: GroundTruthRecord,
        call: GenerationCall,
        seq: Sequence,
        plan: OutputPlan,
        model: str,
        fault: RequestFault | None = None,
    ) -> web.StreamResponse:
        clock = self._clock
        fault_at = -1 if fault is None else fault.token_index(plan.tokens)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                REQUEST_ID_HEADER: record.request_id,
            }
        )
        encoder = StreamEncoder(
            chat=call.chat,
            response_id=("chatcmpl-" if call.chat else "cmpl-") + record.request_id,
            created=int(time.time()),
            model=model,
            prompt_tokens=call.prompt_tokens,
            include_usage=call.include_usage,
            continuous_usage=call.continuous_usage,
            token_ids=call.return_token_ids,
        )
        written = record.token_written
        last = plan.tokens - 1
        finish_reason = plan.finish_reason
        shape = fault if fault is not None and fault.kind in SHAPES else None
        if shape is None and call.chat:
            shape = self._reasoning(model)  # a reasoning model's answers think first
        try:
            await response.prepare(request)
            if shape is not None:
                await self._shaped(response, record, call, seq, plan, encoder, shape)
                return response
            async for index in seq:
                data = encoder.token(index, finish_reason if index == last else None)
                if index == 0 and call.chat:
                    # vLLM sends the role chunk with the first engine output, just before it.
                    data = encoder.role() + data
                if index == fault_at:
                    assert fault is not None
                    if fault.kind is FaultKind.DISCONNECT:
                        _drop(request, record)
                        return response
                    if fault.kind is FaultKind.STALL:
                        await asyncio.sleep(fault.seconds)
                    else:
                        data = corrupt_chunk(fault.kind, data)
                await response.write(data)
                now = clock()
                if not written:
                    record.first_token_written = now
                written.append(now)
            if seq.complete:
                record.finish_reason = finish_reason
                await response.write(encoder.tail(len(written)))
            else:
                record.outcome = "aborted"
                await response.write(
                    encoder.error(503, "the server stopped before the generation finished")
                )
            await response.write_eof()
            record.end = clock()
        except ConnectionError:  # a write met a closed transport: the client went away
            record.outcome = "disconnected"
        finally:  # also when the handler is cancelled because the client went away
            record.output_tokens = len(written)
        return response

    async def _shaped(
        self,
        response: web.StreamResponse,
        record: GroundTruthRecord,
        call: GenerationCall,
        seq: Sequence,
        plan: OutputPlan,
        encoder: StreamEncoder,
        shape: RequestFault,
    ) -> None:
        """A stream whose shape a fault changes (:data:`SHAPES`); ``token_written`` gets, per
        token, when the chunk carrying its *text* had been written (a held token waits)."""
        clock = self._clock
        written = record.token_written
        last = plan.tokens - 1
        group = shape.tokens if shape.kind is FaultKind.MULTI_TOKEN else 1
        reasoning = shape.tokens if shape.kind is FaultKind.REASONING_FIRST and call.chat else 0
        record.reasoning_tokens = min(reasoning, plan.tokens)
        extra = shape.tokens if shape.kind is FaultKind.USAGE_MISMATCH else 0
        held = 0  # the first token whose text is not yet written
        role = call.chat  # vLLM's role chunk goes just before the first chunk
        async for index in seq:
            finish = plan.finish_reason if index == last else None
            closes = (index + 1) % group == 0 or index == last
            if group == 1:
                data = encoder.chunk(index, index + 1, finish, reasoning=index < reasoning)
            elif shape.empty_text:  # every token its chunk, the text with the group's last
                text_from = held if closes else index + 1
                data = encoder.chunk(index, index + 1, finish, text_from=text_from)
            elif closes:  # one chunk per group
                data = encoder.chunk(held, index + 1, finish)
            else:
                continue
            if role:
                data, role = encoder.role() + data, False
            await response.write(data)
            if closes:
                now = clock()
                if not written:
                    record.first_token_written = now
                written.extend([now] * (index + 1 - held))
                held = index + 1
        if seq.complete:
            record.finish_reason = plan.finish_reason
            await response.write(encoder.tail(len(written) + extra))
        else:
            record.outcome = "aborted"
            await response.write(
                encoder.error(503, "the server stopped before the generation finished")
            )
        await response.write_eof()
        record.end = clock()

    async def _whole(
        self,
        request: web.Request,
        record: GroundTruthRecord,
        call: GenerationCall,
        seq: Sequence,
        plan: OutputPlan,
        model: str,
        fault: RequestFault | None = None,
    ) -> web.StreamResponse:
        await seq.wait_finished()
        if not seq.complete:
            record.outcome = "aborted"
            return await self._send(
                request,
                record,
                500,
                error_body(500, "the server stopped before the generation finished"),
            )
        kind = None if fault is None else fault.kind
        reasoning = 0
        if call.chat:
            shape = fault if kind is FaultKind.REASONING_FIRST else self._reasoning(model)
            reasoning = 0 if shape is None else shape.tokens
        record.reasoning_tokens = min(reasoning, plan.tokens)
        body = full_response(
            chat=call.chat,
            response_id=("chatcmpl-" if call.chat else "cmpl-") + record.request_id,
            created=int(time.time()),
            model=model,
            prompt_tokens=call.prompt_tokens,
            completion_tokens=plan.tokens,
            finish_reason=plan.finish_reason,
            usage_completion_tokens=(
                plan.tokens + fault.tokens
                if fault is not None and kind is FaultKind.USAGE_MISMATCH
                else None
            ),
            reasoning_tokens=reasoning,
            token_ids=call.return_token_ids,
        )
        record.finish_reason = plan.finish_reason
        if fault is not None and fault.kind in MID_STREAM:  # one chunk: the fault hits the body
            if fault.kind is FaultKind.DISCONNECT:
                _drop(request, record)
                return web.StreamResponse()
            if fault.kind is FaultKind.STALL:
                await asyncio.sleep(fault.seconds)
            else:
                body = corrupt_body(fault.kind, body)
        return await self._send(request, record, 200, body, tokens=plan.tokens)

    async def _reject(
        self, request: web.Request, record: GroundTruthRecord, status: int, message: str
    ) -> web.StreamResponse:
        record.outcome = "rejected"
        return await self._send(request, record, status, error_body(status, message))

    async def _send(
        self,
        request: web.Request,
        record: GroundTruthRecord,
        status: int,
        body: bytes,
        *,
        tokens: int = 0,
    ) -> web.StreamResponse:
        """Write a whole JSON body and time it: a non-streaming response is one token-bearing
        chunk, its write time both the first-token and the only token time."""
        record.status = status
        response = web.StreamResponse(
            status=status,
            headers={"Content-Type": _JSON, REQUEST_ID_HEADER: record.request_id},
        )
        response.content_length = len(body)
        try:
            await response.prepare(request)
            await response.write(body)
            if tokens:
                now = self._clock()
                record.first_token_written = now
                record.token_written.append(now)
                record.output_tokens = tokens
            await response.write_eof()
            record.end = self._clock()
        except ConnectionError:
            record.outcome = "disconnected"
        return response


def _closer(request: web.Request) -> Callable[[], None] | None:
    """Aborts the request's connection (an injected crash), or None if it has none."""
    transport = request.transport
    return None if transport is None else transport.abort


def _drop(request: web.Request, record: GroundTruthRecord) -> None:
    """An injected disconnect: close the connection mid-response."""
    record.outcome = "dropped"
    transport = request.transport
    if transport is not None:
        transport.close()


def _json_response(status: int, body: bytes) -> web.Response:
    return web.Response(status=status, body=body, content_type=_JSON)

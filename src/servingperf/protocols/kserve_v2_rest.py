"""KServe v2 (Open Inference Protocol) REST client, with the generate extension for streaming.

Requests: a streaming request is ``POST /v2/models/{m}/generate_stream``, answered with Server-Sent
Events whose ``data`` are JSON objects with ``text_output`` (the new text), and, with the vLLM
backend's convention, ``num_output_tokens`` (tokens in this event) and ``finish_reason`` (last
event). A non-streaming request is ``POST /v2/models/{m}/infer`` (the core protocol, every v2
server has it) or, with ``unary_endpoint="generate"``, ``POST /v2/models/{m}/generate``. Tensor and
parameter conventions are in :mod:`servingperf.protocols.kserve_v2_tensors`.

Token chunks (:mod:`servingperf.protocols.chunk_tokens`): an event is token-bearing when it
carries text (``text_output``); its tokens are its ``num_output_tokens`` when the server counts
them, else the target's tokenizer over its text, else one (as Triton streams); tokens counted on
an event without text are carried by the next event with text. There is no usage block: N is
the streamed count. A non-streaming response must carry ``num_output_tokens`` (the server's
count of N): without it the request fails as PROTOCOL, as an OpenAI response without usage
does. The generate stream has no end marker: it ends when the body ends; a body cut short is a
transport error, a body without any event is empty (both PROTOCOL; an empty body is an "empty
response", streamed or not).
An ``error`` object in a stream fails the request (PROTOCOL), whatever the HTTP status said; a
429 is ``rate_limited``, another error status ``http_status``.
The probe asks ``/v2/health/ready`` and ``/v2/models/{m}/ready``.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal
from urllib.parse import quote

import aiohttp

from servingperf.errors import TargetError
from servingperf.model.records import ErrorKind, Exchange
from servingperf.model.target import Target
from servingperf.protocols.chunk_tokens import note_chunk
from servingperf.protocols.http_common import EMPTY_RESPONSE, classify, new_session, status_kind
from servingperf.protocols.kserve_v2_tensors import (
    GenerationOutput,
    TensorError,
    generate_json,
    generation_from_json,
    generation_from_tensors,
    infer_json,
    json_outputs,
)
from servingperf.protocols.sse import SseParser
from servingperf.protocols.token_counter import load_counter

_ERROR_BODY_CHARS = 300
UnaryEndpoint = Literal["infer", "generate"]


class KServeV2RestClient:
    """One client per model instance; safe to share between all users of that instance."""

    def __init__(self, target: Target, *, unary_endpoint: UnaryEndpoint = "infer") -> None:
        self._target = target
        self._base = target.url.rstrip("/")
        model_path = f"{self._base}/v2/models/{quote(target.model, safe='')}"
        self._model_path = model_path
        self._unary_url = f"{model_path}/{unary_endpoint}"
        self._unary_endpoint = unary_endpoint
        self._stream_url = f"{model_path}/generate_stream"
        self._timeout = aiohttp.ClientTimeout(total=target.request_timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._counter = None if target.tokenizer is None else load_counter(target.tokenizer)

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = new_session(self._target)
        return self._session

    async def probe(self) -> None:
        timeout = aiohttp.ClientTimeout(total=min(30.0, self._target.request_timeout_s))
        for url, what in (
            (f"{self._base}/v2/health/ready", "server readiness"),
            (f"{self._model_path}/ready", f"readiness of model {self._target.model!r}"),
        ):
            try:
                async with self._get_session().get(url, timeout=timeout) as response:
                    body = await response.text(errors="replace")
            except (TimeoutError, aiohttp.ClientError) as exc:
                _, reason = classify(exc)
                raise TargetError(f"{url}: {what}: {reason}") from exc
            if response.status != 200:
                raise TargetError(
                    f"{url}: {what}: HTTP {response.status}: {body[:_ERROR_BODY_CHARS]}"
                )
            try:
                ready = json.loads(body).get("ready", True) if body.strip() else True
            except (ValueError, AttributeError):
                ready = True  # a 200 without a JSON body is ready enough
            if ready is False:
                raise TargetError(f"{url}: {what}: the server says not ready")

    async def generate(self, exchange: Exchange) -> None:
        request = exchange.request
        if request.stream:
            url, body = self._stream_url, generate_json(request, stream=True)
        elif self._unary_endpoint == "generate":
            url, body = self._unary_url, generate_json(request, stream=False)
        else:
            url, body = self._unary_url, infer_json(request)
        payload = json.dumps(body).encode()
        headers = {"X-Request-Id": request.request_id}
        if request.stream:
            headers["Accept"] = "text/event-stream"
        session = self._get_session()
        try:
            exchange.mono_sent = time.monotonic()
            async with session.post(
                url, data=payload, headers=headers, timeout=self._timeout
            ) as response:
                if response.status != 200:
                    text = await response.text(errors="replace")
                    exchange.fail(
                        time.monotonic(),
                        status_kind(response.status),
                        f"HTTP {response.status}: {text[:_ERROR_BODY_CHARS]}",
                    )
                    return
                if request.stream:
                    await self._read_stream(response, exchange)
                else:
                    await self._read_whole(response, exchange)
        except (TimeoutError, aiohttp.ClientError) as exc:
            kind, reason = classify(exc)
            exchange.fail(time.monotonic(), kind, reason)

    async def _read_whole(self, response: aiohttp.ClientResponse, exchange: Exchange) -> None:
        raw = await response.read()
        now = time.monotonic()
        if not raw.strip():
            exchange.fail(now, ErrorKind.PROTOCOL, EMPTY_RESPONSE)
            return
        try:
            data = json.loads(raw)
            if self._unary_endpoint == "generate":
                result = generation_from_json(data)
            else:
                result = generation_from_tensors(json_outputs(data))
        except (ValueError, TensorError) as exc:
            exchange.fail(now, ErrorKind.PROTOCOL, f"malformed response: {exc}: {raw[:200]!r}")
            return
        if result.output_tokens is None:
            exchange.fail(
                now, ErrorKind.PROTOCOL, "the response carries no num_output_tokens (N unknown)"
            )
            return
        _usage(result, exchange)
        exchange.succeed(now)

    async def _read_stream(self, response: aiohttp.ClientResponse, exchange: Exchange) -> None:
        parser = SseParser()
        events = 0
        received = False
        async for data in response.content.iter_any():
            now = time.monotonic()
            received = received or bool(data)
            for event in parser.feed(data):
                if not self._event(event, exchange, now):
                    return
                events += 1
        now = time.monotonic()
        for event in parser.close():
            if not self._event(event, exchange, now):
                return
            events += 1
        if events == 0:
            message = "the stream ended without any event" if received else EMPTY_RESPONSE
            exchange.fail(now, ErrorKind.PROTOCOL, message)
            return
        exchange.succeed(now)

    def _event(self, event: str, exchange: Exchange, now: float) -> bool:
        """Account one SSE event; False when it failed the request."""
        try:
            chunk: Any = json.loads(event)
        except ValueError:
            exchange.fail(now, ErrorKind.PROTOCOL, f"event is not JSON: {event[:200]!r}")
            return False
        if isinstance(chunk, dict) and "error" in chunk:
            exchange.fail(now, ErrorKind.PROTOCOL, f"error in stream: {event[:300]}")
            return False
        try:
            result = generation_from_json(chunk)
        except TensorError as exc:
            exchange.fail(now, ErrorKind.PROTOCOL, f"malformed event: {exc}: {event[:200]!r}")
            return False
        note_chunk(exchange, now, result.text or "", result.output_tokens, self._counter)
        if result.input_tokens is not None:
            exchange.usage_input_tokens = result.input_tokens
        if result.finish_reason:
            exchange.finish_reason = result.finish_reason
        return True

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _usage(result: GenerationOutput, exchange: Exchange) -> None:
    exchange.usage_output_tokens = result.output_tokens
    if result.input_tokens is not None:
        exchange.usage_input_tokens = result.input_tokens
    if result.finish_reason:
        exchange.finish_reason = result.finish_reason


def create(target: Target) -> KServeV2RestClient:
    return KServeV2RestClient(target)

"""OpenAI-compatible HTTP client (``/v1/completions`` and ``/v1/chat/completions``), as vLLM,
TGI, llama.cpp and KServe's OpenAI endpoints serve them.

Token chunks: a streamed chunk is token-bearing when its choice carries non-empty ``text``
(completions) or ``delta.content`` / ``delta.reasoning_content`` (chat). Role-only deltas, empty
strings and usage-only chunks are not: they never set the first-token time. Tokens per chunk come from
``continuous_usage_stats`` deltas when the server sends them, else one per token-bearing chunk (what
vLLM streams). The final usage chunk (``stream_options.include_usage``) gives N and input tokens.
"""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp

from servingperf.errors import TargetError
from servingperf.model.records import ErrorKind, Exchange, GenerationRequest
from servingperf.model.specs import ProtocolKind
from servingperf.model.target import Target
from servingperf.protocols.http_common import classify, new_session
from servingperf.protocols.sse import SseParser

_ERROR_BODY_CHARS = 300


class OpenAIClient:
    """One client per model instance; safe to share between all users of that instance."""

    def __init__(self, target: Target) -> None:
        self._target = target
        self._chat = target.protocol is ProtocolKind.OPENAI_CHAT
        base = target.url.rstrip("/").removesuffix("/v1")
        self._base = base
        self._url = f"{base}/v1/chat/completions" if self._chat else f"{base}/v1/completions"
        self._timeout = aiohttp.ClientTimeout(total=target.request_timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = new_session(self._target)
        return self._session

    async def probe(self) -> None:
        url = f"{self._base}/v1/models"
        try:
            async with self._get_session().get(
                url, timeout=aiohttp.ClientTimeout(total=min(30.0, self._target.request_timeout_s))
            ) as response:
                body = await response.text()
        except (TimeoutError, aiohttp.ClientError) as exc:
            _, reason = classify(exc)
            raise TargetError(f"{url}: {reason}") from exc
        if response.status != 200:
            raise TargetError(f"{url}: HTTP {response.status}: {body[:_ERROR_BODY_CHARS]}")
        try:
            served = [m["id"] for m in json.loads(body)["data"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise TargetError(
                f"{url}: not an OpenAI model list: {body[:_ERROR_BODY_CHARS]}"
            ) from exc
        if self._target.model not in served:
            raise TargetError(
                f"{url}: model {self._target.model!r} is not served; served: {', '.join(served)}"
            )

    def body(self, request: GenerationRequest) -> dict[str, Any]:
        """The JSON body for a request; extra sampling fields only when asked for (strict servers)."""
        body: dict[str, Any] = {"model": request.model, "stream": request.stream}
        if self._chat:
            messages = []
            if request.system_prompt:
                messages.append({"role": "system", "content": request.system_prompt})
            messages.append({"role": "user", "content": request.prompt})
            body["messages"] = messages
        else:
            prompt = request.prompt
            if request.system_prompt:
                prompt = f"{request.system_prompt}\n\n{prompt}"
            body["prompt"] = prompt
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.min_tokens is not None:
            body["min_tokens"] = request.min_tokens
        if request.ignore_eos:
            body["ignore_eos"] = True
        if request.stream:
            body["stream_options"] = {"include_usage": True}
        return body

    async def generate(self, exchange: Exchange) -> None:
        request = exchange.request
        payload = json.dumps(self.body(request)).encode()
        headers = {"X-Request-Id": request.request_id}
        session = self._get_session()
        try:
            exchange.mono_sent = time.monotonic()
            async with session.post(
                self._url, data=payload, headers=headers, timeout=self._timeout
            ) as response:
                if response.status != 200:
                    text = await response.text(errors="replace")
                    exchange.fail(
                        time.monotonic(),
                        ErrorKind.HTTP_STATUS,
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
        try:
            data = json.loads(raw)
            choice = data["choices"][0]
            exchange.finish_reason = choice.get("finish_reason")
            self._usage(data.get("usage"), exchange)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            exchange.fail(now, ErrorKind.PROTOCOL, f"malformed response: {exc!r}: {raw[:200]!r}")
            return
        if exchange.usage_output_tokens is None:
            exchange.fail(now, ErrorKind.PROTOCOL, "non-streaming response without usage counts")
            return
        exchange.succeed(now)

    async def _read_stream(self, response: aiohttp.ClientResponse, exchange: Exchange) -> None:
        parser = SseParser()
        done = False
        last_cumulative = 0
        async for data in response.content.iter_any():
            now = time.monotonic()
            for event in parser.feed(data):
                if event == "[DONE]":
                    done = True
                    continue
                try:
                    chunk = json.loads(event)
                except ValueError:
                    exchange.fail(now, ErrorKind.PROTOCOL, f"chunk is not JSON: {event[:200]!r}")
                    return
                if not isinstance(chunk, dict):
                    exchange.fail(
                        now, ErrorKind.PROTOCOL, f"chunk is not an object: {event[:200]!r}"
                    )
                    return
                if "error" in chunk:
                    exchange.fail(now, ErrorKind.PROTOCOL, f"error in stream: {event[:300]}")
                    return
                last_cumulative = self._chunk(chunk, exchange, now, last_cumulative)
        now = time.monotonic()
        for event in parser.close():
            if event == "[DONE]":
                done = True
        if not done:
            exchange.fail(now, ErrorKind.PROTOCOL, "stream ended without [DONE]")
            return
        exchange.succeed(now)

    def _chunk(self, chunk: dict[str, Any], exchange: Exchange, now: float, cumulative: int) -> int:
        """Account one streamed chunk; returns the running cumulative completion-token count."""
        usage = chunk.get("usage")
        choices = chunk.get("choices") or ()
        tokens_text = False
        content = False
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            if self._chat:
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    tokens_text = content = True
                elif delta.get("reasoning_content") or delta.get("reasoning"):
                    tokens_text = True
            elif choice.get("text"):
                tokens_text = content = True
            if choice.get("finish_reason"):
                exchange.finish_reason = choice["finish_reason"]
        completion = usage.get("completion_tokens") if isinstance(usage, dict) else None
        self._usage(usage, exchange)
        if isinstance(completion, int) and completion > cumulative:
            if tokens_text:  # continuous usage stats: the chunk carries the delta
                exchange.token_chunk(now, completion - cumulative, content=content)
            return completion
        if tokens_text:
            exchange.token_chunk(now, 1, content=content)
            return cumulative + 1
        return cumulative

    @staticmethod
    def _usage(usage: Any, exchange: Exchange) -> None:
        if not isinstance(usage, dict):
            return
        completion = usage.get("completion_tokens")
        prompt = usage.get("prompt_tokens")
        if isinstance(completion, int) and completion >= 0:
            exchange.usage_output_tokens = completion
        if isinstance(prompt, int) and prompt >= 0:
            exchange.usage_input_tokens = prompt

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def create(target: Target) -> OpenAIClient:
    return OpenAIClient(target)

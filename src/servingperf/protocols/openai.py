"""OpenAI-compatible HTTP client (``/v1/completions`` and ``/v1/chat/completions``), as vLLM,
TGI, llama.cpp and KServe's OpenAI endpoints serve them.

Token chunks: a streamed chunk is token-bearing when its choice carries non-empty ``text``
(completions) or ``delta.content`` / ``delta.reasoning_content`` (chat). Role-only deltas, empty
strings and usage-only chunks are not: they never set the first-token time. Tokens per chunk come from
``continuous_usage_stats`` deltas when the server sends them, else one per token-bearing chunk (what
vLLM streams). The final usage chunk (``stream_options.include_usage``) gives N and input tokens.

Hot path. Generation requests go over :mod:`servingperf.protocols.http1` (keep-alive connections
pooled per client, framing parsed by httptools inside ``data_received``): the arrival time of a
chunk is read once per socket read, before any parsing, and no coroutine switch happens per chunk.
The SSE events of one read are framed on bytes and, in the common shape (one ``data: {...}`` line
per event), parsed by one JSON call (:meth:`SseParser.feed_json_batch`); one-token completion
chunks of a read are noted together. The per-request deadline is one timer handle on the loop.
The probe (``GET /v1/models``) uses aiohttp.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from servingperf.errors import TargetError
from servingperf.model.records import ErrorKind, Exchange, GenerationRequest
from servingperf.model.specs import ProtocolKind
from servingperf.model.target import Target
from servingperf.protocols.http1 import Http1Pool, ProtocolViolation
from servingperf.protocols.http_common import base_headers, classify, new_session, ssl_context
from servingperf.protocols.sse import SseParser

_Loads = Callable[[str | bytes], Any]
_Dumps = Callable[[Any], bytes]
try:  # orjson parses a stream chunk about 3x faster than json; optional
    import orjson

    _loads: _Loads = orjson.loads
    _dumps: _Dumps = orjson.dumps
except ImportError:  # pragma: no cover - exercised where orjson is not installed
    _loads = json.loads

    def _dumps(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()


_ERROR_BODY_CHARS = 300
_MAX_ERROR_BODY_BYTES = 64 * 1024
_DONE = b"[DONE]"


class OpenAIClient:
    """One client per model instance; safe to share between all users of that instance."""

    def __init__(self, target: Target) -> None:
        self._target = target
        self._chat = target.protocol is ProtocolKind.OPENAI_CHAT
        base = target.url.rstrip("/").removesuffix("/v1")
        self._base = base
        self._url = f"{base}/v1/chat/completions" if self._chat else f"{base}/v1/completions"
        self._session: aiohttp.ClientSession | None = None
        self._pool = Http1Pool(self._url, base_headers(target), _tls(self._url, target))
        self._timeout_s = target.request_timeout_s

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
        """Send one request; the target's per-request deadline covers connect and response."""
        request = exchange.request
        pool = self._pool
        data = pool.request(request.request_id, _dumps(self.body(request)))
        handler = _ResponseHandler(exchange, self._chat)
        deadline = asyncio.get_running_loop().time() + self._timeout_s
        connection = pool.idle()
        reusable = False
        try:
            if connection is None:
                async with asyncio.timeout_at(deadline):
                    connection = await pool.connect()
            pool.watch(connection, deadline)
            reusable = await connection.exchange(data, handler)
        except TimeoutError:
            exchange.fail(
                time.monotonic(), ErrorKind.TIMEOUT, f"no answer within {self._timeout_s:g} s"
            )
        except ProtocolViolation as exc:
            exchange.fail(time.monotonic(), ErrorKind.PROTOCOL, str(exc))
        except (OSError, ssl.SSLError) as exc:
            if connection is None:
                message = f"cannot connect: {_reason(exc)}"
                exchange.fail(time.monotonic(), ErrorKind.CONNECT, message)
            else:
                message = f"server closed the connection before the response ended: {_reason(exc)}"
                exchange.fail(time.monotonic(), ErrorKind.PROTOCOL, message)
        finally:
            if connection is not None:
                pool.release(connection, reusable)

    async def aclose(self) -> None:
        self._pool.close()
        if self._session is not None:
            await self._session.close()
            self._session = None


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _tls(url: str, target: Target) -> ssl.SSLContext | None:
    if not url.startswith("https:"):
        return None
    configured = ssl_context(target)
    if isinstance(configured, ssl.SSLContext):
        return configured
    context = ssl.create_default_context()
    if configured is False:  # insecure: self-signed clusters
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _ResponseHandler:
    """Turns one response's bytes into the exchange's events, as they arrive (no awaits)."""

    __slots__ = ("_body", "_chat", "_cumulative", "_done", "_exchange", "_parser", "status")

    def __init__(self, exchange: Exchange, chat: bool) -> None:
        self._exchange = exchange
        self._chat = chat
        self._parser = SseParser() if exchange.request.stream else None
        self._body = bytearray()  # non-streamed or error bodies
        self._done = False
        self._cumulative = 0
        self.status = 0

    def sent(self, now: float) -> None:
        self._exchange.mono_sent = now

    def body(self, data: bytes, now: float) -> bool:
        """Account body bytes that arrived at ``now``; False once the request has failed."""
        parser = self._parser
        if self.status != 200 or parser is None:
            if self.status == 200 or len(self._body) < _MAX_ERROR_BODY_BYTES:
                self._body += data
            return True
        batch = parser.feed_json_batch(data)
        if batch is not None:  # the common shape: every event of the read in one JSON call
            if batch.done:
                self._done = True
            try:
                parsed = _loads(batch.array)
            except ValueError:
                parsed = None
            if type(parsed) is list and len(parsed) == batch.events:
                return self._chunks(parsed, now)
            return self._one_by_one(batch.payloads(), now)
        events = parser.feed_bytes(data)
        payloads = [event for event in events if event != _DONE]
        if len(payloads) < len(events):
            self._done = True
        if len(payloads) > 1:  # several events in one read: parse them in one call
            parsed = _parse_objects(payloads)
            if parsed is not None:
                return self._chunks(parsed, now)
        return self._one_by_one(payloads, now)

    def _one_by_one(self, payloads: list[bytes], now: float) -> bool:
        """The slow path, event by event, naming the one that is wrong."""
        exchange = self._exchange
        for raw in payloads:
            event = raw.decode("utf-8", errors="replace")
            try:
                chunk = _loads(event)
            except ValueError:
                exchange.fail(now, ErrorKind.PROTOCOL, f"chunk is not JSON: {event[:200]!r}")
                return False
            if not isinstance(chunk, dict):
                exchange.fail(now, ErrorKind.PROTOCOL, f"chunk is not an object: {event[:200]!r}")
                return False
            if "error" in chunk:
                exchange.fail(now, ErrorKind.PROTOCOL, f"error in stream: {event[:300]}")
                return False
            self._cumulative = self._chunk(chunk, now, self._cumulative)
        return True

    def _chunks(self, chunks: list[Any], now: float) -> bool:
        """Account the parsed chunks of one read. One-token completion chunks (what vLLM
        streams) are noted in runs, in order with the others; each stays one chunk."""
        exchange = self._exchange
        completions = not self._chat
        cumulative = self._cumulative
        run = 0  # one-token completion chunks not yet noted
        for chunk in chunks:
            if type(chunk) is not dict or "error" in chunk:
                _note_run(exchange, now, run)
                self._cumulative = cumulative + run
                return self._failed(chunk, now)
            if completions and chunk.get("usage") is None:
                choices = chunk.get("choices")
                if type(choices) is list and len(choices) == 1:
                    choice = choices[0]
                    if type(choice) is dict:
                        if choice.get("text"):
                            run += 1
                        finish = choice.get("finish_reason")
                        if finish:
                            exchange.finish_reason = finish
                        continue
            if run:
                _note_run(exchange, now, run)
                cumulative += run
                run = 0
            cumulative = self._chunk(chunk, now, cumulative)
        _note_run(exchange, now, run)
        self._cumulative = cumulative + run
        return True

    def _failed(self, chunk: Any, now: float) -> bool:
        """A parsed chunk that is not an object or carries an error fails the request."""
        if type(chunk) is dict:
            message = f"error in stream: {_dumps(chunk).decode()[:300]}"
        else:
            message = f"chunk is not an object: {chunk!r:.200}"
        self._exchange.fail(now, ErrorKind.PROTOCOL, message)
        return False

    def end(self, now: float) -> None:
        """The response ended at ``now``."""
        exchange = self._exchange
        if self.status != 200:
            text = bytes(self._body).decode("utf-8", errors="replace")
            exchange.fail(
                now, ErrorKind.HTTP_STATUS, f"HTTP {self.status}: {text[:_ERROR_BODY_CHARS]}"
            )
            return
        if self._parser is None:
            self._whole(bytes(self._body), now)
            return
        for event in self._parser.close_bytes():
            if event == _DONE:
                self._done = True
        if not self._done:
            exchange.fail(now, ErrorKind.PROTOCOL, "stream ended without [DONE]")
            return
        exchange.succeed(now)

    def _whole(self, raw: bytes, now: float) -> None:
        exchange = self._exchange
        try:
            data = _loads(raw)
            choice = data["choices"][0]
            if not isinstance(choice, dict):
                raise TypeError(f"a choice is a {type(choice).__name__}, not an object")
            exchange.finish_reason = choice.get("finish_reason")
            _usage(data.get("usage"), exchange)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            exchange.fail(now, ErrorKind.PROTOCOL, f"malformed response: {exc!r}: {raw[:200]!r}")
            return
        if exchange.usage_output_tokens is None:
            exchange.fail(now, ErrorKind.PROTOCOL, "non-streaming response without usage counts")
            return
        exchange.succeed(now)

    def _chunk(self, chunk: dict[str, Any], now: float, cumulative: int) -> int:
        """Account one streamed chunk; returns the running cumulative completion-token count."""
        exchange = self._exchange
        usage = chunk.get("usage")
        choices: Any = chunk.get("choices") or ()
        if usage is None and not self._chat and len(choices) == 1:  # the common completion chunk
            choice = choices[0]
            if isinstance(choice, dict):
                finish = choice.get("finish_reason")
                if finish:
                    exchange.finish_reason = finish
                if choice.get("text"):
                    exchange.token_chunk(now, 1)
                    return cumulative + 1
                return cumulative
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
        if usage is None:
            if tokens_text:
                exchange.token_chunk(now, 1, content=content)
                return cumulative + 1
            return cumulative
        completion = usage.get("completion_tokens") if isinstance(usage, dict) else None
        _usage(usage, exchange)
        if isinstance(completion, int) and completion > cumulative:
            if tokens_text:  # continuous usage stats: the chunk carries the delta
                exchange.token_chunk(now, completion - cumulative, content=content)
            return completion
        if tokens_text:
            exchange.token_chunk(now, 1, content=content)
            return cumulative + 1
        return cumulative


def _note_run(exchange: Exchange, now: float, run: int) -> None:
    """Note ``run`` chunks of one content token each, all arrived at ``now`` (what
    ``Exchange.token_chunk(now, 1)`` does ``run`` times, in one step)."""
    if not run:
        return
    if exchange.mono_first_token is None:
        exchange.mono_first_token = now
    if exchange.mono_first_content is None:
        exchange.mono_first_content = now
    if run == 1:
        exchange.chunk_monos.append(now)
        exchange.chunk_tokens.append(1)
    else:
        exchange.chunk_monos += [now] * run
        exchange.chunk_tokens += [1] * run


def _parse_objects(payloads: list[bytes]) -> list[Any] | None:
    """Each payload as a JSON object, parsed in one call; None unless every payload is exactly
    one object (then they are parsed one by one, so that the bad one is named)."""
    for payload in payloads:
        if payload[:1] != b"{" or payload[-1:] != b"}":
            return None
    try:
        parsed = _loads(b"[" + b",".join(payloads) + b"]")
    except ValueError:
        return None
    if not isinstance(parsed, list) or len(parsed) != len(payloads):
        return None
    return parsed


def _usage(usage: Any, exchange: Exchange) -> None:
    if not isinstance(usage, dict):
        return
    completion = usage.get("completion_tokens")
    prompt = usage.get("prompt_tokens")
    if isinstance(completion, int) and completion >= 0:
        exchange.usage_output_tokens = completion
    if isinstance(prompt, int) and prompt >= 0:
        exchange.usage_input_tokens = prompt


def create(target: Target) -> OpenAIClient:
    return OpenAIClient(target)

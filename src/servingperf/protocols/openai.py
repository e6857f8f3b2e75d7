"""OpenAI-compatible HTTP client (``/v1/completions`` and ``/v1/chat/completions``), as vLLM,
TGI, llama.cpp and KServe's OpenAI endpoints serve them.

Token chunks: a streamed chunk is token-bearing when its choice carries non-empty ``text``
(completions) or ``delta.content`` / ``delta.reasoning_content`` / ``delta.reasoning`` (chat).
Role-only deltas, empty strings and usage-only chunks are not: they never set the first-token
time. Tokens per chunk follow :mod:`servingperf.protocols.chunk_tokens`: the chunk's
``token_ids`` (vLLM's ``return_token_ids``, sent when the target asks) or the rise of its running
usage (``stream_options.continuous_usage_stats``, likewise), else the target's tokenizer over
the chunk's text, else one per token-bearing chunk; tokens the server counts on a chunk with
empty text are carried by the next chunk with text. The usage block, a chunk without choices
(``stream_options.include_usage``), gives the usage count of N and the input tokens. A 429 is
``rate_limited``; a 200 with an empty body is an "empty response".

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
from servingperf.model.records import ChunkTokenSource, ErrorKind, Exchange, GenerationRequest
from servingperf.model.specs import ProtocolKind
from servingperf.model.target import Target
from servingperf.protocols.chunk_tokens import note_chunk
from servingperf.protocols.http1 import Http1Pool, ProtocolViolation
from servingperf.protocols.http_common import (
    EMPTY_RESPONSE,
    base_headers,
    classify,
    new_session,
    ssl_context,
    status_kind,
)
from servingperf.protocols.sse import SseParser
from servingperf.protocols.token_counter import TokenCounter, load_counter

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


_CHUNKS = ChunkTokenSource.CHUNKS
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
        self._counter = None if target.tokenizer is None else load_counter(target.tokenizer)
        self._owned_by: str | None = None

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
            listing = json.loads(body)["data"]
            served = [m["id"] for m in listing]
        except (ValueError, KeyError, TypeError) as exc:
            raise TargetError(
                f"{url}: not an OpenAI model list: {body[:_ERROR_BODY_CHARS]}"
            ) from exc
        for entry in listing:
            if isinstance(entry, dict) and entry.get("id") == self._target.model:
                owner = entry.get("owned_by")
                self._owned_by = owner if isinstance(owner, str) and owner else None
        if self._target.model not in served:
            raise TargetError(
                f"{url}: model {self._target.model!r} is not served; served: {', '.join(served)}"
            )

    async def describe(self) -> dict[str, str]:
        """What the server says it is, for the run's fingerprint: the engine from the model
        listing's ``owned_by`` (vLLM says ``vllm``) and the version from ``GET /version`` (vLLM's,
        and the emulator's); whatever it does not say is left out. Call after :meth:`probe`;
        never raises (a server without ``/version`` is common)."""
        info: dict[str, str] = {}
        if self._owned_by:
            info["name"] = self._owned_by
        url = f"{self._base}/version"
        try:
            async with self._get_session().get(
                url, timeout=aiohttp.ClientTimeout(total=min(10.0, self._timeout_s))
            ) as response:
                text = await response.text() if response.status == 200 else ""
        except (TimeoutError, aiohttp.ClientError):
            return info
        try:
            version = json.loads(text).get("version") if text else None
        except (ValueError, AttributeError):
            version = None
        if isinstance(version, str) and version:
            info["version"] = version[:100]
        return info

    def body(self, request: GenerationRequest) -> dict[str, Any]:
        """The JSON body for a request; extra sampling fields only when asked for (strict servers)."""
        body: dict[str, Any] = {"model": request.model, "stream": request.stream}
        if self._chat:
            if request.messages is not None:  # a conversation's history and its next turn
                body["messages"] = [{"role": r, "content": c} for r, c in request.messages]
            else:
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
            options: dict[str, bool] = {"include_usage": True}
            if self._target.chunk_usage:
                options["continuous_usage_stats"] = True
            body["stream_options"] = options
        if self._target.token_ids:
            body["return_token_ids"] = True
        return body

    async def generate(self, exchange: Exchange) -> None:
        """Send one request; the target's per-request deadline covers connect and response."""
        request = exchange.request
        pool = self._pool
        data = pool.request(request.request_id, _dumps(self.body(request)))
        handler = _ResponseHandler(exchange, self._chat, self._counter)
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

    __slots__ = (
        "_body",
        "_chat",
        "_counter",
        "_done",
        "_exchange",
        "_parser",
        "_received",
        "_running",
        "status",
    )

    def __init__(self, exchange: Exchange, chat: bool, counter: TokenCounter | None) -> None:
        self._exchange = exchange
        self._chat = chat
        self._counter = counter
        self._parser = SseParser() if exchange.request.stream else None
        self._body = bytearray()  # non-streamed or error bodies
        self._done = False
        self._received = False  # any body byte of a streamed 200
        self._running = 0  # the last running completion count (continuous usage stats)
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
        self._received = True
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
            self._chunk(chunk, now)
        return True

    def _chunks(self, chunks: list[Any], now: float) -> bool:
        """Account the parsed chunks of one read. Completion chunks of one token each (what
        vLLM streams: one choice with text, no usage, no token ids), when no tokenizer counts
        them and no token is carried, are noted in runs, in order with the others; each stays
        one chunk. Every other chunk goes through :meth:`_chunk`."""
        exchange = self._exchange
        plain = not self._chat and self._counter is None
        carried = exchange.tokens_without_text
        run = 0  # one-token completion chunks not yet noted
        for chunk in chunks:
            if type(chunk) is not dict or "error" in chunk:
                _note_run(exchange, now, run)
                return self._failed(chunk, now)
            if plain and not carried and chunk.get("usage") is None:
                choices = chunk.get("choices")
                if type(choices) is list and len(choices) == 1:
                    choice = choices[0]
                    if type(choice) is dict and "token_ids" not in choice:
                        text = choice.get("text")
                        if text and type(text) is str:
                            run += 1
                        finish = choice.get("finish_reason")
                        if finish:
                            exchange.finish_reason = finish
                        continue
            if run:
                _note_run(exchange, now, run)
                run = 0
            self._chunk(chunk, now)
            carried = exchange.tokens_without_text
        _note_run(exchange, now, run)
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
            message = f"HTTP {self.status}: {text[:_ERROR_BODY_CHARS]}"
            exchange.fail(now, status_kind(self.status), message)
            return
        if self._parser is None:
            self._whole(bytes(self._body), now)
            return
        for event in self._parser.close_bytes():
            if event == _DONE:
                self._done = True
        if not self._received:
            exchange.fail(now, ErrorKind.PROTOCOL, EMPTY_RESPONSE)
            return
        if not self._done:
            exchange.fail(now, ErrorKind.PROTOCOL, "stream ended without [DONE]")
            return
        exchange.succeed(now)

    def _whole(self, raw: bytes, now: float) -> None:
        exchange = self._exchange
        if not raw.strip():
            exchange.fail(now, ErrorKind.PROTOCOL, EMPTY_RESPONSE)
            return
        try:
            data = _loads(raw)
            choice = data["choices"][0]
            if not isinstance(choice, dict):
                raise TypeError(f"a choice is a {type(choice).__name__}, not an object")
            exchange.finish_reason = choice.get("finish_reason")
            _usage(data.get("usage"), exchange)
            if exchange.request.keep_text:
                message = choice.get("message") if self._chat else None
                text = message.get("content") if isinstance(message, dict) else choice.get("text")
                exchange.text_parts = [text] if isinstance(text, str) else []
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            exchange.fail(now, ErrorKind.PROTOCOL, f"malformed response: {exc!r}: {raw[:200]!r}")
            return
        if exchange.usage_output_tokens is None:
            exchange.fail(now, ErrorKind.PROTOCOL, "non-streaming response without usage counts")
            return
        exchange.succeed(now)

    def _chunk(self, chunk: dict[str, Any], now: float) -> None:
        """Account one streamed chunk (the rule of :mod:`servingperf.protocols.chunk_tokens`).

        The server's count of a chunk's tokens: the length of its ``token_ids``, else the rise
        of its running ``usage.completion_tokens`` (continuous usage stats). A chunk without a
        choice is the usage block: it gives the usage count, never tokens of a chunk."""
        exchange = self._exchange
        usage = chunk.get("usage")
        choices: Any = chunk.get("choices")
        if type(usage) is dict:
            _usage(usage, exchange)
        if not choices or type(choices) is not list:
            return
        chat = self._chat
        texts: list[str] = []
        content = False
        ids: int | None = None
        for choice in choices:
            if type(choice) is not dict:
                continue
            if chat:
                delta = choice.get("delta")
                if type(delta) is dict:
                    text = delta.get("content")
                    if text and type(text) is str:
                        texts.append(text)
                        content = True
                        if exchange.request.keep_text:
                            if exchange.text_parts is None:
                                exchange.text_parts = []
                            exchange.text_parts.append(text)
                    else:
                        text = delta.get("reasoning_content") or delta.get("reasoning")
                        if text and type(text) is str:
                            texts.append(text)
            else:
                text = choice.get("text")
                if text and type(text) is str:
                    texts.append(text)
                    content = True
            token_ids = choice.get("token_ids")
            if type(token_ids) is list:
                ids = (ids or 0) + len(token_ids)
            finish = choice.get("finish_reason")
            if finish:
                exchange.finish_reason = finish
        server = ids
        if type(usage) is dict:
            running = usage.get("completion_tokens")
            if type(running) is int and running >= self._running:
                if server is None:
                    server = running - self._running
                self._running = running
        note_chunk(exchange, now, "".join(texts), server, self._counter, content=content)


def _note_run(exchange: Exchange, now: float, run: int) -> None:
    """Note ``run`` chunks of one content token each, all arrived at ``now`` (what
    ``Exchange.token_chunk(now, 1)`` does ``run`` times, in one step)."""
    if not run:
        return
    if exchange.mono_first_token is None:
        exchange.mono_first_token = now
    if exchange.mono_first_content is None:
        exchange.mono_first_content = now
    if exchange.chunk_source is not _CHUNKS:
        exchange.note_source(_CHUNKS)
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

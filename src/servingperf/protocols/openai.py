"""OpenAI-compatible HTTP client (``/v1/completions`` and ``/v1/chat/completions``), as vLLM,
TGI, llama.cpp and KServe's OpenAI endpoints serve them.

Token chunks: a streamed chunk is token-bearing when its choice carries non-empty ``text``
(completions) or ``delta.content`` / ``delta.reasoning_content`` (chat). Role-only deltas, empty
strings and usage-only chunks are not: they never set the first-token time. Tokens per chunk come from
``continuous_usage_stats`` deltas when the server sends them, else one per token-bearing chunk (what
vLLM streams). The final usage chunk (``stream_options.include_usage``) gives N and input tokens.

Hot path. Generation requests go over a lean HTTP/1.1 client (:class:`_Connection`, keep-alive
connections pooled per client) whose parsing runs inside the transport's ``data_received``
callback: the arrival time of a chunk is read once per socket read, before any parsing, and
no coroutine switch happens per chunk. It speaks what generation endpoints answer: a status line,
headers, then a ``Content-Length``, chunked or close-delimited body, uncompressed (the request says
``Accept-Encoding: identity``). The probe (``GET /v1/models``) uses aiohttp.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from servingperf.errors import TargetError
from servingperf.model.records import ErrorKind, Exchange, GenerationRequest
from servingperf.model.specs import ProtocolKind
from servingperf.model.target import Target
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
_MAX_HEAD_BYTES = 64 * 1024
_MAX_ERROR_BODY_BYTES = 64 * 1024
_DONE = "[DONE]"


class _ProtocolViolation(Exception):
    """The server's bytes are not HTTP/1.1 as we read it (internal: becomes a failed request)."""


class OpenAIClient:
    """One client per model instance; safe to share between all users of that instance."""

    def __init__(self, target: Target) -> None:
        self._target = target
        self._chat = target.protocol is ProtocolKind.OPENAI_CHAT
        base = target.url.rstrip("/").removesuffix("/v1")
        self._base = base
        self._url = f"{base}/v1/chat/completions" if self._chat else f"{base}/v1/completions"
        self._session: aiohttp.ClientSession | None = None
        self._pool = _Pool(self._url, target)

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
        try:
            async with asyncio.timeout(self._target.request_timeout_s):
                await self._generate(exchange)
        except TimeoutError:
            exchange.fail(
                time.monotonic(),
                ErrorKind.TIMEOUT,
                f"no answer within {self._target.request_timeout_s:g} s",
            )

    async def _generate(self, exchange: Exchange) -> None:
        request = exchange.request
        payload = _dumps(self.body(request))
        handler = _ResponseHandler(exchange, self._chat)
        try:
            connection = await self._pool.acquire()
        except (OSError, ssl.SSLError) as exc:
            exchange.fail(time.monotonic(), ErrorKind.CONNECT, f"cannot connect: {_reason(exc)}")
            return
        reusable = False
        try:
            reusable = await connection.exchange(
                self._pool.request_head(request.request_id, len(payload)) + payload, handler
            )
        except _ProtocolViolation as exc:
            exchange.fail(time.monotonic(), ErrorKind.PROTOCOL, str(exc))
        except (ConnectionError, OSError) as exc:
            exchange.fail(
                time.monotonic(),
                ErrorKind.PROTOCOL,
                f"server closed the connection before the response ended: {_reason(exc)}",
            )
        finally:
            self._pool.release(connection, reusable)

    async def aclose(self) -> None:
        self._pool.close()
        if self._session is not None:
            await self._session.close()
            self._session = None


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


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
        exchange = self._exchange
        if self.status != 200 or self._parser is None:
            if self.status == 200 or len(self._body) < _MAX_ERROR_BODY_BYTES:
                self._body += data
            return True
        events = self._parser.feed(data)
        if len(events) > 1:  # several chunks in one read: parse them in one call
            payloads = [event for event in events if event != _DONE]
            if len(payloads) < len(events):
                self._done = True
            parsed = _parse_objects(payloads)
            if parsed is not None:
                for event, chunk in zip(payloads, parsed, strict=True):
                    if "error" in chunk:
                        exchange.fail(now, ErrorKind.PROTOCOL, f"error in stream: {event[:300]}")
                        return False
                    self._cumulative = self._chunk(chunk, now, self._cumulative)
                return True
            events = payloads  # something is off: one by one, to name the culprit
        for event in events:
            if event == _DONE:
                self._done = True
                continue
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
        for event in self._parser.close():
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


def _parse_objects(payloads: list[str]) -> list[dict[str, Any]] | None:
    """Each payload as a JSON object, parsed in one call; None unless every payload is exactly
    one object (then they are parsed one by one, so that the bad one is named)."""
    if not payloads:
        return []
    for payload in payloads:
        if payload[:1] != "{" or payload[-1:] != "}":
            return None
    try:
        parsed = _loads("[" + ",".join(payloads) + "]")
    except ValueError:
        return None
    if not isinstance(parsed, list) or len(parsed) != len(payloads):
        return None
    if not all(isinstance(item, dict) for item in parsed):
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


class _Pool:
    """Keep-alive connections to one URL: idle ones are reused, more are opened on demand."""

    def __init__(self, url: str, target: Target) -> None:
        parts = urlsplit(url)
        self._tls = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._tls else 80)
        path = parts.path or "/"
        headers = base_headers(target)
        headers.setdefault("Host", parts.netloc)
        headers["Accept-Encoding"] = "identity"
        headers["Connection"] = "keep-alive"
        fixed = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._head_prefix = f"POST {path} HTTP/1.1\r\n{fixed}".encode("latin-1")
        context = ssl_context(target) if self._tls else None
        if context is False:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif context is True:
            context = ssl.create_default_context()
        self._ssl: ssl.SSLContext | None = context if isinstance(context, ssl.SSLContext) else None
        self._idle: list[_Connection] = []
        self._closed = False

    def request_head(self, request_id: str, length: int) -> bytes:
        return self._head_prefix + (
            f"X-Request-Id: {request_id}\r\nContent-Length: {length}\r\n\r\n".encode("latin-1")
        )

    async def acquire(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if connection.usable:
                return connection
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            _Connection,
            self._host,
            self._port,
            ssl=self._ssl,
            server_hostname=self._host if self._ssl else None,
        )
        return connection

    def release(self, connection: _Connection, reusable: bool) -> None:
        if reusable and connection.usable and not self._closed:
            self._idle.append(connection)
        else:
            connection.close()

    def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()


_HEAD, _BODY_LENGTH, _BODY_CHUNKED, _BODY_UNTIL_CLOSE, _IDLE = range(5)


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection, one request at a time; parsing happens in ``data_received``."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._state = _IDLE
        self._buffer = b""
        self._remaining = 0  # body bytes left (Content-Length) or in the current chunk (+2)
        self._handler: _ResponseHandler | None = None
        self._waiter: asyncio.Future[bool] | None = None
        self._keep_alive = True
        self._failed = False

    @property
    def usable(self) -> bool:
        transport = self._transport
        return transport is not None and not transport.is_closing() and self._state == _IDLE

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def exchange(self, data: bytes, handler: _ResponseHandler) -> bool:
        """Send one request and read its response into ``handler``; True if reusable after."""
        transport = self._transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("connection closed")
        self._handler = handler
        self._state = _HEAD
        self._buffer = b""
        self._keep_alive = True
        self._failed = False
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        handler.sent(time.monotonic())
        transport.write(data)
        try:
            return await waiter
        except asyncio.CancelledError:
            self._state = _IDLE  # a half-read response: the connection cannot be reused
            self.close()
            raise
        finally:
            self._handler = None
            self._waiter = None

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        handler = self._handler
        if handler is None:  # bytes nobody asked for: the connection is unusable
            self.close()
            return
        try:
            self._receive(data, now, handler)
        except _ProtocolViolation as exc:
            self._finish_error(exc)
        except Exception as exc:  # hostile bytes that slipped past a check: a failed request
            self._finish_error(_ProtocolViolation(f"unreadable response: {exc!r}"))

    def _receive(self, data: bytes, now: float, handler: _ResponseHandler) -> None:
        state = self._state
        if state == _HEAD:
            buffer = self._buffer + data
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD_BYTES:
                    raise _ProtocolViolation("response head longer than 64 KiB")
                self._buffer = buffer
                return
            self._head(buffer[:end], handler)
            self._buffer = b""
            data = buffer[end + 4 :]
            state = self._state
            if state == _BODY_LENGTH and self._remaining == 0:
                self._finish(now, handler)
                return
        if state == _BODY_LENGTH:
            take = data[: self._remaining]
            self._remaining -= len(take)
            if take and not handler.body(take, now):
                self._fail_stream()
                return
            if self._remaining == 0:
                self._finish(now, handler)
        elif state == _BODY_CHUNKED:
            self._chunked(data, now, handler)
        elif state == _BODY_UNTIL_CLOSE and data and not handler.body(data, now):
            self._fail_stream()

    def _head(self, head: bytes, handler: _ResponseHandler) -> None:
        lines = head.decode("latin-1").split("\r\n")
        status_line = lines[0].split(" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith("HTTP/1."):
            raise _ProtocolViolation(f"not an HTTP/1.x response: {lines[0][:100]!r}")
        try:
            handler.status = int(status_line[1])
        except ValueError as exc:
            raise _ProtocolViolation(f"bad status line: {lines[0][:100]!r}") from exc
        length = None
        chunked = False
        self._keep_alive = status_line[0] != "HTTP/1.0"
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                try:
                    length = int(value)
                except ValueError as exc:
                    raise _ProtocolViolation(f"bad Content-Length: {value.strip()!r}") from exc
            elif name == "transfer-encoding":
                chunked = "chunked" in value.lower()
            elif name == "connection":
                self._keep_alive = "close" not in value.lower()
            elif name == "content-encoding" and value.strip().lower() not in ("", "identity"):
                raise _ProtocolViolation(f"compressed response ({value.strip()}) not supported")
        if chunked:
            self._state, self._remaining = _BODY_CHUNKED, 0
        elif length is not None:
            self._state, self._remaining = _BODY_LENGTH, length
        else:
            self._state, self._keep_alive = _BODY_UNTIL_CLOSE, False

    def _chunked(self, data: bytes, now: float, handler: _ResponseHandler) -> None:
        buffer = self._buffer + data if self._buffer else data
        find = buffer.find
        position = 0
        size = len(buffer)
        remaining = self._remaining  # data bytes left in the current chunk
        pieces: list[bytes] = []
        last = False
        while True:
            if remaining:
                stop = position + remaining
                if stop >= size:
                    pieces.append(buffer[position:])
                    remaining = stop - size
                    position = size
                    break
                pieces.append(buffer[position:stop])
                position = stop
                remaining = 0
            line_end = find(b"\r\n", position)
            if line_end < 0:
                break
            if line_end == position:  # the CRLF closing the previous chunk
                position += 2
                continue
            try:
                chunk_size = int(buffer[position:line_end], 16)
            except ValueError:
                chunk_size = _chunk_size(buffer[position:line_end])
            position = line_end + 2
            if chunk_size == 0:  # the last chunk (these servers send no trailers)
                last = True
                break
            remaining = chunk_size
        self._remaining = remaining
        self._buffer = b"" if last else buffer[position:]
        if pieces:
            body = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            if not handler.body(body, now):
                self._fail_stream()
                return
        if last:
            self._finish(now, handler)

    def _finish(self, now: float, handler: _ResponseHandler) -> None:
        handler.end(now)
        self._state = _IDLE
        if not self._keep_alive:
            self.close()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(self._keep_alive)

    def _fail_stream(self) -> None:
        """The handler failed the request mid-body: drop the connection, wake the sender."""
        self._state = _IDLE
        self.close()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(False)

    def _finish_error(self, exc: BaseException) -> None:
        self._state = _IDLE
        self.close()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        handler = self._handler
        waiter = self._waiter
        if waiter is None or waiter.done() or handler is None:
            return
        if self._state == _BODY_UNTIL_CLOSE:
            self._state = _IDLE
            handler.end(time.monotonic())
            waiter.set_result(False)
            return
        self._state = _IDLE
        waiter.set_exception(exc or ConnectionResetError("server closed the connection"))


def _chunk_size(line: bytes) -> int:
    """A chunk-size line with extensions or blanks (``1a;name=value``), or a protocol error."""
    text = line.split(b";", 1)[0].strip()
    try:
        return int(text, 16)
    except ValueError as exc:
        raise _ProtocolViolation(f"bad chunk size {line[:20]!r}") from exc


def create(target: Target) -> OpenAIClient:
    return OpenAIClient(target)

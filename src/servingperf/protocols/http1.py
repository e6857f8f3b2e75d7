"""A lean HTTP/1.1 client for the generation hot path: keep-alive connections, one request at a
time each, response framing parsed by ``httptools`` (llhttp, uvicorn's parser).

Terms. A *connection* (:class:`Http1Connection`) is an ``asyncio.Protocol``: its parsing runs
inside the transport's ``data_received`` callback, so the arrival time of the bytes of one socket
read is taken once, before any parsing, and no coroutine switch happens per chunk. A *response
handler* (:class:`ResponseHandler`) receives, per read, all the body bytes that read carried
(HTTP chunks already removed) with that read's arrival time. A *deadline* is on the event loop's
clock (``loop.time()``); the pool's *sweep*, one timer every ``SWEEP_S`` while requests are in
flight, fails the exchanges past theirs (so a timeout fires at most ``SWEEP_S`` late): a timer
per request costs more than the rest of the request's bookkeeping. The *pool*
(:class:`Http1Pool`) reuses idle connections to one URL and opens more on demand.

What it speaks: a status line, headers, then a ``Content-Length``, chunked or close-delimited
body, uncompressed (requests say ``Accept-Encoding: identity``; a compressed answer is refused).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from typing import Protocol
from urllib.parse import urlsplit

import httptools

SWEEP_S = 0.05
_WATCHED_LENGTHS = frozenset(  # the lengths of the header names we read
    len(name) for name in (b"content-length", b"transfer-encoding", b"content-encoding")
)


class ProtocolViolation(Exception):
    """The server's bytes are not HTTP/1.1 as we read it (becomes a failed request)."""


class ResponseHandler(Protocol):
    """Receives one response as it arrives; never awaits."""

    status: int

    def sent(self, now: float) -> None:
        """The request's first byte is about to be handed to the transport (``now``)."""

    def body(self, data: bytes, now: float) -> bool:
        """Body bytes of one read, arrived at ``now``; False once the request has failed."""

    def end(self, now: float) -> None:
        """The response ended at ``now`` (the arrival of its last bytes)."""


class Http1Pool:
    """Keep-alive connections to one URL: idle ones are reused, more are opened on demand."""

    def __init__(self, url: str, headers: dict[str, str], tls: ssl.SSLContext | None) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        headers = dict(headers)
        headers.setdefault("Host", parts.netloc)
        headers["Accept-Encoding"] = "identity"
        headers["Connection"] = "keep-alive"
        fixed = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._head_prefix = f"POST {parts.path or '/'} HTTP/1.1\r\n{fixed}".encode("latin-1")
        self._ssl = tls
        self._idle: list[Http1Connection] = []
        self._busy: dict[Http1Connection, float] = {}  # connection -> its exchange's deadline
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False

    def request(self, request_id: str, payload: bytes) -> bytes:
        """The whole POST request: fixed head, the request's id and length, then ``payload``."""
        return b"%sX-Request-Id: %s\r\nContent-Length: %d\r\n\r\n%s" % (
            self._head_prefix,
            request_id.encode("latin-1"),
            len(payload),
            payload,
        )

    def idle(self) -> Http1Connection | None:
        """An idle, still open connection, if any (no await: the common case)."""
        idle = self._idle
        while idle:
            connection = idle.pop()
            if connection.usable:
                return connection
        return None

    def watch(self, connection: Http1Connection, deadline: float) -> None:
        """Fail ``connection``'s exchange with ``TimeoutError`` once past ``deadline``
        (``loop.time()``), until it is released."""
        self._busy[connection] = deadline
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(SWEEP_S, self._expire)

    def _expire(self) -> None:
        busy = self._busy
        if not busy:
            self._sweep = None
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        for connection in [c for c, deadline in busy.items() if deadline <= now]:
            connection.expire()
        self._sweep = loop.call_later(SWEEP_S, self._expire)

    async def connect(self) -> Http1Connection:
        """A new connection (bound it with the request's deadline: it may hang)."""
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            Http1Connection,
            self._host,
            self._port,
            ssl=self._ssl,
            server_hostname=self._host if self._ssl else None,
        )
        return connection

    def release(self, connection: Http1Connection, reusable: bool) -> None:
        self._busy.pop(connection, None)
        if reusable and connection.usable and not self._closed:
            self._idle.append(connection)
        else:
            connection.close()

    def close(self) -> None:
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        while self._idle:
            self._idle.pop().close()


class Http1Connection(asyncio.Protocol):
    """One HTTP/1.1 connection, one request at a time; parsing happens in ``data_received``."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpResponseParser(self)
        self._handler: ResponseHandler | None = None
        self._waiter: asyncio.Future[bool] | None = None
        self._pieces: list[bytes] = []  # body bytes of the current read
        self._headers_done = False
        self._complete = False
        self._framed = False  # Content-Length or chunked (else the body ends at close)
        self._keep_alive = True
        self._error: ProtocolViolation | None = None

    @property
    def usable(self) -> bool:
        transport = self._transport
        return transport is not None and not transport.is_closing() and self._handler is None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def exchange(self, data: bytes, handler: ResponseHandler) -> bool:
        """Send one request, read its response into ``handler``; True if reusable after.

        Raises :class:`ProtocolViolation`, ``ConnectionError`` (the server closed early), or
        ``TimeoutError`` (:meth:`expire`); either way the connection is dropped.
        """
        transport = self._transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("connection closed")
        self._handler = handler
        self._headers_done = self._complete = self._framed = False
        self._keep_alive = True
        self._error = None
        waiter: asyncio.Future[bool] = self._loop.create_future()
        self._waiter = waiter
        handler.sent(time.monotonic())
        transport.write(data)
        try:
            return await waiter
        except asyncio.CancelledError:
            self.close()  # a half-read response: the connection cannot be reused
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
        error: ProtocolViolation | None = None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            error = ProtocolViolation("unexpected protocol upgrade")
        except httptools.HttpParserError as exc:
            error = self._error or ProtocolViolation(f"malformed HTTP response: {exc}")
        pieces = self._pieces
        if pieces:
            body = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            pieces.clear()
            try:
                accepted = handler.body(body, now)
            except Exception as exc:  # hostile bytes that slipped past a check: a failed request
                self._wake_error(ProtocolViolation(f"unreadable response: {exc!r}"))
                return
            if not accepted:
                self._wake(False)
                return
        if self._complete:
            try:
                handler.end(now)
            except Exception as exc:  # as above
                self._wake_error(ProtocolViolation(f"unreadable response: {exc!r}"))
                return
            self._wake(self._keep_alive and error is None)  # bytes after the end: drop it
        elif error is not None:
            self._wake_error(error)

    # httptools callbacks (called from feed_data)

    def on_message_begin(self) -> None:
        if self._complete:  # bytes after the end of the response: never reuse the connection
            self._keep_alive = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) not in _WATCHED_LENGTHS:  # most headers, cheaply
            return
        lowered = name.lower()
        if lowered == b"content-length" or lowered == b"transfer-encoding":
            self._framed = True
        elif lowered == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
            self._error = ProtocolViolation(
                f"compressed response ({value.strip().decode('latin-1')}) not supported"
            )
            raise self._error

    def on_headers_complete(self) -> None:
        parser = self._parser
        handler = self._handler
        if self._complete or handler is None:
            self._error = ProtocolViolation("bytes after the end of the response")
            raise self._error
        version = parser.get_http_version()
        if not version.startswith("1."):
            self._error = ProtocolViolation(f"not an HTTP/1.x response: HTTP/{version}")
            raise self._error
        handler.status = parser.get_status_code()
        self._keep_alive = parser.should_keep_alive()
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._pieces.append(body)

    def on_message_complete(self) -> None:
        self._complete = True

    # waking the sender

    def _wake(self, reusable: bool) -> None:
        if not reusable:
            self.close()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(reusable)

    def _wake_error(self, exc: BaseException) -> None:
        self.close()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def expire(self) -> None:
        """The exchange's deadline passed: fail it with ``TimeoutError``, drop the connection."""
        self._wake_error(TimeoutError())

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        handler = self._handler
        waiter = self._waiter
        if waiter is None or waiter.done() or handler is None:
            return
        if self._headers_done and not self._framed and not self._complete:
            handler.end(time.monotonic())  # a close-delimited body ends here
            waiter.set_result(False)
            return
        waiter.set_exception(exc or ConnectionResetError("server closed the connection"))

"""A loopback sink: an OpenAI-completions server that answers at once, to measure the client.

The start-of-run self-calibration (:mod:`servingperf.scenarios.calibration`) loads it with the
real client and engine to learn what one load process can issue when the server costs nothing.
It runs in a child process (its own core, so that the client, not the sink, is the bottleneck),
speaks just enough HTTP/1.1 (keep-alive, Content-Length request bodies, a chunked SSE response)
and writes the whole stream at once: ``max_tokens`` one-token chunks, a usage chunk and
``[DONE]``. The client then reads many chunks per socket read, its cheapest case: the ceiling it
gives is an upper bound on what the client can issue.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import re
import socket
from collections.abc import Callable
from multiprocessing.connection import Connection

_HEAD_END = b"\r\n\r\n"
_LENGTH = re.compile(rb"content-length:\s*(\d+)")
_MAX_TOKENS = re.compile(rb'"max_tokens"\s*:\s*(\d+)')
_HEADERS = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
    b"Connection: keep-alive\r\n\r\n"
)
_TOKEN = b'data: {"choices":[{"index":0,"text":"x","finish_reason":null}]}\n\n'
_MAX_STREAM_TOKENS = 4096


def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _tail(tokens: int) -> bytes:
    usage = (
        b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":%d,'
        b'"total_tokens":%d}}\n\ndata: [DONE]\n\n' % (tokens, tokens + 1)
    )
    return _chunk(usage) + b"0\r\n\r\n"


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self._buffer = bytearray()
        self._transport: asyncio.WriteTransport | None = None
        self._token = _chunk(_TOKEN)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a stream transport (TCP)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(_HEAD_END)
            if end < 0:
                return
            head = bytes(self._buffer[:end]).lower()
            match = _LENGTH.search(head)
            length = int(match.group(1)) if match else 0
            if len(self._buffer) < end + 4 + length:
                return
            body = bytes(self._buffer[end + 4 : end + 4 + length])
            del self._buffer[: end + 4 + length]
            wanted = _MAX_TOKENS.search(body)
            tokens = min(int(wanted.group(1)) if wanted else 16, _MAX_STREAM_TOKENS)
            self._respond(max(1, tokens))

    def _respond(self, tokens: int) -> None:
        transport = self._transport
        if transport is None:
            return
        transport.write(_HEADERS + self._token * tokens + _tail(tokens))


def _serve(sock: socket.socket, ready: Connection) -> None:
    """The sink process: serve on ``sock`` until killed (its parent closes it)."""
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency where it exists
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    factory: Callable[[], asyncio.Protocol] = _Connection
    loop.run_until_complete(loop.create_server(factory, sock=sock, backlog=1024))
    ready.send(True)
    loop.run_forever()


class Sink:
    """The sink on 127.0.0.1 (an ephemeral port) in a child process, until :meth:`close`; the
    child is a daemon process, so it never outlives this one."""

    def __init__(self, start_timeout_s: float = 20.0) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        self.port: int = sock.getsockname()[1]
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_serve, args=(sock, child), name="calibration-sink", daemon=True
        )
        try:
            self._process.start()
            if not parent.poll(start_timeout_s):
                raise RuntimeError(f"the calibration sink did not start within {start_timeout_s} s")
            parent.recv()
        except BaseException:
            self.close()
            raise
        finally:
            sock.close()
            parent.close()
            child.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
        self._process.join(10.0)

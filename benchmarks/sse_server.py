"""A minimal OpenAI-compatible SSE server for the client benchmarks (not part of servingperf).

Why not the emulator: the emulator's batching model gives every running sequence its token at the
same step end, so it cannot produce the fidelity workload the issue states (each stream on its own
clock: TTFT 100 ms, then 10-20 ms between tokens), and its aiohttp front end costs more CPU per
chunk than a bare asyncio protocol, which matters when one core must outrun a client on the other.
This server is uvloop + ``asyncio.Protocol`` with a hand-rolled HTTP/1.1 parser (keep-alive,
Content-Length bodies, chunked SSE responses), several processes on one port (SO_REUSEPORT).

Timing per request: wait ``ttft_s``, write the first token chunk, then each next one after a gap
drawn uniformly from [gap_min_s, gap_max_s]; ``--instant`` writes the whole stream in one write.
Output length is the request's ``max_tokens`` (default 16). Ground truth: one JSON line per
request (the emulator's :class:`GroundTruthRecord` format, so ``tests/support/ground_truth.py``
reads it) to ``<ground_truth>.<pid>``; times are ``time.monotonic()`` right after the write
returned, as in the emulator. ``GET /stats`` answers {"completed": N, "tokens": T, "first": t,
"last": t} for this process (the benchmark sums over processes through the files instead).

Run: ``python benchmarks/sse_server.py --port 8100 --processes 1 --cpus 1 --instant``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import IO

_HEAD_END = b"\r\n\r\n"
_SSE_HEADERS = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n"
)


@dataclass(slots=True)
class Options:
    ttft_s: float = 0.1
    gap_min_s: float = 0.010
    gap_max_s: float = 0.020
    instant: bool = False
    ground_truth: IO[str] | None = None
    seed: int = 0


@dataclass(slots=True)
class Truth:
    request_id: str
    model: str
    endpoint: str
    streamed: bool
    arrival: float
    admitted: float | None = None
    first_token_written: float | None = None
    token_written: list[float] = field(default_factory=list)
    end: float | None = None
    prompt_tokens: int = 1
    output_tokens: int = 0
    finish_reason: str | None = None
    status: int = 200
    outcome: str = "ok"

    def line(self) -> str:
        return json.dumps(
            {name: getattr(self, name) for name in self.__slots__}, separators=(",", ":")
        )


def _chunk(payload: bytes) -> bytes:
    """One HTTP chunk carrying one SSE event."""
    event = b"data: " + payload + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


def _token_event(rid: str, model: str, chat: bool, last: bool) -> bytes:
    finish = '"length"' if last else "null"
    if chat:
        body = (
            f'{{"id":"chatcmpl-{rid}","object":"chat.completion.chunk","created":0,'
            f'"model":"{model}","choices":[{{"index":0,"delta":{{"content":" tok"}},'
            f'"finish_reason":{finish}}}]}}'
        )
    else:
        body = (
            f'{{"id":"cmpl-{rid}","object":"text_completion","created":0,"model":"{model}",'
            f'"choices":[{{"index":0,"text":" tok","logprobs":null,"finish_reason":{finish}}}]}}'
        )
    return _chunk(body.encode())


def _tail(rid: str, model: str, chat: bool, tokens: int) -> bytes:
    kind = "chat.completion.chunk" if chat else "text_completion"
    prefix = "chatcmpl" if chat else "cmpl"
    usage = (
        f'{{"id":"{prefix}-{rid}","object":"{kind}","created":0,"model":"{model}","choices":[],'
        f'"usage":{{"prompt_tokens":1,"completion_tokens":{tokens},'
        f'"total_tokens":{tokens + 1}}}}}'
    )
    return _chunk(usage.encode()) + _chunk(b"[DONE]") + b"0\r\n\r\n"


class Handler(asyncio.Protocol):
    """One connection; requests are served one after the other (no pipelining)."""

    def __init__(self, options: Options, stats: dict[str, float]) -> None:
        self._options = options
        self._stats = stats
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._busy = False
        self._rng = random.Random(options.seed ^ id(self))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._next()

    def _next(self) -> None:
        if self._busy:
            return
        end = self._buffer.find(_HEAD_END)
        if end < 0:
            return
        head = self._buffer[:end].decode("latin-1")
        lines = head.split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if len(self._buffer) < end + 4 + length:
            return
        body = self._buffer[end + 4 : end + 4 + length]
        self._buffer = self._buffer[end + 4 + length :]
        arrival = time.monotonic()
        if method == "GET":
            self._get(path)
            self._next()
            return
        try:
            request = json.loads(body) if body else {}
        except ValueError:
            request = {}
        rid = headers.get("x-request-id") or f"r{int(arrival * 1e9)}"
        self._busy = True
        asyncio.get_running_loop().create_task(self._generate(path, request, rid, arrival))

    def _get(self, path: str) -> None:
        if path.startswith("/v1/models"):
            body = b'{"object":"list","data":[{"id":"m","object":"model","owned_by":"bench"}]}'
        elif path.startswith("/stats"):
            body = json.dumps(self._stats).encode()
        else:
            body = b""
        self._write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)
        )

    def _write(self, data: bytes) -> bool:
        if self._transport is None or self._transport.is_closing():
            return False
        self._transport.write(data)
        return True

    async def _generate(
        self, path: str, request: dict[str, object], rid: str, arrival: float
    ) -> None:
        options = self._options
        chat = "chat" in path
        model = str(request.get("model") or "m")
        tokens = int(request.get("max_tokens") or request.get("max_completion_tokens") or 16)  # type: ignore[call-overload]
        stream = bool(request.get("stream", False))
        truth = Truth(rid, model, path, stream, arrival, admitted=arrival)
        try:
            if not stream:
                await self._whole(truth, chat, model, tokens)
            elif options.instant:
                events = [_token_event(rid, model, chat, i == tokens - 1) for i in range(tokens)]
                ok = self._write(
                    _SSE_HEADERS
                    + b"X-Request-Id: "
                    + rid.encode()
                    + b"\r\n\r\n"
                    + b"".join(events)
                    + _tail(rid, model, chat, tokens)
                )
                now = time.monotonic()
                truth.first_token_written = now
                truth.token_written = [now] * tokens
                truth.output_tokens = tokens if ok else 0
                truth.end = now
            else:
                await self._timed(truth, chat, model, tokens)
        finally:
            if truth.end is None:
                truth.outcome = "disconnected"
            truth.finish_reason = "length" if truth.outcome == "ok" else None
            self._done(truth)
            self._busy = False
            if self._transport is not None:
                self._next()

    async def _whole(self, truth: Truth, chat: bool, model: str, tokens: int) -> None:
        await asyncio.sleep(self._options.ttft_s if not self._options.instant else 0)
        text = " tok" * tokens
        if chat:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "length",
            }
        else:
            choice = {"index": 0, "text": text, "finish_reason": "length"}
        body = json.dumps(
            {
                "id": f"cmpl-{truth.request_id}",
                "object": "text_completion",
                "model": model,
                "choices": [choice],
                "usage": {
                    "prompt_tokens": 1,
                    "completion_tokens": tokens,
                    "total_tokens": tokens + 1,
                },
            }
        ).encode()
        self._write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)
        )
        now = time.monotonic()
        truth.first_token_written = now
        truth.token_written = [now]
        truth.output_tokens = tokens
        truth.end = now

    async def _timed(self, truth: Truth, chat: bool, model: str, tokens: int) -> None:
        options = self._options
        loop = asyncio.get_running_loop()
        rid = truth.request_id
        if not self._write(_SSE_HEADERS + b"X-Request-Id: " + rid.encode() + b"\r\n\r\n"):
            return
        due = truth.arrival + options.ttft_s
        for index in range(tokens):
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if not self._write(_token_event(rid, model, chat, index == tokens - 1)):
                return
            now = time.monotonic()
            if index == 0:
                truth.first_token_written = now
            truth.token_written.append(now)
            truth.output_tokens += 1
            due += self._rng.uniform(options.gap_min_s, options.gap_max_s)
        if self._write(_tail(rid, model, chat, tokens)):
            truth.end = time.monotonic()

    def _done(self, truth: Truth) -> None:
        stats = self._stats
        if truth.outcome == "ok":
            stats["completed"] += 1
            stats["tokens"] += truth.output_tokens
            if not stats["first"]:
                stats["first"] = truth.arrival
            stats["last"] = truth.end or 0.0
        if self._options.ground_truth is not None:
            self._options.ground_truth.write(truth.line() + "\n")


async def _serve(host: str, port: int, options: Options) -> None:
    loop = asyncio.get_running_loop()
    stats: dict[str, float] = {"completed": 0, "tokens": 0, "first": 0.0, "last": 0.0}
    server = await loop.create_server(
        lambda: Handler(options, stats), host, port, reuse_port=True, backlog=4096
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"sse_server pid={os.getpid()} listening on {host}:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        server.close()
        if options.ground_truth is not None:
            options.ground_truth.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--cpus", default="", help="CPU list the processes run on, e.g. 1")
    parser.add_argument("--ttft", type=float, default=0.1)
    parser.add_argument("--gap-min", type=float, default=0.010)
    parser.add_argument("--gap-max", type=float, default=0.020)
    parser.add_argument("--instant", action="store_true")
    parser.add_argument("--ground-truth", default="")
    args = parser.parse_args(argv)
    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    children = []
    for _ in range(args.processes - 1):
        pid = os.fork()  # before any event loop or thread exists: safe
        if pid == 0:
            children = []
            break
        children.append(pid)
    truth = None
    if args.ground_truth:
        truth = open(f"{args.ground_truth}.{os.getpid()}", "w", buffering=1 << 20)  # noqa: SIM115
    options = Options(args.ttft, args.gap_min, args.gap_max, args.instant, truth, os.getpid())
    import uvloop

    try:
        uvloop.run(_serve(args.host, args.port, options))
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
            except OSError:
                pass
        if truth is not None:
            truth.close()
    sys.exit(0)


if __name__ == "__main__":
    main()

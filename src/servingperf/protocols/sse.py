"""Incremental Server-Sent Events parsing, as the WHATWG spec frames it, for streamed responses.

An *event* is the ``data`` of one blank-line-terminated block (several ``data:`` lines joined by
``\\n``). Comments (``:``), ``event:``/``id:``/``retry:`` fields and a UTF-8 BOM are ignored. Bytes may
arrive split anywhere, including inside a UTF-8 sequence or a ``\\r\\n``; ``feed`` keeps the tail.

The parser works on bytes: :meth:`SseParser.feed_bytes` gives each event's payload undecoded (a
JSON parser reads UTF-8 bytes directly), :meth:`SseParser.feed` decodes them. A *JSON batch* is
what :meth:`SseParser.feed_json_batch` returns for the shape servers send (LF framing, one
``data: {...}`` line per event): the complete events of a read as one JSON array text, built by
byte replacement, so that one JSON call parses them all.
"""

from __future__ import annotations

from dataclasses import dataclass

_BOM = b"\xef\xbb\xbf"
_DONE_TAIL = b"\n\ndata: [DONE]"
_SEPARATOR = b"\n\ndata: "
_BOUNDARY = b"}\n\ndata: {"  # between two events of a batch
_SHRINK = len(_BOUNDARY) - len(b"},{")


@dataclass(frozen=True, slots=True)
class JsonBatch:
    """The complete events of one read as the JSON array text ``[e1,e2,...]``."""

    array: bytes
    events: int  # how many events the array holds (each one ``{...}``)
    done: bool  # the ``[DONE]`` event followed them
    blocks: bytes  # the events as they came, ``data: {...}\n\ndata: {...}``

    def payloads(self) -> list[bytes]:
        """The events one by one (to find the one that is not JSON)."""
        return self.blocks[6:].split(_SEPARATOR)


class SseParser:
    """Feed raw bytes, get complete event payloads back. Pure: no I/O, no clock."""

    __slots__ = ("_buffer", "_data", "_has_data", "_started")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []
        self._has_data = False
        self._started = False

    def feed(self, chunk: bytes) -> list[str]:
        """Complete events' payloads as text (invalid UTF-8 replaced)."""
        return [event.decode("utf-8", errors="replace") for event in self.feed_bytes(chunk)]

    def feed_json_batch(self, chunk: bytes) -> JsonBatch | None:
        """The fast path: when nothing is pending and every complete block of ``chunk`` is one
        ``data: {...}`` line (LF framing; a final ``data: [DONE]`` allowed), consume ``chunk``
        and return its complete events as one JSON array text; else consume nothing and return
        None (use :meth:`feed_bytes`). An event ``{...}`` holds no newline, so the boundary
        ``}\\n\\ndata: {`` cannot occur inside one and replacing it by ``},{`` is exact; a newline
        left after the replacement means some block is not of that shape."""
        if self._buffer or self._has_data or not chunk.startswith(b"data: {"):
            return None
        end = chunk.rfind(b"\n\n")
        if end < 0:
            return None
        complete = chunk[:end]
        done = complete.endswith(_DONE_TAIL)
        if done:
            complete = complete[: -len(_DONE_TAIL)]
        if not complete.endswith(b"}"):
            return None
        objects = complete[6:]
        joined = objects.replace(_BOUNDARY, b"},{")
        if b"\n" in joined or b"\r" in joined:  # a block of other lines, or other framing
            return None
        self._buffer = chunk[end + 2 :]
        self._started = True  # no BOM: the chunk starts with ``data``
        events = (len(objects) - len(joined)) // _SHRINK + 1
        return JsonBatch(b"[" + joined + b"]", events, done, complete)

    def feed_bytes(self, chunk: bytes) -> list[bytes]:
        """Complete events' payloads, undecoded; a partial block is kept for the next feed."""
        buffer = self._buffer + chunk if self._buffer else chunk
        if not self._started and buffer:
            if len(buffer) < 3 and _BOM.startswith(buffer):
                self._buffer = buffer
                return []
            buffer = buffer.removeprefix(_BOM)
            self._started = True
        if not self._has_data and b"\r" not in buffer:
            return self._feed_lf(buffer)
        events: list[bytes] = []
        start = 0
        length = len(buffer)
        while start < length:
            newline = buffer.find(b"\n", start)
            carriage = buffer.find(b"\r", start, newline if newline >= 0 else length)
            if carriage >= 0:
                end = carriage
                if carriage + 1 == length:  # a lone \r at the end may be half of \r\n: wait
                    break
                step = 2 if buffer[carriage + 1 : carriage + 2] == b"\n" else 1
            elif newline >= 0:
                end, step = newline, 1
            else:
                break
            self._line(buffer[start:end], events)
            start = end + step
        self._buffer = buffer[start:]
        return events

    def _feed_lf(self, buffer: bytes) -> list[bytes]:
        """Fast path for LF-only framing (what servers send): whole blocks split at once; a
        block that is not a single ``data: `` line goes through the general line rules."""
        blocks = buffer.split(b"\n\n")
        self._buffer = blocks.pop()  # an incomplete block, kept whole for the next feed
        events: list[bytes] = []
        for block in blocks:
            if block.startswith(b"data: ") and b"\n" not in block:
                events.append(block[6:])
                continue
            for line in block.split(b"\n"):
                self._line(line, events)
            self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[bytes]) -> None:
        if not line:
            if self._has_data:
                events.append(b"\n".join(self._data))
            self._data = []
            self._has_data = False
            return
        if line.startswith(b":"):
            return
        name, sep, value = line.partition(b":")
        if not sep:
            name, value = line, b""
        elif value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            self._data.append(value)
            self._has_data = True

    def close(self) -> list[str]:
        """End of stream: a final event not followed by a blank line is dispatched (lenient)."""
        return [event.decode("utf-8", errors="replace") for event in self.close_bytes()]

    def close_bytes(self) -> list[bytes]:
        """:meth:`close`, undecoded."""
        events = self.feed_bytes(b"\n\n") if (self._buffer or self._has_data) else []
        self._buffer = b""
        return events

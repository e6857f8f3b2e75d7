"""Incremental Server-Sent Events parsing, as the WHATWG spec frames it, for streamed responses.

An *event* is the ``data`` of one blank-line-terminated block (several ``data:`` lines joined by
``\\n``). Comments (``:``), ``event:``/``id:``/``retry:`` fields and a UTF-8 BOM are ignored. Bytes may
arrive split anywhere, including inside a UTF-8 sequence or a ``\\r\\n``; ``feed`` keeps the tail.
"""

from __future__ import annotations


class SseParser:
    """Feed raw bytes, get complete event payloads back. Pure: no I/O, no clock."""

    __slots__ = ("_buffer", "_data", "_has_data", "_started")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._has_data = False
        self._started = False

    def feed(self, chunk: bytes) -> list[str]:
        buffer = self._buffer + chunk
        if not self._started and buffer:
            if len(buffer) < 3 and b"\xef\xbb\xbf".startswith(buffer):
                self._buffer = buffer
                return []
            buffer = buffer.removeprefix(b"\xef\xbb\xbf")
            self._started = True
        if not self._has_data and b"\r" not in buffer:
            return self._feed_lf(buffer)
        events: list[str] = []
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

    def _feed_lf(self, buffer: bytes) -> list[str]:
        """Fast path for LF-only framing (what servers send): whole blocks split at once; a
        block that is not a single ``data: `` line goes through the general line rules."""
        blocks = buffer.split(b"\n\n")
        self._buffer = blocks.pop()  # an incomplete block, kept whole for the next feed
        events: list[str] = []
        for block in blocks:
            if block.startswith(b"data: ") and b"\n" not in block:
                events.append(block[6:].decode("utf-8", errors="replace"))
                continue
            for line in block.split(b"\n"):
                self._line(line, events)
            self._line(b"", events)
        return events

    def _line(self, raw: bytes, events: list[str]) -> None:
        if not raw:
            if self._has_data:
                events.append("\n".join(self._data))
            self._data = []
            self._has_data = False
            return
        line = raw.decode("utf-8", errors="replace")
        if line.startswith(":"):
            return
        name, sep, value = line.partition(":")
        if not sep:
            name, value = line, ""
        elif value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._has_data = True

    def close(self) -> list[str]:
        """End of stream: a final event not followed by a blank line is dispatched (lenient)."""
        events = self.feed(b"\n\n") if (self._buffer or self._has_data) else []
        self._buffer = b""
        return events

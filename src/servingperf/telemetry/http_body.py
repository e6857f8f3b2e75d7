"""Reading a whole HTTP response body, with a cap.

aiohttp's ``StreamReader.read(n)`` returns what is buffered, up to ``n`` bytes, as soon as there
is any: a body that arrives in several pieces (a large ``/metrics`` page, a Prometheus answer)
comes back cut at a piece's end. Cut inside a line it fails to parse; cut at a line's end it
parses, short of the series after the cut. The helper reads to the end of the body.
"""

from __future__ import annotations

import aiohttp

_PIECE_BYTES = 1 << 16


async def read_body(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The whole body of ``response``, or None as soon as it is over ``limit`` bytes."""
    pieces: list[bytes] = []
    size = 0
    async for piece in response.content.iter_chunked(_PIECE_BYTES):
        size += len(piece)
        if size > limit:
            return None
        pieces.append(piece)
    return b"".join(pieces)

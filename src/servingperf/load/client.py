"""The contract every wire-protocol client fulfils for the engine (owned here, implemented in
:mod:`servingperf.protocols`).
"""

from __future__ import annotations

from typing import Protocol

from servingperf.model.records import Exchange


class GenerationClient(Protocol):
    """Sends generation requests to one model instance.

    ``generate`` fills the exchange in place as bytes arrive: ``mono_sent`` (``time.monotonic()``)
    just before the first byte is handed to the transport, one ``token_chunk`` per response chunk
    that carries output tokens (role-only and empty chunks are not token chunks), usage counts when
    the server gives them, then ``succeed`` or ``fail``. A failed request is data: ``generate``
    never raises for a server or network failure. It may be cancelled at any await (the engine cuts
    requests in flight when a phase ends); whatever was filled in by then is kept.
    """

    async def probe(self) -> None:
        """Check the target answers at all; raise ``TargetError`` with a clear message if not."""
        ...

    async def generate(self, exchange: Exchange) -> None: ...

    async def aclose(self) -> None: ...

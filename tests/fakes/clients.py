"""The one fake GenerationClient, with knobs; used by every engine test (never copied)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from servingperf.model.records import ErrorKind, Exchange


@dataclass
class FakeClient:
    """Streams ``tokens`` chunks ``token_delay_s`` apart after ``first_delay_s``; every
    ``fail_every``-th request fails with an HTTP status instead; ``raise_every`` raises (a client bug)."""

    first_delay_s: float = 0.01
    token_delay_s: float = 0.005
    tokens: int = 4
    fail_every: int = 0
    raise_every: int = 0
    calls: int = 0
    sent_ids: list[str] = field(default_factory=list)

    async def probe(self) -> None:
        return None

    async def generate(self, exchange: Exchange) -> None:
        self.calls += 1
        call = self.calls
        exchange.mono_sent = time.monotonic()
        self.sent_ids.append(exchange.request.request_id)
        if self.raise_every and call % self.raise_every == 0:
            raise RuntimeError("boom")
        await asyncio.sleep(self.first_delay_s)
        if self.fail_every and call % self.fail_every == 0:
            exchange.fail(time.monotonic(), ErrorKind.HTTP_STATUS, "HTTP 500: injected")
            return
        for index in range(self.tokens):
            if index:
                await asyncio.sleep(self.token_delay_s)
            exchange.token_chunk(time.monotonic(), 1)
        exchange.usage_output_tokens = self.tokens
        exchange.usage_input_tokens = 7
        exchange.succeed(time.monotonic())

    async def aclose(self) -> None:
        return None

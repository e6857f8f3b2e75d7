"""The one fake GenerationClient, with knobs; used by every engine test (never copied)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from servingperf.load.execute import RequestFactory
from servingperf.model.records import ErrorKind, Exchange, GenerationRequest, RequestContext
from servingperf.model.specs import ProtocolKind
from servingperf.model.target import Target


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


def fake_client(target: Target) -> FakeClient:
    """A FakeClient built from a target (how a load worker process builds its client by name).

    Knobs travel in the URL's query: ``fake://?first_delay_s=0.01&token_delay_s=0.002&tokens=3``.
    """
    query = parse_qs(urlsplit(target.url).query)
    knobs: dict[str, float] = {key: float(values[-1]) for key, values in query.items()}
    return FakeClient(
        first_delay_s=knobs.get("first_delay_s", 0.01),
        token_delay_s=knobs.get("token_delay_s", 0.005),
        tokens=int(knobs.get("tokens", 4)),
        fail_every=int(knobs.get("fail_every", 0)),
    )


def fake_target(**knobs: float) -> Target:
    """The target naming a FakeClient with ``knobs`` (see ``fake_client``)."""
    query = "&".join(f"{key}={value}" for key, value in knobs.items())
    return Target(url=f"fake://?{query}", model="m", protocol=ProtocolKind.OPENAI_COMPLETIONS)


def fake_requests(
    *, worker: int, instance: str = "i", phase: str = "load", output_tokens: int = 4
) -> RequestFactory:
    """A request factory for engine tests: request ids say worker, user and sequence."""

    def make(user: int, sequence: int) -> tuple[GenerationRequest, RequestContext]:
        request = GenerationRequest(
            f"{instance}:{phase}:w{worker}:u{user}:{sequence}", "m", "prompt", output_tokens
        )
        context = RequestContext(instance, "m", phase, worker, user, 0, output_tokens)
        return request, context

    return make

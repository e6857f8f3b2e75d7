"""One request, start to record: the step every engine (closed or open loop) shares.

A request's *scheduled* time is when its schedule meant it to go (open loop: its arrival time;
closed loop: when its user became free); the client sets *sent* when the first byte goes to the
transport. Whatever happens (success, a server failure, a timeout, a client bug, cancellation at
the phase end) the request becomes exactly one record, written to the sink, and the live counters
move. A cancelled request is recorded ``cut`` and the cancellation goes on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from servingperf.load.client import GenerationClient
from servingperf.load.sinks import LoadCounters, RecordSink
from servingperf.model.records import (
    ErrorKind,
    Exchange,
    GenerationRequest,
    RequestContext,
    RequestStatus,
    freeze,
)

RequestFactory = Callable[[int, int], tuple[GenerationRequest, RequestContext]]
"""(user, sequence number of that user's request) -> the request and its context.

Open-loop engines pass the arrival's global index as ``user`` and 0 as ``sequence``."""

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class PhaseTiming:
    """Offsets from the run's t0 of when the phase started, measured, and stopped issuing."""

    start_s: float
    measure_start_s: float
    measure_end_s: float
    end_s: float
    stopped_early: bool


@dataclass(slots=True)
class RequestRunner:
    """Runs requests against one client, writing one record per request to ``sink``."""

    client: GenerationClient
    sink: RecordSink
    counters: LoadCounters
    t0: float
    request_timeout_s: float
    clock: Clock = time.monotonic

    async def run(self, exchange: Exchange, context: RequestContext) -> None:
        counters = self.counters
        counters.issued += 1
        counters.in_flight += 1
        try:
            async with asyncio.timeout(self.request_timeout_s):
                await self.client.generate(exchange)
        except TimeoutError:
            exchange.fail(
                self.clock(), ErrorKind.TIMEOUT, f"no answer within {self.request_timeout_s} s"
            )
        except asyncio.CancelledError:
            counters.in_flight -= 1
            counters.cut += 1
            self.sink.write(freeze(exchange, context, self.t0))
            raise
        except Exception as exc:  # a client bug must not stop the run: it is a failed request
            exchange.fail(self.clock(), ErrorKind.PROTOCOL, f"client error: {exc!r}")
        counters.in_flight -= 1
        if exchange.status is RequestStatus.OK:
            counters.ok += 1
            counters.output_tokens += exchange.usage_output_tokens or sum(exchange.chunk_tokens)
        else:
            counters.errors += 1
        self.sink.write(freeze(exchange, context, self.t0))


async def sleep_until(deadline: float, clock: Clock) -> None:
    delay = deadline - clock()
    if delay > 0:
        await asyncio.sleep(delay)

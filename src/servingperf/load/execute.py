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
from dataclasses import dataclass, field
from typing import Any

from servingperf.load.client import GenerationClient
from servingperf.load.health import LoadHealth
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
    """Offsets from the run's t0 of when the phase started, measured, and stopped issuing;
    ``stopped_early``: a stop ended it; ``exhausted``: its workload had nothing more to issue
    (and nothing in flight) before the planned end."""

    start_s: float
    measure_start_s: float
    measure_end_s: float
    end_s: float
    stopped_early: bool
    exhausted: bool = False
    # One entry per load process of the phase: the load generator's own health (validity).
    health: tuple[LoadHealth, ...] = ()


_SWEEP_S = 0.05  # how often the request deadlines are checked while requests are in flight


@dataclass(slots=True)
class RequestRunner:
    """Runs requests against one client, writing one record per request to ``sink``.

    Request deadlines: a *sweep*, one timer every ``_SWEEP_S`` while requests are in flight,
    cancels the tasks of those past their deadline (a timer per request would cost more than the
    rest of the engine's bookkeeping), so a timeout fires at most ``_SWEEP_S`` late. A
    cancellation that the deadline caused becomes a ``timeout`` failure (taken back as
    ``asyncio.timeout`` does), any other (the phase end) a ``cut`` record.
    """

    client: GenerationClient
    sink: RecordSink
    counters: LoadCounters
    t0: float
    request_timeout_s: float
    clock: Clock = time.monotonic
    _deadlines: dict[asyncio.Task[Any], float] = field(default_factory=dict, init=False)
    _expired: set[asyncio.Task[Any]] = field(default_factory=set, init=False)
    _sweep: asyncio.TimerHandle | None = field(default=None, init=False)
    issuing: bool = field(default=True, init=False)
    _idle: asyncio.Event | None = field(default=None, init=False)

    async def run(self, exchange: Exchange, context: RequestContext) -> None:
        counters = self.counters
        counters.issued += 1
        counters.in_flight += 1
        task = asyncio.current_task()
        assert task is not None, "RequestRunner.run runs in a task"
        loop = asyncio.get_running_loop()
        deadlines = self._deadlines
        deadlines[task] = loop.time() + self.request_timeout_s
        if self._sweep is None:
            self._sweep = loop.call_later(_SWEEP_S, self._expire)
        try:
            await self.client.generate(exchange)
        except asyncio.CancelledError:
            if not self._absorb(task):
                counters.in_flight -= 1
                counters.cut += 1
                self.sink.write(freeze(exchange, context, self.t0))
                raise
            exchange.fail(
                self.clock(), ErrorKind.TIMEOUT, f"no answer within {self.request_timeout_s} s"
            )
        except Exception as exc:  # a client bug must not stop the run: it is a failed request
            exchange.fail(self.clock(), ErrorKind.PROTOCOL, f"client error: {exc!r}")
        finally:
            del deadlines[task]
            if self._expired:  # fired, but the client swallowed the cancellation
                self._absorb(task)
            if not deadlines and self._idle is not None:
                self._idle.set()  # the record is written before the drain's waiter wakes
        counters.in_flight -= 1
        if exchange.status is RequestStatus.OK:
            counters.ok += 1
            counters.output_tokens += exchange.usage_output_tokens or sum(exchange.chunk_tokens)
        else:
            counters.errors += 1
        self.sink.write(freeze(exchange, context, self.t0))

    def stop_issuing(self) -> None:
        self.issuing = False

    async def drain(self, timeout_s: float, stop: asyncio.Future[Any]) -> None:
        """Stop issuing, then wait until no request is in flight, ``timeout_s`` passed or
        ``stop`` is done (what is still in flight then is cut by the caller)."""
        self.issuing = False
        if not self._deadlines or timeout_s <= 0:
            return
        self._idle = asyncio.Event()
        idle = asyncio.create_task(self._idle.wait())
        try:
            await asyncio.wait([idle, stop], timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            idle.cancel()
            self._idle = None

    def _expire(self) -> None:
        deadlines = self._deadlines
        if not deadlines:
            self._sweep = None
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        for task, deadline in deadlines.items():
            if deadline <= now and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        self._sweep = loop.call_later(_SWEEP_S, self._expire)

    def _absorb(self, task: asyncio.Task[Any]) -> bool:
        """Whether the deadline cancelled ``task`` and nothing else did (then the cancellation
        is taken back, as ``asyncio.timeout`` does)."""
        if task not in self._expired:
            return False
        self._expired.discard(task)
        return task.uncancel() == 0


async def sleep_until(deadline: float, clock: Clock) -> None:
    delay = deadline - clock()
    if delay > 0:
        await asyncio.sleep(delay)

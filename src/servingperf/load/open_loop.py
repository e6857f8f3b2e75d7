"""Open-loop load: requests sent at the arrival times of a schedule, whatever the server does.

Each arrival (index k, offset a_k from the phase start) is *scheduled* at start + a_k, and that is
what its record keeps as ``t_scheduled_s``: when the harness falls behind (a busy event loop, or
the concurrency cap reached), the request goes late and the delay shows as client lag (sent -
scheduled) instead of vanishing (coordinated omission made visible; TTFT still counts from sent).
The dispatcher sends every arrival already due at each wake-up, then waits until the next one:
a timer for all but the last ``SPIN_S``, then yields to the event loop until the arrival is due
(an asyncio timer may fire up to a millisecond early or late, uvloop's rounds to milliseconds;
yielding costs CPU before each arrival, left out of the CPU share the validity verdict reads, but
no arrival is sent early and the wake-up is precise to the loop's iteration time; after an
arrival sent ``SPIN_S`` late or more, the next wait does not yield: a loaded loop is not made
busier; docs/benchmarks.md, trace replay). With
``max_concurrency`` it waits for a free slot before sending. At the end of issuing, arrivals
not yet sent are dropped (never issued) and requests in flight drain or are cut
(:mod:`servingperf.load.phase`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from servingperf.load.execute import Clock, RequestFactory, RequestRunner
from servingperf.load.health import WAIT_SPIN
from servingperf.load.phase import PhasePlan
from servingperf.model.records import Exchange, RequestContext

_MAX_BURST = 32
SPIN_S = 0.0015  # the last stretch before an arrival, waited by yielding rather than by a timer
_MAX_SPINS = 100_000  # bounds the yielding even if the clock does not move (a test's clock)
_IDLE_YIELD_S = 50e-6  # a yield that came back sooner ran nothing else: it was spin, not work


async def wait_until(due: float, clock: Clock, spin_s: float = SPIN_S) -> None:
    """Return at ``due`` on ``clock``, never before it (unless the clock stands still), waiting
    the last ``spin_s`` by yielding. The yields that ran nothing else are added to the process's
    wait spin (:data:`~servingperf.load.health.WAIT_SPIN`), which the CPU share leaves out."""
    delay = due - clock()
    if delay > spin_s:
        await asyncio.sleep(delay - spin_s)
    last = clock()
    for _ in range(_MAX_SPINS):
        if last >= due:
            return
        await asyncio.sleep(0)
        now = clock()
        if now - last < _IDLE_YIELD_S:
            WAIT_SPIN.seconds += now - last
        last = now


@dataclass(frozen=True, slots=True)
class OpenLoopArrivals:
    """The workload of timed arrivals: ``arrivals`` are (global index, offset from the phase
    start) in time order; offsets past the end of issuing are not sent."""

    arrivals: Iterable[tuple[int, float]]
    make_request: RequestFactory
    max_concurrency: int | None = None
    hold: bool = True  # when the arrivals run out, hold the phase to its end (rate schedules)

    def coroutines(
        self, start: float, runner: RequestRunner, plan: PhasePlan, clock: Clock
    ) -> list[Coroutine[Any, Any, None]]:
        return [self._dispatch(start + plan.issuing_s, start, runner, clock)]

    async def _dispatch(
        self, end: float, start: float, runner: RequestRunner, clock: Clock
    ) -> None:
        """Send each arrival at its time (or as soon as a concurrency slot is free), then hold
        until the phase end drains or cuts what is still in flight."""
        slots = asyncio.Semaphore(self.max_concurrency) if self.max_concurrency else None

        async def one(exchange: Exchange, context: RequestContext) -> None:
            try:
                await runner.run(exchange, context)
            finally:
                if slots is not None:
                    slots.release()

        in_flight: set[asyncio.Task[None]] = set()
        behind = 0  # arrivals sent in a row without yielding to the event loop
        spin_s = SPIN_S  # none after a late send: a loaded loop is not made busier by spinning
        try:
            for index, offset in self.arrivals:
                due = start + offset
                if due >= end:
                    break
                delay = due - clock()
                if delay > 0:
                    behind = 0
                    await wait_until(due, clock, spin_s)
                elif behind >= _MAX_BURST:  # late: still let responses be read between sends
                    behind = 0
                    await asyncio.sleep(0)
                behind += 1
                if slots is not None:
                    await slots.acquire()
                if not runner.issuing:  # the phase stopped issuing while this arrival waited
                    if slots is not None:
                        slots.release()
                    break
                spin_s = SPIN_S if clock() - due < SPIN_S else 0.0
                request, context = self.make_request(index, 0)
                task = asyncio.create_task(one(Exchange(request, due), context))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            if in_flight:  # the schedule ran out before the end: let the last ones finish
                await asyncio.gather(*in_flight)
            if self.hold:
                await asyncio.sleep(max(0.0, end - clock()) + 3600.0)  # until the phase end
        except asyncio.CancelledError:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
            raise

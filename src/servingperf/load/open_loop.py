"""Open-loop load: requests sent at the arrival times of a schedule, whatever the server does.

Each arrival (index k, offset a_k from the phase start) is *scheduled* at start + a_k, and that is
what its record keeps as ``t_scheduled_s``: when the harness falls behind (a busy event loop, or
the concurrency cap reached), the request goes late and the delay shows as client lag (sent -
scheduled) instead of vanishing (coordinated omission made visible; TTFT still counts from sent).
The dispatcher sends every arrival already due at each wake-up, then sleeps until the next one;
with ``max_concurrency`` it waits for a free slot before sending. At the phase end, arrivals not
yet sent are dropped (never issued) and requests in flight are cut.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from servingperf.load.client import GenerationClient
from servingperf.load.execute import Clock, PhaseTiming, RequestFactory, RequestRunner
from servingperf.load.phase import drive_phase
from servingperf.load.sinks import LoadCounters, ProgressSink, RecordSink
from servingperf.model.records import Exchange, RequestContext

_MAX_BURST = 32


@dataclass(frozen=True, slots=True)
class OpenLoopPlan:
    """``arrivals``: (global index, offset from the phase start) in time order; offsets past
    ``ramp_up_s + duration_s`` are not sent."""

    arrivals: Iterable[tuple[int, float]]
    duration_s: float
    ramp_up_s: float = 0.0
    max_concurrency: int | None = None
    request_timeout_s: float = 300.0
    progress_interval_s: float = 0.5


async def run_open_loop(
    client: GenerationClient,
    plan: OpenLoopPlan,
    make_request: RequestFactory,
    sink: RecordSink,
    progress: ProgressSink,
    counters: LoadCounters,
    t0: float,
    stop: asyncio.Event | None = None,
    clock: Clock = time.monotonic,
    start_at: float | None = None,
) -> PhaseTiming:
    """Run one open-loop phase against one client; every request sent becomes one record."""

    def workload(start: float, runner: RequestRunner) -> list[Coroutine[Any, Any, None]]:
        return [_dispatch(plan, start, runner, make_request, clock)]

    return await drive_phase(
        plan, workload, client, sink, progress, counters, t0, stop, clock, start_at
    )


async def _dispatch(
    plan: OpenLoopPlan,
    start: float,
    runner: RequestRunner,
    make_request: RequestFactory,
    clock: Clock,
) -> None:
    """Send each arrival at its time (or as soon as a concurrency slot is free), then hold until
    the phase end cuts what is still in flight."""
    end = start + plan.ramp_up_s + plan.duration_s
    slots = asyncio.Semaphore(plan.max_concurrency) if plan.max_concurrency else None

    async def one(exchange: Exchange, context: RequestContext) -> None:
        try:
            await runner.run(exchange, context)
        finally:
            if slots is not None:
                slots.release()

    in_flight: set[asyncio.Task[None]] = set()
    behind = 0  # arrivals sent in a row without yielding to the event loop
    try:
        for index, offset in plan.arrivals:
            due = start + offset
            if due >= end:
                break
            delay = due - clock()
            if delay > 0:
                behind = 0
                await asyncio.sleep(delay)
            elif behind >= _MAX_BURST:  # late: still let responses be read between sends
                behind = 0
                await asyncio.sleep(0)
            behind += 1
            if slots is not None:
                await slots.acquire()
            request, context = make_request(index, 0)
            task = asyncio.create_task(one(Exchange(request, due), context))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:  # the schedule ran out before the end: let the last ones finish
            await asyncio.gather(*in_flight)
        await asyncio.sleep(max(0.0, end - clock()) + 3600.0)  # hold until cut at the end
    except asyncio.CancelledError:
        for task in in_flight:
            task.cancel()
        await asyncio.gather(*in_flight, return_exceptions=True)
        raise

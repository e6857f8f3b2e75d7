"""Closed-loop load: N virtual users, each sending its next request when its last one returns.

Timeline of a phase (offsets from the phase start)::

    0 ........ ramp_up_s ........................ ramp_up_s + duration_s
    users start evenly spread over the ramp-up;   measurement window W = [ramp_up_s, end]
    at the end the phase stops issuing; requests still in flight are cancelled and recorded ``cut``.

A closed-loop user's request is *scheduled* when the user becomes free (its previous request ended),
so client lag (sent - scheduled) measures only the harness's own delay. A failed request is recorded
and the user goes on. The phase also stops early when ``stop`` is set (Ctrl-C, error breaker).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from servingperf.load.client import GenerationClient
from servingperf.load.sinks import LoadCounters, ProgressSink, RecordSink
from servingperf.model.records import (
    ErrorKind,
    Exchange,
    GenerationRequest,
    RequestContext,
    RequestStatus,
    freeze,
)

RequestFactory = Callable[[int, int], tuple[GenerationRequest, RequestContext]]
"""(user, sequence number of that user's request) -> the request and its context."""

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class ClosedLoopPlan:
    users: int
    duration_s: float
    ramp_up_s: float = 0.0
    request_timeout_s: float = 300.0
    progress_interval_s: float = 0.5


@dataclass(frozen=True, slots=True)
class PhaseTiming:
    """Offsets from the run's t0 of when the phase started, measured, and stopped issuing."""

    start_s: float
    measure_start_s: float
    measure_end_s: float
    end_s: float
    stopped_early: bool


async def run_closed_loop(
    client: GenerationClient,
    plan: ClosedLoopPlan,
    make_request: RequestFactory,
    sink: RecordSink,
    progress: ProgressSink,
    counters: LoadCounters,
    t0: float,
    stop: asyncio.Event | None = None,
    clock: Clock = time.monotonic,
) -> PhaseTiming:
    """Run one closed-loop phase against one client; every request issued becomes one record."""
    stop_event = stop if stop is not None else asyncio.Event()
    start = clock()
    measure_start = start + plan.ramp_up_s
    planned_end = measure_start + plan.duration_s
    stopping = False

    async def user(index: int) -> None:
        delay = plan.ramp_up_s * index / plan.users
        if delay > 0:
            await asyncio.sleep(max(0.0, start + delay - clock()))
        sequence = 0
        while not stopping:
            request, context = make_request(index, sequence)
            sequence += 1
            exchange = Exchange(request=request, mono_scheduled=clock())
            counters.issued += 1
            counters.in_flight += 1
            try:
                async with asyncio.timeout(plan.request_timeout_s):
                    await client.generate(exchange)
            except TimeoutError:
                exchange.fail(
                    clock(), ErrorKind.TIMEOUT, f"no answer within {plan.request_timeout_s} s"
                )
            except asyncio.CancelledError:
                counters.in_flight -= 1
                counters.cut += 1
                sink.write(freeze(exchange, context, t0))
                raise
            except Exception as exc:  # a client bug must not stop the run: it is a failed request
                exchange.fail(clock(), ErrorKind.PROTOCOL, f"client error: {exc!r}")
            counters.in_flight -= 1
            if exchange.status is RequestStatus.OK:
                counters.ok += 1
                counters.output_tokens += exchange.usage_output_tokens or sum(exchange.chunk_tokens)
            else:
                counters.errors += 1
            sink.write(freeze(exchange, context, t0))

    progress.phase_started(counters, plan.ramp_up_s + plan.duration_s)
    tasks = [asyncio.create_task(user(i), name=f"user-{i}") for i in range(plan.users)]
    stop_wait = asyncio.create_task(stop_event.wait())
    try:
        while True:
            now = clock()
            if now >= planned_end or stop_event.is_set():
                break
            progress.tick(counters, now - start)
            await asyncio.wait(
                [stop_wait], timeout=min(plan.progress_interval_s, max(0.0, planned_end - now))
            )
    finally:
        measure_end = clock()
        stopping = True
        stop_wait.cancel()
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(asyncio.CancelledError):
            await stop_wait
        progress.phase_ended(counters)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result
    end = clock()
    return PhaseTiming(
        start_s=start - t0,
        measure_start_s=min(measure_start, measure_end) - t0,
        measure_end_s=measure_end - t0,
        end_s=end - t0,
        stopped_early=measure_end < planned_end - 1e-3,
    )

"""The life of one phase in one process, shared by the closed- and open-loop engines.

Timeline (offsets from the phase start, which may be a common start time given by a worker
coordinator)::

    0 ........ ramp_up_s ........................ ramp_up_s + duration_s
    load starts;   measurement window W = [ramp_up_s, end]
    at the end the phase stops issuing; requests still in flight are cancelled and recorded ``cut``.

The phase also stops early when ``stop`` is set (Ctrl-C, an error breaker, a coordinator). While
it runs, the progress sink gets a tick every ``progress_interval_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from servingperf.load.client import GenerationClient
from servingperf.load.collector import collector_for_load
from servingperf.load.execute import Clock, PhaseTiming, RequestRunner
from servingperf.load.sinks import LoadCounters, ProgressSink, RecordSink


class PhasePlan(Protocol):
    """What every engine's plan says about its phase."""

    @property
    def duration_s(self) -> float: ...

    @property
    def ramp_up_s(self) -> float: ...

    @property
    def request_timeout_s(self) -> float: ...

    @property
    def progress_interval_s(self) -> float: ...


Workload = Callable[[float, RequestRunner], list[Coroutine[Any, Any, None]]]
"""(the phase's start on the clock, the request step) -> the coroutines that issue the load."""


async def drive_phase(
    plan: PhasePlan,
    workload: Workload,
    client: GenerationClient,
    sink: RecordSink,
    progress: ProgressSink,
    counters: LoadCounters,
    t0: float,
    stop: asyncio.Event | None = None,
    clock: Clock = time.monotonic,
    start_at: float | None = None,
) -> PhaseTiming:
    """Wait for the start (``start_at``, a common start time set by a worker coordinator, or
    now), run ``workload``'s coroutines until the end or ``stop``, then cut them.

    The coroutines must record what they issued (a cancelled request is recorded ``cut``); a
    coroutine raising anything but cancellation is a bug and is re-raised after clean-up. The
    garbage collector is tuned for the phase (:mod:`servingperf.load.collector`).
    """
    start = clock() if start_at is None else start_at
    runner = RequestRunner(client, sink, counters, t0, plan.request_timeout_s, clock)
    ramp_up_s, duration_s = plan.ramp_up_s, plan.duration_s
    with collector_for_load():
        stop_event = stop if stop is not None else asyncio.Event()
        delay = start - clock()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_event.wait(), delay)
        measure_start = start + ramp_up_s
        planned_end = measure_start + duration_s
        progress.phase_started(counters, ramp_up_s + duration_s)
        tasks = (
            [asyncio.create_task(coro) for coro in workload(start, runner)]
            if not stop_event.is_set()
            else []
        )
        stop_wait = asyncio.create_task(stop_event.wait())
        try:
            while True:
                now = clock()
                if now >= planned_end or stop_event.is_set():
                    break
                progress.tick(counters, now - start)
                await asyncio.wait(
                    [stop_wait],
                    timeout=min(plan.progress_interval_s, max(0.0, planned_end - now)),
                )
        finally:
            measure_end = clock()
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

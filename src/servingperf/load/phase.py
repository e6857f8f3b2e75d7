"""The one phase loop: the life of one phase in one process, whatever its schedule.

Timeline (offsets from the phase start, which may be a common start time given by a worker
coordinator)::

    0 ........ ramp_up_s ........................ ramp_up_s + duration_s ...... + drain_s
    load starts;   measurement window W = [ramp_up_s, end]         drain (optional)
    at the end the phase stops issuing; with a drain, the requests in flight may finish for up
    to ``drain_s`` (they are ordinary records, ending after W); what is still in flight then is
    cancelled and recorded ``cut``.

The phase also stops early when ``stop`` is set (Ctrl-C, an error breaker, a coordinator): then
nothing drains, what is in flight is cut at once. It ends early too, with its window, when every
coroutine of its workload has returned (a replayed trace that ran out, its last answers in).
While it runs, the progress sink gets a tick every ``progress_interval_s``, and a
:class:`~servingperf.load.health.HealthMonitor` notes the process's CPU time, event-loop lag and
clock drift (the timing's ``health``).

*Workload.* What the phase issues, and when, is its :class:`Workload`: closed-loop users
(:mod:`servingperf.load.closed_loop`) and open-loop arrivals (:mod:`servingperf.load.open_loop`)
are two; a new kind of load (sessions, a replayed trace) is a new workload fed by a request
factory, never a new loop. A workload's coroutines issue every request through the phase's
:class:`~servingperf.load.execute.RequestRunner` (which records it) and check
``runner.issuing`` before each one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from servingperf.load.client import GenerationClient
from servingperf.load.collector import collector_for_load
from servingperf.load.execute import Clock, PhaseTiming, RequestRunner
from servingperf.load.health import HealthMonitor
from servingperf.load.sinks import PhaseOutputs


@dataclass(frozen=True, slots=True)
class PhasePlan:
    """How long a phase lasts and how it ends; what it issues is its workload's business."""

    duration_s: float
    ramp_up_s: float = 0.0
    request_timeout_s: float = 300.0
    progress_interval_s: float = 0.5
    drain_s: float = 0.0

    @property
    def issuing_s(self) -> float:
        """How long the phase issues requests: ramp-up plus measurement window."""
        return self.ramp_up_s + self.duration_s


class Workload(Protocol):
    """What a phase issues: the coroutines that send its requests."""

    def coroutines(
        self, start: float, runner: RequestRunner, plan: PhasePlan, clock: Clock
    ) -> list[Coroutine[Any, Any, None]]:
        """The coroutines issuing the load of a phase that starts at ``start`` (on ``clock``).

        They must send every request through ``runner`` (one record each), stop issuing once
        ``runner.issuing`` is false, and may be cancelled at any await at the phase end.
        """
        ...


async def run_phase_loop(
    plan: PhasePlan,
    workload: Workload,
    client: GenerationClient,
    outputs: PhaseOutputs,
    stop: asyncio.Event | None = None,
    clock: Clock = time.monotonic,
    start_at: float | None = None,
) -> PhaseTiming:
    """Wait for the start (``start_at``, a common start time set by a worker coordinator, or
    now), run ``workload``'s coroutines until the end or ``stop``, drain if the plan says so,
    then cut what remains; every request issued becomes one record in ``outputs.sink``.

    A coroutine raising anything but cancellation is a bug and is re-raised after clean-up. The
    garbage collector is tuned for the phase (:mod:`servingperf.load.collector`).
    """
    sink, progress, counters, t0 = outputs.sink, outputs.progress, outputs.counters, outputs.t0
    start = clock() if start_at is None else start_at
    runner = RequestRunner(client, sink, counters, t0, plan.request_timeout_s, clock)
    with collector_for_load():
        stop_event = stop if stop is not None else asyncio.Event()
        delay = start - clock()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_event.wait(), delay)
        measure_start = start + plan.ramp_up_s
        planned_end = start + plan.issuing_s
        monitor = HealthMonitor()
        monitor.start()
        progress.phase_started(counters, plan.issuing_s)
        tasks = (
            [asyncio.create_task(c) for c in workload.coroutines(start, runner, plan, clock)]
            if not stop_event.is_set()
            else []
        )
        stop_wait = asyncio.create_task(stop_event.wait())
        finished = asyncio.ensure_future(asyncio.wait(tasks)) if tasks else None
        measure_end: float | None = None
        try:
            while True:
                now = clock()
                if now >= planned_end or stop_event.is_set() or (finished and finished.done()):
                    break
                progress.tick(counters, now - start)
                await asyncio.wait(
                    [stop_wait] if finished is None else [stop_wait, finished],
                    timeout=min(plan.progress_interval_s, max(0.0, planned_end - now)),
                    return_when=asyncio.FIRST_COMPLETED,
                )
            measure_end = clock()
            runner.stop_issuing()
            if plan.drain_s > 0 and not stop_event.is_set():
                await runner.drain(plan.drain_s, stop_wait)
        finally:
            if measure_end is None:
                measure_end = clock()
            runner.stop_issuing()
            stop_wait.cancel()
            if finished is not None:
                finished.cancel()
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(asyncio.CancelledError):
                await stop_wait
            health = await monitor.stop()
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
            stopped_early=stop_event.is_set(),
            exhausted=finished is not None and finished.done() and not finished.cancelled(),
            health=(health,),
        )

"""Closed-loop load: virtual users, each sending its next request when its last one returns.

Each user has a *window* (:mod:`servingperf.load.schedules`): by default users start evenly spread
over the ramp-up and run to the end; step and line schedules add (or remove) users over time. A
closed-loop user's request is *scheduled* when the user becomes free (its previous request ended),
so client lag (sent - scheduled) measures only the harness's own delay. A failed request is
recorded and the user goes on. Phase timeline and stopping: :mod:`servingperf.load.phase`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from servingperf.load.client import GenerationClient
from servingperf.load.execute import (
    Clock,
    PhaseTiming,
    RequestFactory,
    RequestRunner,
    sleep_until,
)
from servingperf.load.phase import drive_phase
from servingperf.load.schedules import UserWindow
from servingperf.load.sinks import LoadCounters, ProgressSink, RecordSink
from servingperf.model.records import Exchange

__all__ = ["ClosedLoopPlan", "PhaseTiming", "RequestFactory", "run_closed_loop"]


@dataclass(frozen=True, slots=True)
class ClosedLoopPlan:
    """``users`` spread over ``ramp_up_s``, unless ``windows`` gives each user's own window."""

    users: int
    duration_s: float
    ramp_up_s: float = 0.0
    request_timeout_s: float = 300.0
    progress_interval_s: float = 0.5
    windows: Sequence[UserWindow] | None = None

    def user_windows(self) -> Sequence[UserWindow]:
        if self.windows is not None:
            return self.windows
        return [UserWindow(u, self.ramp_up_s * u / self.users) for u in range(self.users)]


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
    start_at: float | None = None,
) -> PhaseTiming:
    """Run one closed-loop phase against one client; every request issued becomes one record.

    ``start_at`` (monotonic) is a common start time set by a worker coordinator; default: now.
    """

    def workload(start: float, runner: RequestRunner) -> list[Coroutine[Any, Any, None]]:
        return [_user(w, start, runner, make_request, clock) for w in plan.user_windows()]

    return await drive_phase(
        plan, workload, client, sink, progress, counters, t0, stop, clock, start_at
    )


async def _user(
    window: UserWindow,
    start: float,
    runner: RequestRunner,
    make_request: RequestFactory,
    clock: Clock,
) -> None:
    """One user: sends a request, waits for it, sends the next, within its window."""
    await sleep_until(start + window.start_s, clock)
    stop_at = None if window.stop_s is None else start + window.stop_s
    sequence = 0
    while stop_at is None or clock() < stop_at:
        request, context = make_request(window.user, sequence)
        sequence += 1
        await runner.run(Exchange(request, clock()), context)

"""Run one worker's share of a phase in the current event loop.

A *shard* is worker ``index`` of ``count``: it runs the users u with u mod count = index of a
closed-loop schedule, or the arrivals k with k mod count = index of an open-loop one (see
:mod:`servingperf.load.schedules`), with its part of any concurrency cap. ``count`` = 1 is the
whole phase. The same function runs in the coordinating process (one worker) and in each worker
process (:mod:`servingperf.load.worker`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from servingperf.errors import ConfigError
from servingperf.load.client import GenerationClient
from servingperf.load.closed_loop import ClosedLoopPlan, run_closed_loop
from servingperf.load.execute import Clock, PhaseTiming, RequestFactory
from servingperf.load.open_loop import OpenLoopPlan, run_open_loop
from servingperf.load.schedules import (
    RateSchedule,
    UsersSchedule,
    arrival_times,
    peak_users,
    shard,
    shard_limit,
    user_windows,
)
from servingperf.load.sinks import LoadCounters, ProgressSink, RecordSink
from servingperf.model.specs import LoadSpec, SweepSpec


@dataclass(frozen=True, slots=True)
class Shard:
    index: int = 0
    count: int = 1


def is_open_loop(load: LoadSpec) -> bool:
    return not isinstance(load.schedule, UsersSchedule)


def useful_workers(load: LoadSpec, wanted: int) -> int:
    """``wanted`` workers, but never more than there are users or concurrency slots to share."""
    schedule = load.schedule
    if isinstance(schedule, SweepSpec):
        raise ConfigError("a sweep runs as stages: give each stage's own schedule")
    if isinstance(schedule, UsersSchedule):
        return max(1, min(wanted, peak_users(schedule, load.users)))
    if schedule.max_concurrency is not None:
        return max(1, min(wanted, schedule.max_concurrency))
    return max(1, wanted)


async def run_shard(
    load: LoadSpec,
    part: Shard,
    client: GenerationClient,
    make_request: RequestFactory,
    sink: RecordSink,
    progress: ProgressSink,
    counters: LoadCounters,
    t0: float,
    *,
    stop: asyncio.Event | None = None,
    start_at: float | None = None,
    clock: Clock = time.monotonic,
    progress_interval_s: float = 0.5,
) -> PhaseTiming:
    """Run ``part`` of the phase ``load`` describes; one record per request issued."""
    schedule = load.schedule
    if isinstance(schedule, SweepSpec):
        raise ConfigError("a sweep runs as stages: give each stage's own schedule")
    if isinstance(schedule, UsersSchedule):
        windows = list(shard(user_windows(schedule, load.users, load.ramp_up_s), *_pair(part)))
        closed = ClosedLoopPlan(
            users=max(1, len(windows)),
            duration_s=load.duration_s,
            ramp_up_s=load.ramp_up_s,
            request_timeout_s=load.request_timeout_s,
            progress_interval_s=progress_interval_s,
            windows=windows,
        )
        return await run_closed_loop(
            client, closed, make_request, sink, progress, counters, t0, stop, clock, start_at
        )
    rate: RateSchedule = schedule
    until = load.ramp_up_s + load.duration_s
    arrivals = shard(enumerate(arrival_times(rate, until, load.seed)), *_pair(part))
    open_plan = OpenLoopPlan(
        arrivals=arrivals,
        duration_s=load.duration_s,
        ramp_up_s=load.ramp_up_s,
        max_concurrency=shard_limit(rate.max_concurrency, part.index, part.count),
        request_timeout_s=load.request_timeout_s,
        progress_interval_s=progress_interval_s,
    )
    return await run_open_loop(
        client, open_plan, make_request, sink, progress, counters, t0, stop, clock, start_at
    )


def _pair(part: Shard) -> tuple[int, int]:
    return part.index, part.count

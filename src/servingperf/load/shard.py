"""Run one worker's share of a phase in the current event loop.

A *shard* is worker ``index`` of ``count``: it runs the users u with u mod count = index of a
closed-loop schedule, or the arrivals k with k mod count = index of an open-loop one (see
:mod:`servingperf.load.schedules`), with its part of any concurrency cap. ``count`` = 1 is the
whole phase. The same function runs in the coordinating process (one worker) and in each worker
process (:mod:`servingperf.load.worker`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass

from servingperf.errors import ConfigError
from servingperf.load.client import GenerationClient
from servingperf.load.closed_loop import Backoff, ClosedLoopUsers
from servingperf.load.execute import Clock, PhaseTiming, RequestFactory
from servingperf.load.open_loop import OpenLoopArrivals
from servingperf.load.phase import PhasePlan, Workload, run_phase_loop
from servingperf.load.schedules import (
    RateSchedule,
    UsersSchedule,
    arrival_times,
    peak_users,
    shard,
    shard_limit,
    user_windows,
)
from servingperf.load.sinks import PhaseOutputs
from servingperf.load.sources import TimedSource
from servingperf.model.specs import LoadSpec, SweepSpec, TraceScheduleSpec


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
    outputs: PhaseOutputs,
    *,
    stop: asyncio.Event | None = None,
    start_at: float | None = None,
    clock: Clock = time.monotonic,
    progress_interval_s: float = 0.5,
) -> PhaseTiming:
    """Run ``part`` of the phase ``load`` describes; one record per request issued."""
    plan = PhasePlan(
        duration_s=load.duration_s,
        ramp_up_s=load.ramp_up_s,
        request_timeout_s=load.request_timeout_s,
        progress_interval_s=progress_interval_s,
        drain_s=load.drain_s,
    )
    workload = shard_workload(load, part, make_request)
    counters = outputs.counters
    issued_before = counters.issued
    timing = await run_phase_loop(plan, workload, client, outputs, stop, clock, start_at)
    unsent = 0
    if isinstance(load.schedule, RateSchedule):
        issuing_s = timing.measure_end_s - timing.start_s
        due = arrival_times(load.schedule, max(0.0, issuing_s), load.seed)
        planned = sum(1 for _ in shard(enumerate(due), *_pair(part)))
        unsent = max(0, planned - (counters.issued - issued_before))
    health = tuple(dataclasses.replace(h, worker=part.index, unsent=unsent) for h in timing.health)
    return dataclasses.replace(timing, health=health)


def shard_workload(load: LoadSpec, part: Shard, make_request: RequestFactory) -> Workload:
    """The workload of ``part`` of ``load``'s schedule: its users, or its arrivals."""
    schedule = load.schedule
    if isinstance(schedule, SweepSpec):
        raise ConfigError("a sweep runs as stages: give each stage's own schedule")
    if isinstance(schedule, UsersSchedule):
        windows = list(shard(user_windows(schedule, load.users, load.ramp_up_s), *_pair(part)))
        spec = load.backoff
        backoff = None if spec is None else Backoff(spec.initial_s, spec.max_s)
        return ClosedLoopUsers(windows, make_request, backoff)
    limit = shard_limit(schedule.max_concurrency, part.index, part.count)
    if isinstance(schedule, TraceScheduleSpec):
        source: object = make_request  # a factory that may also be a TimedSource
        if not isinstance(source, TimedSource):
            raise ConfigError("a trace schedule needs a trace dataset (dataset source 'trace')")
        speedup = schedule.speedup
        offsets = (t / speedup for t in source.arrival_offsets())
        # hold=False: when the trace runs out (and its last answers are in), the phase ends
        return OpenLoopArrivals(shard(enumerate(offsets), *_pair(part)), make_request, limit, False)
    rate: RateSchedule = schedule
    until = load.ramp_up_s + load.duration_s
    arrivals = shard(enumerate(arrival_times(rate, until, load.seed)), *_pair(part))
    return OpenLoopArrivals(arrivals, make_request, limit)


def _pair(part: Shard) -> tuple[int, int]:
    return part.index, part.count

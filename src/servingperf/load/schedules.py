"""Load schedules as pure generators: when each user starts and stops, when each request arrives.

Terms. Times are offsets in seconds from the phase start. A *closed-loop* schedule gives each
virtual user a *window* ``[start_s, stop_s)``: the user sends its first request at ``start_s`` and
its next one whenever the last returns, until ``stop_s`` (``None``: the phase end). An *open-loop*
schedule gives *arrival times*: request k is meant to be sent at ``arrival_k`` whatever the server
does, so lateness is visible as client lag. Its *rate profile* r(t) (constant, steps or a line,
ghz's const / step / line) is turned into arrivals by a time change: an *operational* sequence u_k
with unit mean gaps (constant: 0, 1, 2...; Poisson: exponential gaps; gamma: gamma gaps of shape
``burstiness`` and mean 1) is mapped through the inverse of the cumulative rate
R(t) = integral of r from 0 to t, so arrival_k = R^-1(u_k). That gives the exact non-homogeneous
Poisson process for Poisson arrivals and the evenly spaced sequence at every instant's rate for
constant arrivals.

*Sharding* over N workers is round-robin over one global sequence (arrival or user k goes to
worker k mod N): every worker regenerates the same seeded sequence and keeps its share, so the
union of the shards is exactly the unsharded schedule, whatever the arrival process. Nothing here
touches sockets, sleeps or clocks: tests check the times directly.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from servingperf.model.specs import (
    ArrivalProcess,
    RateLineSpec,
    RateScheduleSpec,
    RateStepSpec,
    UsersLineSpec,
    UsersScheduleSpec,
    UsersStepSpec,
)

T = TypeVar("T")

RateSchedule = RateScheduleSpec | RateStepSpec | RateLineSpec
UsersSchedule = UsersScheduleSpec | UsersStepSpec | UsersLineSpec


@dataclass(frozen=True, slots=True)
class UserWindow:
    """One closed-loop user: it issues requests from ``start_s`` until ``stop_s`` (None: the end)."""

    user: int
    start_s: float
    stop_s: float | None = None


@dataclass(frozen=True, slots=True)
class RateSegment:
    """r(t) = rate_rps + slope_rps2 * (t - start_s) on [start_s, next segment's start)."""

    start_s: float
    rate_rps: float
    slope_rps2: float = 0.0


@dataclass(frozen=True, slots=True)
class RateProfile:
    """A piecewise-linear rate r(t) >= 0; the last segment lasts for ever."""

    segments: tuple[RateSegment, ...]

    def rate_at(self, t: float) -> float:
        segment = self.segments[0]
        for candidate in self.segments:
            if candidate.start_s <= t:
                segment = candidate
        return max(0.0, segment.rate_rps + segment.slope_rps2 * (t - segment.start_s))

    def pieces(self) -> tuple[tuple[RateSegment, float, float], ...]:
        """Each segment with its end (inf for the last) and R at its start (cumulative rate)."""
        out: list[tuple[RateSegment, float, float]] = []
        total = 0.0
        for index, segment in enumerate(self.segments):
            last = index + 1 == len(self.segments)
            end = math.inf if last else self.segments[index + 1].start_s
            out.append((segment, end, total))
            if not last:
                span = end - segment.start_s
                total += segment.rate_rps * span + segment.slope_rps2 * span * span / 2
        return tuple(out)


def rate_profile(schedule: RateSchedule) -> RateProfile:
    """The rate r(t) a rate schedule describes."""
    if isinstance(schedule, RateScheduleSpec):
        return RateProfile((RateSegment(0.0, schedule.rate_rps),))
    if isinstance(schedule, RateLineSpec):
        slope = (schedule.end_rps - schedule.start_rps) / schedule.ramp_s
        return RateProfile(
            (
                RateSegment(0.0, schedule.start_rps, slope),
                RateSegment(schedule.ramp_s, schedule.end_rps),
            )
        )
    steps = math.ceil(round((schedule.end_rps - schedule.start_rps) / schedule.step_rps, 9))
    segments = [
        RateSegment(
            i * schedule.step_duration_s,
            _clamp(
                schedule.start_rps + i * schedule.step_rps, schedule.start_rps, schedule.end_rps
            ),
        )
        for i in range(steps + 1)
    ]
    return RateProfile(tuple(segments))


def _clamp(value: float, a: float, b: float) -> float:
    return min(max(value, min(a, b)), max(a, b))


def operational_times(
    arrivals: ArrivalProcess, burstiness: float | None, seed: int
) -> Iterator[float]:
    """The unit-rate sequence u_0 < u_1 < ... that the rate profile stretches into arrivals."""
    if arrivals is ArrivalProcess.CONSTANT:
        yield from (float(k) for k in itertools.count())
        return
    rng = random.Random(f"servingperf-arrivals:{seed}")
    u = 0.0
    if arrivals is ArrivalProcess.POISSON:
        while True:
            u += rng.expovariate(1.0)
            yield u
    shape = burstiness if burstiness is not None else 1.0
    while True:
        u += rng.gammavariate(shape, 1.0 / shape)
        yield u


def arrival_times(schedule: RateSchedule, until_s: float, seed: int = 0) -> Iterator[float]:
    """Every arrival offset of ``schedule`` in [0, until_s), in order; seeded, so repeatable."""
    pieces = rate_profile(schedule).pieces()
    index = 0
    for u in operational_times(schedule.arrivals, schedule.burstiness, seed):
        while index + 1 < len(pieces) and u >= pieces[index + 1][2]:
            index += 1
        segment, end, cumulative = pieces[index]
        t = segment.start_s + _solve(segment, u - cumulative)
        if t >= until_s or t > end:  # past the end, or a last segment of rate 0
            return
        yield t


def _solve(segment: RateSegment, amount: float) -> float:
    """tau >= 0 with the integral of r over [start, start + tau] = amount (inf if never)."""
    r0, a = segment.rate_rps, segment.slope_rps2
    if amount <= 0:
        return 0.0
    discriminant = r0 * r0 + 2.0 * a * amount
    if discriminant < 0:  # a falling rate reaches 0 before delivering that much
        return math.inf
    denominator = r0 + math.sqrt(discriminant)
    if denominator <= 0:
        return math.inf
    return 2.0 * amount / denominator  # = (-r0 + root) / a, stable also for a -> 0


def user_windows(schedule: UsersSchedule, users: int, ramp_up_s: float) -> tuple[UserWindow, ...]:
    """Each user's window: ``users`` spread over ``ramp_up_s``, or the step / line ramp given.

    A user joins when the schedule's user count first exceeds its number and, in a ramp down,
    leaves when the count falls to its number (it finishes the request it has in flight).
    """
    if isinstance(schedule, UsersScheduleSpec):
        return tuple(UserWindow(u, ramp_up_s * u / users) for u in range(users))
    if isinstance(schedule, UsersStepSpec):
        lo, hi = sorted((schedule.start, schedule.end))
        size = abs(schedule.step)

        def step_time(count: int) -> float:
            """First time the count reaches ``count`` going up (or leaves it going down)."""
            steps = math.ceil((abs(count - schedule.start)) / size)
            return steps * schedule.step_duration_s

        if schedule.step > 0:
            return tuple(UserWindow(u, 0.0 if u < lo else step_time(u + 1)) for u in range(hi))
        return tuple(UserWindow(u, 0.0, None if u < lo else step_time(u)) for u in range(hi))
    lo, hi = sorted((schedule.start, schedule.end))
    span = hi - lo
    if schedule.end >= schedule.start:
        return tuple(
            UserWindow(u, 0.0 if u < lo else schedule.ramp_s * (u + 1 - lo) / span)
            for u in range(hi)
        )
    return tuple(
        UserWindow(u, 0.0, None if u < lo else schedule.ramp_s * (hi - u) / span) for u in range(hi)
    )


def shard(items: Iterable[T], index: int, count: int) -> Iterator[T]:
    """Worker ``index`` of ``count``'s share: items index, index + count, index + 2 count..."""
    if not 0 <= index < count:
        raise ValueError(f"worker index {index} is not in 0..{count - 1}")
    return itertools.islice(items, index, None, count)


def shard_limit(limit: int | None, index: int, count: int) -> int | None:
    """Worker ``index``'s part of a concurrency cap: the parts differ by at most one, sum to it."""
    if limit is None:
        return None
    return limit // count + (1 if index < limit % count else 0)


def peak_users(schedule: UsersSchedule, users: int) -> int:
    """Most users active at once (how many workers can have any)."""
    if isinstance(schedule, UsersScheduleSpec):
        return users
    return max(schedule.start, schedule.end)

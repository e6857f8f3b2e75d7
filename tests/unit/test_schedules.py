"""Schedules as pure functions: arrival times and user windows, checked without clocks or sockets."""

from __future__ import annotations

import math
import statistics
from itertools import pairwise

import pytest
from pydantic import ValidationError

from servingperf.load.schedules import (
    UserWindow,
    arrival_times,
    peak_users,
    rate_profile,
    shard,
    shard_limit,
    user_windows,
)
from servingperf.load.shard import useful_workers
from servingperf.model.specs import (
    LoadSpec,
    RateLineSpec,
    RateScheduleSpec,
    RateStepSpec,
    UsersLineSpec,
    UsersScheduleSpec,
    UsersStepSpec,
)


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in pairwise(times)]


def test_constant_rate_is_evenly_spaced_from_zero() -> None:
    times = list(arrival_times(RateScheduleSpec(rate_rps=4, arrivals="constant"), until_s=2.0))
    assert times == pytest.approx([k / 4 for k in range(8)])


def test_poisson_arrivals_are_seeded_and_have_exponential_gaps() -> None:
    schedule = RateScheduleSpec(rate_rps=50, arrivals="poisson")
    first = list(arrival_times(schedule, until_s=400.0, seed=1))
    assert first == list(arrival_times(schedule, until_s=400.0, seed=1))
    assert first != list(arrival_times(schedule, until_s=400.0, seed=2))
    expected = 50 * 400
    assert abs(len(first) - expected) < 5 * math.sqrt(expected)  # 5 standard deviations
    gaps = _gaps(first)
    assert statistics.fmean(gaps) == pytest.approx(1 / 50, rel=0.03)
    assert statistics.stdev(gaps) / statistics.fmean(gaps) == pytest.approx(1.0, abs=0.05)
    assert all(0 <= t < 400.0 for t in first)
    assert first == sorted(first)


@pytest.mark.parametrize("burstiness", [0.25, 4.0])
def test_gamma_burstiness_sets_the_spread_of_gaps(burstiness: float) -> None:
    schedule = RateScheduleSpec(rate_rps=100, arrivals="gamma", burstiness=burstiness)
    gaps = _gaps(list(arrival_times(schedule, until_s=300.0, seed=3)))
    assert statistics.fmean(gaps) == pytest.approx(1 / 100, rel=0.05)
    # gamma gaps of shape b have a coefficient of variation of 1 / sqrt(b)
    cv = statistics.stdev(gaps) / statistics.fmean(gaps)
    assert cv == pytest.approx(1 / math.sqrt(burstiness), rel=0.1)


def test_rate_steps_hold_each_rate_for_a_step_then_the_end_rate() -> None:
    schedule = RateStepSpec(
        start_rps=2, step_rps=2, step_duration_s=5, end_rps=5, arrivals="constant"
    )
    times = list(arrival_times(schedule, until_s=20.0))
    per_step = [sum(1 for t in times if 5 * i <= t < 5 * (i + 1)) for i in range(4)]
    assert per_step == [10, 20, 25, 25]  # 2 rps, 4 rps, then clamped at 5 rps
    assert [s.rate_rps for s in rate_profile(schedule).segments] == [2, 4, 5]


def test_rate_steps_down() -> None:
    schedule = RateStepSpec(
        start_rps=6, step_rps=-2, step_duration_s=1, end_rps=2, arrivals="constant"
    )
    times = list(arrival_times(schedule, until_s=4.0))
    assert [sum(1 for t in times if i <= t < i + 1) for i in range(4)] == [6, 4, 2, 2]


def test_rate_line_follows_the_cumulative_rate() -> None:
    schedule = RateLineSpec(start_rps=0, end_rps=10, ramp_s=2, arrivals="constant")
    times = list(arrival_times(schedule, until_s=3.0))
    # R(t) = 2.5 t^2 on the ramp, then 10 + 10 (t - 2): arrival k is at R^-1(k)
    for k, t in enumerate(times):
        cumulative = 2.5 * t * t if t <= 2 else 10 + 10 * (t - 2)
        assert cumulative == pytest.approx(k, abs=1e-9)
    assert len(times) == 20
    assert rate_profile(schedule).rate_at(1.0) == pytest.approx(5.0)


def test_rate_line_down_to_zero_stops_issuing() -> None:
    schedule = RateLineSpec(start_rps=10, end_rps=0, ramp_s=2, arrivals="constant")
    times = list(arrival_times(schedule, until_s=60.0))
    assert len(times) == 11  # R(2) = 10: arrivals 0..10, none after the rate reached 0
    assert max(times) == pytest.approx(2.0)


def test_shards_partition_the_schedule_whatever_the_worker_count() -> None:
    schedule = RateScheduleSpec(rate_rps=30, arrivals="gamma", burstiness=0.5)
    whole = list(enumerate(arrival_times(schedule, until_s=10.0, seed=9)))
    for count in (1, 2, 3, 7):
        parts = [
            list(shard(enumerate(arrival_times(schedule, 10.0, 9)), i, count)) for i in range(count)
        ]
        assert sorted(item for part in parts for item in part) == whole
        assert all(k % count == i for i, part in enumerate(parts) for k, _ in part)
    with pytest.raises(ValueError, match=r"not in 0\.\.1"):
        list(shard([], 2, 2))


def test_concurrency_cap_parts_sum_to_the_cap() -> None:
    assert [shard_limit(10, i, 3) for i in range(3)] == [4, 3, 3]
    assert sum(shard_limit(7, i, 4) or 0 for i in range(4)) == 7
    assert shard_limit(None, 0, 2) is None


def test_users_spread_over_the_ramp_up() -> None:
    assert user_windows(UsersScheduleSpec(), users=4, ramp_up_s=2.0) == tuple(
        UserWindow(u, 0.5 * u) for u in range(4)
    )


def test_users_step_up_and_down() -> None:
    up = user_windows(UsersStepSpec(start=1, step=2, step_duration_s=10, end=6), 0, 0)
    assert [(w.start_s, w.stop_s) for w in up] == [
        (0, None),
        (10, None),
        (10, None),
        (20, None),
        (20, None),
        (30, None),
    ]
    down = user_windows(UsersStepSpec(start=6, step=-2, step_duration_s=10, end=1), 0, 0)
    assert [(w.start_s, w.stop_s) for w in down] == [
        (0, None),
        (0, 30),
        (0, 20),
        (0, 20),
        (0, 10),
        (0, 10),
    ]


def test_users_line_up_and_down() -> None:
    up = user_windows(UsersLineSpec(start=1, end=5, ramp_s=8), 0, 0)
    assert [w.start_s for w in up] == [0, 2, 4, 6, 8]
    down = user_windows(UsersLineSpec(start=4, end=0, ramp_s=8), 0, 0)
    assert [w.stop_s for w in down] == [8, 6, 4, 2]
    assert peak_users(UsersLineSpec(start=4, end=0, ramp_s=8), users=99) == 4


def test_workers_never_outnumber_users_or_slots() -> None:
    assert useful_workers(LoadSpec(users=3), 8) == 3
    capped = LoadSpec(schedule=RateScheduleSpec(rate_rps=5, max_concurrency=2))
    assert useful_workers(capped, 8) == 2
    assert useful_workers(LoadSpec(schedule=RateScheduleSpec(rate_rps=5)), 8) == 8


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"kind": "rate", "rate_rps": 5, "burstiness": 2}, "applies only to arrivals 'gamma'"),
        ({"kind": "rate", "rate_rps": 5, "arrivals": "gamma"}, "needs 'burstiness'"),
        (
            {
                "kind": "rate-step",
                "start_rps": 5,
                "step_rps": -1,
                "step_duration_s": 1,
                "end_rps": 9,
            },
            "give it the sign of end - start",
        ),
        (
            {"kind": "users-step", "start": 1, "step": 0, "step_duration_s": 1, "end": 4},
            "give it the sign of end - start",
        ),
        ({"kind": "users-line", "start": 0, "end": 0, "ramp_s": 1}, "at least one user"),
        ({"kind": "rate", "rate_rps": 5, "unknown": 1}, "Extra inputs are not permitted"),
        ({"kind": "poisson"}, "does not match any of the expected tags"),
    ],
)
def test_bad_schedules_say_what_to_change(schedule: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        LoadSpec.model_validate({"schedule": schedule})

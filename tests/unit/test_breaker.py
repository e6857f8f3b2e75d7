"""The error breaker: when it trips, what it says, and that it stops the phase."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from servingperf.errors import ExitCode, TargetError
from servingperf.load.breaker import ErrorBreaker, breaker_reason
from servingperf.load.sinks import LoadCounters
from servingperf.model.specs import BreakerSpec, LoadSpec


def counters(ok: int, errors: int, cut: int = 0) -> LoadCounters:
    return LoadCounters("small", "load", issued=ok + errors + cut, ok=ok, errors=errors, cut=cut)


def test_no_trip_before_min_requests_or_at_the_bound() -> None:
    spec = BreakerSpec(max_error_rate=0.25, min_requests=8)
    assert breaker_reason(spec, counters(ok=0, errors=7)) is None  # 7 finished < 8
    assert breaker_reason(spec, counters(ok=6, errors=2)) is None  # exactly 25 %: not above
    assert breaker_reason(spec, counters(ok=0, errors=0, cut=50)) is None  # cut are not errors


def test_trip_reason_names_instance_phase_counts_and_bound() -> None:
    reason = breaker_reason(BreakerSpec(max_error_rate=0.25, min_requests=8), counters(5, 3))
    assert reason is not None
    assert "instance 'small' phase 'load'" in reason
    assert "3 of 8 finished requests failed (37.5% > max_error_rate 25.0%)" in reason


def test_zero_bound_trips_on_the_first_error_after_min_requests() -> None:
    spec = BreakerSpec(max_error_rate=0.0, min_requests=1)
    assert breaker_reason(spec, counters(10, 0)) is None
    assert breaker_reason(spec, counters(10, 1)) is not None


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def phase_started(self, counters: LoadCounters, duration_s: float) -> None:
        self.calls.append("started")

    def tick(self, counters: LoadCounters, elapsed_s: float) -> None:
        self.calls.append("tick")

    def phase_ended(self, counters: LoadCounters) -> None:
        self.calls.append("ended")


async def test_watching_sink_forwards_and_trips_once_setting_stop() -> None:
    stop = asyncio.Event()
    breaker = ErrorBreaker(BreakerSpec(max_error_rate=0.5, min_requests=4), stop)
    inner = Recorder()
    watched = breaker.watch(inner)
    watched.phase_started(counters(0, 0), 10.0)
    watched.tick(counters(3, 1), 1.0)
    assert not stop.is_set()
    assert not breaker.tripped
    breaker.raise_if_tripped()  # nothing to raise yet
    watched.tick(counters(3, 4), 2.0)
    assert stop.is_set()
    assert breaker.tripped
    first = breaker.reason
    watched.phase_ended(counters(30, 4))  # recovered later: the trip stands, reason unchanged
    assert breaker.reason == first
    assert inner.calls == ["started", "tick", "tick", "ended"]
    with pytest.raises(TargetError, match="4 of 7 finished requests failed") as caught:
        breaker.raise_if_tripped()
    assert caught.value.exit_code is ExitCode.TARGET_FAILURE


async def test_phase_end_check_catches_short_phases() -> None:
    stop = asyncio.Event()
    breaker = ErrorBreaker(BreakerSpec(max_error_rate=0.1, min_requests=2), stop)
    breaker.watch(Recorder()).phase_ended(counters(1, 1))
    assert breaker.tripped
    assert stop.is_set()


def test_no_spec_no_breaker_and_spec_bounds() -> None:
    assert ErrorBreaker.of(None, asyncio.Event()) is None
    assert LoadSpec().breaker is None
    load = LoadSpec.model_validate({"breaker": {"max_error_rate": 0.2}})
    assert load.breaker == BreakerSpec(max_error_rate=0.2, min_requests=20)
    for bad in ({"max_error_rate": 1.0}, {"max_error_rate": -0.1}, {"max_error_rate": 0.1, "x": 1}):
        with pytest.raises(ValidationError):
            BreakerSpec.model_validate(bad)

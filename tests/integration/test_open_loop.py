"""The open-loop engine against the shared fake client: requests are scheduled at the schedule's
arrival times (lag is sent - scheduled, never hidden), the concurrency cap holds, every request
sent is one record, in-flight ones are cut at the end."""

from __future__ import annotations

import asyncio
import time

import pytest

from servingperf.load.open_loop import OpenLoopArrivals
from servingperf.load.phase import PhasePlan, run_phase_loop
from servingperf.load.schedules import arrival_times
from servingperf.load.shard import Shard, run_shard
from servingperf.load.sinks import ListSink, LoadCounters, NullProgress, PhaseOutputs
from servingperf.model.records import RequestRecord
from servingperf.model.specs import LoadSpec, RateScheduleSpec
from tests.fakes.clients import FakeClient, fake_requests


async def _run(
    client: FakeClient, load: LoadSpec, stop: asyncio.Event | None = None
) -> tuple[list[RequestRecord], LoadCounters, float]:
    sink = ListSink()
    counters = LoadCounters("i", "load")
    t0 = time.monotonic()
    timing = await run_shard(
        load,
        Shard(),
        client,
        fake_requests(worker=0),
        PhaseOutputs(sink, NullProgress(), counters, t0),
        stop=stop,
    )
    return sink.records, counters, timing.start_s


async def test_requests_are_scheduled_at_the_arrival_times() -> None:
    schedule = RateScheduleSpec(rate_rps=40, arrivals="poisson")
    load = LoadSpec(schedule=schedule, duration_s=1.0, ramp_up_s=0.25, seed=5)
    client = FakeClient(first_delay_s=0.01, token_delay_s=0.002, tokens=3)
    records, counters, start_s = await _run(client, load)
    expected = list(arrival_times(schedule, until_s=1.25, seed=5))
    assert len(records) == len(expected) == counters.issued == client.calls
    by_arrival = sorted(records, key=lambda r: r.user)  # open loop: user = arrival index
    assert [r.user for r in by_arrival] == list(range(len(expected)))
    for record, offset in zip(by_arrival, expected, strict=True):
        assert record.t_scheduled_s - start_s == pytest.approx(offset, abs=1e-9)
        assert record.t_sent_s is not None
        assert record.t_sent_s >= record.t_scheduled_s
    assert {r.status for r in records} <= {"ok", "cut"}


async def test_the_cap_holds_and_waiting_shows_as_client_lag() -> None:
    # 100 rps offered, each request takes ~0.1 s, at most 2 in flight: the client falls behind
    schedule = RateScheduleSpec(rate_rps=100, arrivals="constant", max_concurrency=2)
    load = LoadSpec(schedule=schedule, duration_s=0.6, ramp_up_s=0.0)
    client = FakeClient(first_delay_s=0.05, token_delay_s=0.025, tokens=3)
    records, _, _ = await _run(client, load)
    spans = [(r.t_sent_s, r.t_end_s or float("inf")) for r in records if r.t_sent_s is not None]
    for sent, _ in spans:
        assert sum(1 for a, b in spans if a <= sent < b) <= 2
    lags = [r.t_sent_s - r.t_scheduled_s for r in records if r.t_sent_s is not None]
    assert max(lags) > 0.1  # the backlog is visible, not folded into TTFT
    assert len(records) < 60  # arrivals not sent by the end are never issued


async def test_in_flight_requests_are_cut_and_stop_ends_early() -> None:
    schedule = RateScheduleSpec(rate_rps=50, arrivals="constant")
    load = LoadSpec(schedule=schedule, duration_s=30.0, ramp_up_s=0.0)
    client = FakeClient(first_delay_s=0.3, tokens=1)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.5, stop.set)
    started = time.monotonic()
    records, counters, _ = await _run(client, load, stop)
    assert time.monotonic() - started < 10.0
    assert counters.cut > 0
    assert counters.cut == sum(1 for r in records if r.status == "cut")
    assert len(records) == client.calls


async def test_an_exhausted_schedule_lets_its_last_requests_finish() -> None:
    plan = PhasePlan(duration_s=0.4)
    workload = OpenLoopArrivals([(0, 0.0), (1, 0.05)], fake_requests(worker=0))
    sink = ListSink()
    client = FakeClient(first_delay_s=0.02, tokens=2)
    timing = await run_phase_loop(
        plan,
        workload,
        client,
        PhaseOutputs(sink, NullProgress(), LoadCounters("i", "p"), time.monotonic()),
    )
    assert [r.status for r in sink.records] == ["ok", "ok"]
    assert not timing.stopped_early


async def test_an_open_loop_drain_finishes_in_flight_requests_and_sends_no_late_arrival() -> None:
    schedule = RateScheduleSpec(rate_rps=40, arrivals="constant")
    load = LoadSpec(schedule=schedule, duration_s=0.5, ramp_up_s=0.0, drain_s=5.0)
    client = FakeClient(first_delay_s=0.2, tokens=2)
    sink, counters = ListSink(), LoadCounters("i", "load")
    timing = await run_shard(
        load,
        Shard(),
        client,
        fake_requests(worker=0),
        PhaseOutputs(sink, NullProgress(), counters, 0.0),
    )
    records = sink.records
    assert records and all(r.status == "ok" for r in records)
    assert counters.cut == 0
    assert any((r.t_end_s or 0) > timing.measure_end_s for r in records)
    assert all((r.t_sent_s or 0) <= timing.measure_end_s for r in records)

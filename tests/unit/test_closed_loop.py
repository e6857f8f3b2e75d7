"""The closed-loop engine against the shared fake client: every issued request becomes exactly one
record, requests in flight at the end are cut, failures and client bugs are records, stop works."""

from __future__ import annotations

import asyncio
import itertools
import time

from servingperf.load.closed_loop import ClosedLoopPlan, run_closed_loop
from servingperf.load.sinks import ListSink, LoadCounters, NullProgress
from servingperf.model.records import GenerationRequest, RequestContext
from tests.fakes.clients import FakeClient


def _factory(user: int, sequence: int) -> tuple[GenerationRequest, RequestContext]:
    request = GenerationRequest(f"u{user}:{sequence}", "m", "prompt", 4)
    return request, RequestContext("i", "m", "load", 0, user, sequence % 3, 4)


async def _run(client: FakeClient, plan: ClosedLoopPlan, stop: asyncio.Event | None = None):  # type: ignore[no-untyped-def]
    sink = ListSink()
    counters = LoadCounters("i", "load")
    t0 = time.monotonic()
    timing = await run_closed_loop(
        client, plan, _factory, sink, NullProgress(), counters, t0, stop=stop
    )
    return sink.records, counters, timing


async def test_every_issued_request_is_one_record_and_in_flight_ones_are_cut() -> None:
    client = FakeClient(first_delay_s=0.02, token_delay_s=0.01, tokens=5)
    records, counters, timing = await _run(client, ClosedLoopPlan(users=8, duration_s=0.6))
    assert len(records) == client.calls == counters.issued
    assert {r.request_id for r in records} == set(client.sent_ids)
    cut = [r for r in records if r.status == "cut"]
    assert len(cut) == 8  # every user had one request in flight when the phase stopped
    assert all(r.t_end_s is None for r in cut)
    ok = [r for r in records if r.status == "ok"]
    assert ok and all(r.output_tokens == 5 for r in ok)
    assert {r.user for r in records} == set(range(8))
    assert not timing.stopped_early
    assert timing.measure_end_s - timing.measure_start_s >= 0.59


async def test_closed_loop_users_send_next_request_when_last_returns() -> None:
    client = FakeClient(first_delay_s=0.01, tokens=1)
    records, _, _ = await _run(client, ClosedLoopPlan(users=2, duration_s=0.3))
    for user in (0, 1):
        mine = sorted((r for r in records if r.user == user), key=lambda r: r.t_sent_s or 0)
        for previous, current in itertools.pairwise(mine):
            assert previous.t_end_s is not None and current.t_sent_s is not None
            assert current.t_scheduled_s >= previous.t_end_s  # scheduled when the user got free
            assert current.t_sent_s >= current.t_scheduled_s


async def test_failures_and_client_bugs_are_records_not_crashes() -> None:
    client = FakeClient(first_delay_s=0.005, tokens=1, fail_every=3, raise_every=5)
    records, counters, _ = await _run(client, ClosedLoopPlan(users=4, duration_s=0.4))
    errors = [r for r in records if r.status == "error"]
    assert {r.error_kind for r in errors} == {"http_status", "protocol"}
    assert any("client error" in (r.error_message or "") for r in errors)
    assert counters.errors == len(errors)
    assert len(records) == client.calls


async def test_ramp_up_staggers_user_starts_before_the_window() -> None:
    client = FakeClient(first_delay_s=0.01, tokens=1)
    records, _, timing = await _run(client, ClosedLoopPlan(users=4, duration_s=0.2, ramp_up_s=0.4))
    first_sent = {u: min(r.t_sent_s for r in records if r.user == u) for u in range(4)}
    assert first_sent[3] - first_sent[0] >= 0.25  # user 3 starts 3/4 of the ramp-up later
    assert timing.measure_start_s - timing.start_s >= 0.39


async def test_stop_event_ends_the_phase_early_and_cuts() -> None:
    client = FakeClient(first_delay_s=0.05, tokens=1)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.2, stop.set)
    started = time.monotonic()
    records, _, timing = await _run(client, ClosedLoopPlan(users=3, duration_s=30.0), stop)
    assert time.monotonic() - started < 10.0
    assert timing.stopped_early
    assert len(records) == client.calls


async def test_a_request_past_its_deadline_is_a_timeout_and_the_user_goes_on() -> None:
    client = FakeClient(first_delay_s=0.01, tokens=2, token_delay_s=5.0)  # the 2nd token hangs
    plan = ClosedLoopPlan(users=2, duration_s=0.8, request_timeout_s=0.2)
    records, counters, _ = await _run(client, plan)
    timeouts = [r for r in records if r.error_kind == "timeout"]
    assert len(timeouts) >= 4  # each user: a timeout, then its next request, and so on
    for record in timeouts:
        assert record.status == "error"
        assert record.chunk_tokens == [1]  # what arrived before the deadline is kept
        assert record.t_end_s is not None and record.t_sent_s is not None
        assert record.t_end_s - record.t_sent_s >= 0.2  # never before the deadline
    assert counters.errors == len(timeouts)
    assert len(records) == client.calls


async def test_the_collector_is_tuned_for_a_phase_and_restored_after() -> None:
    import gc

    from servingperf.load.collector import YOUNG_THRESHOLD, collector_for_load

    before = gc.get_threshold()
    seen: list[tuple[int, int, int]] = []

    class Watching(FakeClient):
        async def generate(self, exchange):  # type: ignore[no-untyped-def]
            seen.append(gc.get_threshold())
            await super().generate(exchange)

    await _run(Watching(first_delay_s=0.01, tokens=1), ClosedLoopPlan(users=1, duration_s=0.1))
    assert seen and seen[0][0] == max(before[0], YOUNG_THRESHOLD)
    assert gc.get_threshold() == before
    with collector_for_load():  # overlapping phases: the inner one leaves the settings alone
        with collector_for_load():
            pass
        assert gc.get_threshold()[0] == max(before[0], YOUNG_THRESHOLD)
    assert gc.get_threshold() == before

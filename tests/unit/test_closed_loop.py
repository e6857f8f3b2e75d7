"""The closed-loop engine against the shared fake client: every issued request becomes exactly one
record, requests in flight at the end are cut, failures and client bugs are records, stop works."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter

from servingperf.load.closed_loop import Backoff, ClosedLoopUsers
from servingperf.load.phase import PhasePlan, run_phase_loop
from servingperf.load.sinks import ListSink, LoadCounters, NullProgress, PhaseOutputs
from servingperf.model.records import ErrorKind, GenerationRequest, RequestContext
from tests.fakes.clients import FakeClient


def _factory(user: int, sequence: int) -> tuple[GenerationRequest, RequestContext]:
    request = GenerationRequest(f"u{user}:{sequence}", "m", "prompt", 4)
    return request, RequestContext("i", "m", "load", 0, user, sequence % 3, 4)


def ClosedLoopPlan(users: int, **timing: float) -> tuple[int, PhasePlan]:
    """``users`` spread over the plan's ramp-up (what the tests vary)."""
    return users, PhasePlan(**timing)


async def _run(client: FakeClient, plan: tuple[int, PhasePlan], stop: asyncio.Event | None = None):  # type: ignore[no-untyped-def]
    users, phase = plan
    sink = ListSink()
    counters = LoadCounters("i", "load")
    t0 = time.monotonic()
    workload = ClosedLoopUsers.spread(users, phase.ramp_up_s, _factory, backoff=None)
    timing = await run_phase_loop(
        phase, workload, client, PhaseOutputs(sink, NullProgress(), counters, t0), stop=stop
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

    await _run(Watching(first_delay_s=0.01, tokens=1), ClosedLoopPlan(users=1, duration_s=1.0))
    assert seen and seen[0][0] == max(before[0], YOUNG_THRESHOLD)
    assert gc.get_threshold() == before
    with collector_for_load():  # overlapping phases: the inner one leaves the settings alone
        with collector_for_load():
            pass
        assert gc.get_threshold()[0] == max(before[0], YOUNG_THRESHOLD)
    assert gc.get_threshold() == before


async def test_a_drain_lets_requests_in_flight_finish_and_issues_nothing_new() -> None:
    client = FakeClient(first_delay_s=0.05, token_delay_s=0.02, tokens=5)
    plan = ClosedLoopPlan(users=6, duration_s=0.4, drain_s=5.0)
    records, counters, timing = await _run(client, plan)
    assert len(records) == client.calls == counters.issued
    assert all(r.status == "ok" for r in records)  # nothing cut: every request finished
    assert counters.cut == 0
    late = [r for r in records if (r.t_end_s or 0) > timing.measure_end_s]
    assert late  # the requests in flight at the end finished during the drain...
    assert all((r.t_sent_s or 0) <= timing.measure_end_s for r in records)  # ...none sent after
    assert len(late) <= 6  # at most one per user
    assert timing.end_s >= max(r.t_end_s or 0 for r in records)


async def test_a_drain_is_bounded_then_cuts_what_remains() -> None:
    client = FakeClient(first_delay_s=30.0, tokens=1)
    started = time.monotonic()
    records, counters, timing = await _run(
        client, ClosedLoopPlan(users=3, duration_s=0.2, drain_s=0.3)
    )
    assert time.monotonic() - started < 10.0
    assert [r.status for r in records] == ["cut"] * 3
    assert counters.cut == 3
    assert timing.end_s - timing.measure_end_s >= 0.25


async def test_a_stop_skips_the_drain() -> None:
    client = FakeClient(first_delay_s=30.0, tokens=1)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.2, stop.set)
    started = time.monotonic()
    records, _, timing = await _run(
        client, ClosedLoopPlan(users=2, duration_s=30.0, drain_s=60.0), stop
    )
    assert time.monotonic() - started < 10.0
    assert timing.stopped_early
    assert [r.status for r in records] == ["cut", "cut"]


class _Refused(FakeClient):
    """A server that is down: every request fails to connect at once."""

    async def generate(self, exchange):  # type: ignore[no-untyped-def]
        self.calls += 1
        exchange.mono_sent = time.monotonic()
        await asyncio.sleep(0)  # a refused connect still goes through the event loop
        exchange.fail(time.monotonic(), ErrorKind.CONNECT, "cannot connect: Connection refused")


async def test_users_back_off_from_a_server_that_refuses_connections() -> None:
    users, phase = ClosedLoopPlan(users=3, duration_s=1.0)
    sink = ListSink()
    workload = ClosedLoopUsers.spread(users, 0.0, _factory, backoff=Backoff())
    await run_phase_loop(
        phase,
        workload,
        _Refused(),
        PhaseOutputs(sink, NullProgress(), LoadCounters("i", "load"), 0.0),
    )
    per_user = Counter(r.user for r in sink.records)
    assert set(per_user) == {0, 1, 2}
    assert max(per_user.values()) <= 10  # 0.05 + 0.1 + 0.2 + 0.4 + 0.8 s of waits fill 1 s
    for user in range(3):
        mine = sorted((r for r in sink.records if r.user == user), key=lambda r: r.t_scheduled_s)
        for k, (previous, current) in enumerate(itertools.pairwise(mine), start=1):
            assert previous.t_end_s is not None
            wait = Backoff().delay_s(k)  # the back-off is the user's own wait, not client lag:
            assert current.t_scheduled_s >= previous.t_end_s + wait * 0.99  # scheduled after it


async def test_without_back_off_a_refusing_server_is_hammered() -> None:
    users, phase = ClosedLoopPlan(users=3, duration_s=0.5)
    sink = ListSink()
    workload = ClosedLoopUsers.spread(users, 0.0, _factory, backoff=None)
    await run_phase_loop(
        phase,
        workload,
        _Refused(),
        PhaseOutputs(sink, NullProgress(), LoadCounters("i", "load"), 0.0),
    )
    assert len(sink.records) > 150  # what the default back-off prevents


def test_the_back_off_doubles_up_to_its_cap() -> None:
    backoff = Backoff(initial_s=0.05, max_s=2.0)
    assert [backoff.delay_s(k) for k in (1, 2, 3, 6, 7, 100)] == [0.05, 0.1, 0.2, 1.6, 2.0, 2.0]


class _RefusedExceptFourth(_Refused):
    async def generate(self, exchange):  # type: ignore[no-untyped-def]
        if self.calls == 3:  # the 4th request connects
            await FakeClient.generate(self, exchange)
            return
        await super().generate(exchange)


async def test_a_request_that_connects_resets_the_back_off() -> None:
    users, phase = ClosedLoopPlan(users=1, duration_s=2.6)
    sink = ListSink()
    backoff = Backoff(
        initial_s=0.2, max_s=10.0
    )  # waits 0.2, 0.4, 0.8, then 0.2 again (1.6 if not reset)
    workload = ClosedLoopUsers.spread(users, 0.0, _factory, backoff=backoff)
    client = _RefusedExceptFourth(first_delay_s=0.01, tokens=1)
    await run_phase_loop(
        phase, workload, client, PhaseOutputs(sink, NullProgress(), LoadCounters("i", "load"), 0.0)
    )
    mine = sorted(sink.records, key=lambda r: r.t_scheduled_s)
    assert [r.status for r in mine[:5]] == ["error", "error", "error", "ok", "error"]
    fifth, sixth = mine[4], mine[5]
    assert fifth.t_end_s is not None
    assert 0.19 <= sixth.t_scheduled_s - fifth.t_end_s < 1.2  # 0.2 s: counted afresh

"""The continuous-batching engine: step costs, queueing, cancellation, zero-cost steps, drift.

Most tests run the engine on a virtual clock (its sleep advances the clock and yields once), so
timings are exact; one test uses real time with generous bounds.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from servingperf.emulator.engine import Engine, Sequence, SequenceState, capacity, step_cost_s
from servingperf.emulator.profiles import Profile, resolve_profile

BASE = 0.010
PER_SEQ = 0.001
PREFILL = 0.0001


def make_profile(max_batch: int = 4, **overrides: float) -> Profile:
    values = {
        "decode_base_s": BASE,
        "decode_per_seq_s": PER_SEQ,
        "prefill_per_token_s": PREFILL,
        "max_batch": max_batch,
        **overrides,
    }
    return resolve_profile("flan-t5-small", values)


class VirtualClock:
    """A clock that only moves when the engine sleeps; ``overshoot[k]`` makes sleep number ``k``
    (0-based) wake up that much late."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []
        self.overshoot: dict[int, float] = {}

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.now += delay + self.overshoot.get(len(self.sleeps), 0.0)
        self.sleeps.append(delay)
        await asyncio.sleep(0)


async def drain(seq: Sequence) -> list[int]:
    return [index async for index in seq]


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


async def test_single_sequence_timing_is_exact(clock: VirtualClock) -> None:
    engine = Engine(make_profile(), clock=clock, sleep=clock.sleep)
    try:
        async with asyncio.timeout(5):
            seq = engine.submit(prompt_tokens=50, output_tokens=5)
            assert await drain(seq) == [0, 1, 2, 3, 4]
    finally:
        await engine.aclose()
    assert seq.state is SequenceState.FINISHED
    assert seq.complete
    assert seq.admitted_at == pytest.approx(100.0)
    first = BASE + PER_SEQ + PREFILL * 50
    assert seq.first_token_at - seq.admitted_at == pytest.approx(first)
    assert seq.finished_at - seq.admitted_at == pytest.approx(first + 4 * (BASE + PER_SEQ))
    assert engine.stats().steps == 5
    assert engine.stats().tokens == 5


async def test_batch_size_and_prefill_set_the_step_cost(clock: VirtualClock) -> None:
    engine = Engine(make_profile(), clock=clock, sleep=clock.sleep)
    try:
        async with asyncio.timeout(5):
            a = engine.submit(10, 3)
            b = engine.submit(20, 3)
            await asyncio.gather(drain(a), drain(b))
    finally:
        await engine.aclose()
    # Both are admitted in the first step: it pays both prefills and a batch of two.
    first = BASE + 2 * PER_SEQ + PREFILL * 30
    assert a.first_token_at == b.first_token_at == pytest.approx(100.0 + first)
    assert a.finished_at == pytest.approx(100.0 + first + 2 * (BASE + 2 * PER_SEQ))
    assert clock.sleeps == pytest.approx([first, BASE + 2 * PER_SEQ, BASE + 2 * PER_SEQ])


async def test_sequences_beyond_max_batch_queue_fifo(clock: VirtualClock) -> None:
    engine = Engine(
        make_profile(max_batch=2, prefill_per_token_s=0), clock=clock, sleep=clock.sleep
    )
    try:
        async with asyncio.timeout(5):
            seqs = [engine.submit(1, n) for n in (2, 4, 3, 1)]
            assert engine.stats().queued == 4
            await asyncio.gather(*(drain(s) for s in seqs))
    finally:
        await engine.aclose()
    step2 = BASE + 2 * PER_SEQ
    admitted = [s.admitted_at - 100.0 for s in seqs]
    # Two run at once; the third joins when the first (2 tokens) is done, the fourth when the
    # third (3 tokens, from step 3) is done... or the second (4 tokens), whichever frees first.
    assert admitted[0] == admitted[1] == 0.0
    assert admitted[2] == pytest.approx(2 * step2)
    assert admitted[3] == pytest.approx(4 * step2)
    assert all(s.complete for s in seqs)
    assert engine.stats().tokens == 10


async def test_cancel_frees_the_slot_and_ends_iteration(clock: VirtualClock) -> None:
    engine = Engine(make_profile(max_batch=1), clock=clock, sleep=clock.sleep)
    try:
        async with asyncio.timeout(5):
            long = engine.submit(1, 10_000)
            waiting = engine.submit(1, 2)
            got: list[int] = []
            async for index in long:
                got.append(index)
                if index == 2:
                    long.cancel()
            assert got == [0, 1, 2]
            assert long.state is SequenceState.CANCELLED
            assert not long.complete
            assert waiting.state is SequenceState.QUEUED
            assert await drain(waiting) == [0, 1]
            assert long.produced < 10
            long.cancel()  # idempotent
    finally:
        await engine.aclose()


async def test_cancel_while_queued_is_never_admitted(clock: VirtualClock) -> None:
    engine = Engine(make_profile(max_batch=1), clock=clock, sleep=clock.sleep)
    try:
        async with asyncio.timeout(5):
            first = engine.submit(1, 3)
            queued = engine.submit(1, 3)
            queued.cancel()
            assert engine.stats().queued == 1
            await drain(first)
            assert await drain(queued) == []
            assert queued.admitted_at is None
            assert engine.stats().queued == 0
            assert engine.stats().running == 0
    finally:
        await engine.aclose()


async def test_consumer_task_cancellation_then_cancel_releases(clock: VirtualClock) -> None:
    """The HTTP pattern: the handler task is cancelled at an await, its finally cancels."""
    engine = Engine(make_profile(max_batch=1), clock=clock, sleep=clock.sleep)
    seq = engine.submit(1, 1_000_000)

    async def consume() -> None:
        try:
            async for _ in seq:
                await asyncio.sleep(0)
        finally:
            seq.cancel()

    try:
        async with asyncio.timeout(5):
            task = asyncio.create_task(consume())
            for _ in range(10_000):
                if seq.produced >= 5:
                    break
                await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            nxt = engine.submit(1, 2)
            assert await drain(nxt) == [0, 1]
            assert engine.stats().running == 0
    finally:
        await engine.aclose()


async def test_wait_finished_wakes_once_at_the_end(clock: VirtualClock) -> None:
    engine = Engine(make_profile(), clock=clock, sleep=clock.sleep)
    try:
        async with asyncio.timeout(5):
            seq = engine.submit(5, 20)
            await seq.wait_finished()
            assert seq.complete
            assert seq.produced == 20
    finally:
        await engine.aclose()


async def test_falling_far_behind_restarts_the_schedule(clock: VirtualClock) -> None:
    engine = Engine(make_profile(max_batch=1), clock=clock, sleep=clock.sleep, max_lag_s=0.02)
    try:
        async with asyncio.timeout(5):
            clock.overshoot[1] = 0.5  # the second step wakes up half a second late
            seq = engine.submit(0, 4)
            got = await drain(seq)
    finally:
        await engine.aclose()
    assert got == [0, 1, 2, 3]
    assert engine.stats().rebased == 1
    # After the overshoot the schedule restarts from the present: no zero-length catch-up steps.
    assert all(s == pytest.approx(BASE + PER_SEQ) for s in clock.sleeps)


async def test_small_overshoot_is_compensated_not_accumulated(clock: VirtualClock) -> None:
    engine = Engine(make_profile(max_batch=1), clock=clock, sleep=clock.sleep, max_lag_s=0.02)
    step = BASE + PER_SEQ
    try:
        async with asyncio.timeout(5):
            clock.overshoot[1] = 0.004  # the second step wakes up 4 ms late
            seq = engine.submit(0, 3)
            await drain(seq)
    finally:
        await engine.aclose()
    assert engine.stats().rebased == 0
    assert clock.sleeps == pytest.approx([step, step, step - 0.004])
    assert seq.finished_at - seq.admitted_at == pytest.approx(3 * step)


async def test_zero_cost_steps_yield_to_other_tasks() -> None:
    engine = Engine(resolve_profile("instant", {}))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    try:
        async with asyncio.timeout(10):
            seq = engine.submit(1, 2000)
            assert len(await drain(seq)) == 2000
        assert ticks >= 1000  # the ticker ran between engine steps
        steps = engine.stats().steps
        await asyncio.sleep(0.05)  # idle: the engine waits on an event, it takes no steps
        assert engine.stats().steps == steps
    finally:
        task.cancel()
        await asyncio.wait({task})
        await engine.aclose()


async def test_close_aborts_everything_and_refuses_new_work(clock: VirtualClock) -> None:
    engine = Engine(make_profile(max_batch=1), clock=clock, sleep=clock.sleep)
    running = engine.submit(1, 1_000_000)
    queued = engine.submit(1, 5)
    async with asyncio.timeout(5):
        for _ in range(10_000):
            if running.produced >= 3:
                break
            await asyncio.sleep(0)
        await engine.aclose()
        assert running.state is SequenceState.ABORTED
        assert queued.state is SequenceState.ABORTED
        got = await drain(running)
        assert got == list(range(running.produced))  # what was produced, then the end
        await queued.wait_finished()
        assert not queued.complete
    with pytest.raises(RuntimeError):
        engine.submit(1, 1)


def test_submit_needs_at_least_one_token() -> None:
    engine = Engine(make_profile())
    with pytest.raises(ValueError, match="output_tokens"):
        engine.submit(1, 0)


def test_capacity_figures() -> None:
    profile = make_profile(max_batch=8)
    cap = capacity(profile)
    assert cap.max_batch == 8
    assert cap.step_s_single == pytest.approx(BASE + PER_SEQ)
    assert cap.step_s_full == pytest.approx(BASE + 8 * PER_SEQ)
    assert cap.tokens_per_s_full == pytest.approx(8 / (BASE + 8 * PER_SEQ))
    assert step_cost_s(profile, 3, 100) == pytest.approx(BASE + 3 * PER_SEQ + 100 * PREFILL)
    assert Engine(profile).capacity() == cap


async def test_real_time_steps_match_the_model_without_drift() -> None:
    """On the real clock, 60 steps of 5 ms take about 0.3 s: sleeps are compensated, so the total
    is neither short (early wake-ups) nor inflated by per-step overshoot beyond a loose bound."""
    profile = resolve_profile(
        "flan-t5-small",
        {"decode_base_s": 0.005, "decode_per_seq_s": 0.0, "prefill_per_token_s": 0.0},
    )
    engine = Engine(profile)
    try:
        async with asyncio.timeout(30):
            start = time.monotonic()
            seq = engine.submit(1, 60)
            await drain(seq)
            elapsed = time.monotonic() - start
    finally:
        await engine.aclose()
    assert seq.finished_at is not None
    assert seq.admitted_at is not None
    engine_span = seq.finished_at - seq.admitted_at
    assert 0.3 * 0.9 <= engine_span <= 0.3 * 1.5
    assert elapsed >= engine_span

"""The open-loop dispatcher's wait for an arrival: never returns before it is due (an asyncio
timer may fire early, uvloop's rounds to milliseconds), and ends even on a clock that stands
still (bounded)."""

from __future__ import annotations

import asyncio
import random
import time

from servingperf.load.open_loop import SPIN_S, wait_until


async def test_no_wait_returns_before_its_arrival_is_due() -> None:
    rng = random.Random(3)
    early = []
    for _ in range(200):
        due = time.monotonic() + rng.uniform(0.0, 3 * SPIN_S)
        await wait_until(due, time.monotonic)
        if time.monotonic() < due:
            early.append(due)
    assert early == []


async def test_a_clock_that_stands_still_does_not_hang_the_wait() -> None:
    async with asyncio.timeout(30):
        await wait_until(1.0, lambda: 0.0)  # due in 1 s on a clock that never moves

"""Closed-loop load: virtual users, each sending its next request when its last one returns.

Each user has a *window* (:mod:`servingperf.load.schedules`): by default users start evenly spread
over the ramp-up and run to the end; step and line schedules add (or remove) users over time. A
closed-loop user's request is *scheduled* when the user becomes free (its previous request ended,
or its back-off after a failed connection ended), so client lag (sent - scheduled) measures only
the harness's own delay. A failed request is recorded and the user goes on.

*Back-off.* A user whose requests cannot even connect (the server is down or crashed) waits
before the next one: ``initial_s`` after the first such failure, doubling up to ``max_s``, reset by
any request that connected. Without it a dead server turns every user into a loop of thousands of
instant ``connect`` errors per second (a flood of records that says nothing more). Other failures
(HTTP errors, timeouts, broken streams) take their own time and never back off. A
conversational request source (:mod:`servingperf.load.sources`) hears every answer and may ask
for a think time before the user's next turn; that pause is the user's, so the next request is
scheduled after it. Phase timeline and stopping: :mod:`servingperf.load.phase`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from servingperf.load.execute import Clock, RequestFactory, RequestRunner, sleep_until
from servingperf.load.phase import PhasePlan
from servingperf.load.schedules import UserWindow
from servingperf.load.sources import Conversational
from servingperf.model.records import ErrorKind, Exchange, RequestStatus


@dataclass(frozen=True, slots=True)
class Backoff:
    """Waits after consecutive connection failures: ``initial_s``, doubling, at most ``max_s``."""

    initial_s: float = 0.05
    max_s: float = 2.0

    def delay_s(self, failures: int) -> float:
        """The wait after ``failures`` (>= 1) connection failures in a row."""
        return min(self.max_s, self.initial_s * 2.0 ** min(failures - 1, 60))


@dataclass(frozen=True, slots=True)
class ClosedLoopUsers:
    """The workload of closed-loop users, one per window; ``backoff`` None never waits."""

    windows: Sequence[UserWindow]
    make_request: RequestFactory
    backoff: Backoff | None = Backoff()

    @classmethod
    def spread(
        cls, users: int, ramp_up_s: float, make_request: RequestFactory, backoff: Backoff | None
    ) -> ClosedLoopUsers:
        """``users`` starting evenly spread over ``ramp_up_s``, each running to the end."""
        windows = [UserWindow(u, ramp_up_s * u / users) for u in range(users)]
        return cls(windows, make_request, backoff)

    def coroutines(
        self, start: float, runner: RequestRunner, plan: PhasePlan, clock: Clock
    ) -> list[Coroutine[Any, Any, None]]:
        source: object = self.make_request  # a factory that may also be Conversational
        answered = source.answered if isinstance(source, Conversational) else None
        return [self._user(w, start, runner, clock, answered) for w in self.windows]

    async def _user(
        self,
        window: UserWindow,
        start: float,
        runner: RequestRunner,
        clock: Clock,
        answered: Callable[[int, Exchange], float] | None,
    ) -> None:
        """One user: sends a request, waits for it, sends the next, within its window; a
        conversational source gets each answer and may ask for a pause (think time) first."""
        await sleep_until(start + window.start_s, clock)
        stop_at = None if window.stop_s is None else start + window.stop_s
        sequence = 0
        refused = 0  # connection failures in a row
        while (stop_at is None or clock() < stop_at) and runner.issuing:
            request, context = self.make_request(window.user, sequence)
            sequence += 1
            exchange = Exchange(request, clock())
            await runner.run(exchange, context)
            if answered is not None:
                think_s = answered(window.user, exchange)
                if think_s > 0:
                    await asyncio.sleep(think_s)  # the user's own pause: not client lag
            if not _refused(exchange):
                refused = 0
            elif self.backoff is not None:
                refused += 1
                await asyncio.sleep(self.backoff.delay_s(refused))
        if runner.issuing:  # a window that ended early holds the phase to its planned end
            await asyncio.Event().wait()


def _refused(exchange: Exchange) -> bool:
    return exchange.status is RequestStatus.ERROR and exchange.error_kind is ErrorKind.CONNECT

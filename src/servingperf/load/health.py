"""How healthy the load generator itself was during a phase: the evidence a run's validity
verdict is drawn from (:mod:`servingperf.analysis.validity`).

Terms. One :class:`LoadHealth` per load process and phase. *CPU share*: the process's CPU time
(user + system) over the phase's wall time; a share near 1 means the process used a whole core,
so it may have been the bottleneck. *Event-loop lag*: how late a timer that should fire every
``interval_s`` actually fires (the time the loop was busy elsewhere); a chunk arriving then is
time-stamped that much late. *Clock drift*: the wall clock's advance minus the monotonic clock's
over the phase; more than a fraction of a second means the wall clock was stepped (NTP) or the
machine was suspended, and wall-clock times in the run (``started_at``) are then off. *Unsent*:
open-loop arrivals due before the phase stopped issuing that were never sent (the schedule was
not kept). *Wait spin*: CPU time the open-loop dispatcher spent yielding to the event loop with
nothing else to do in the last stretch before an arrival (:func:`servingperf.load.open_loop.
wait_until`): counted in the CPU time, but not work, so the CPU share the validity verdict reads
leaves it out. It is summed process-wide, as the CPU time is, in :data:`WAIT_SPIN`. The monitor
costs one timer wake-up per ``interval_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

INTERVAL_S = 0.02
MAX_SAMPLES = 100_000  # bounded memory: about 33 minutes of samples at 20 ms


@dataclass(frozen=True, slots=True)
class LoadHealth:
    worker: int
    wall_s: float
    cpu_s: float
    loop_lag_p50_s: float | None
    loop_lag_p99_s: float | None
    loop_lag_max_s: float | None
    loop_samples: int
    clock_drift_s: float
    unsent: int = 0
    wait_spin_s: float = 0.0

    @property
    def cpu_share(self) -> float:
        """The share of a core the process worked: CPU time less the wait spin, over wall time."""
        return max(0.0, self.cpu_s - self.wait_spin_s) / self.wall_s if self.wall_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class WaitSpin:
    """The process's wait-spin seconds so far (see the module docstring)."""

    __slots__ = ("seconds",)

    def __init__(self) -> None:
        self.seconds = 0.0


WAIT_SPIN = WaitSpin()


def _cpu_s() -> float:
    times = os.times()
    return times.user + times.system


class HealthMonitor:
    """Started when a phase starts, stopped when it ends; see the module docstring."""

    def __init__(self, worker: int = 0, interval_s: float = INTERVAL_S) -> None:
        self._worker = worker
        self._interval_s = interval_s
        self._lags: list[float] = []
        self._task: asyncio.Task[None] | None = None
        self._mono0 = self._wall0 = self._cpu0 = self._spin0 = 0.0

    def start(self) -> None:
        self._mono0, self._wall0, self._cpu0 = time.monotonic(), time.time(), _cpu_s()
        self._spin0 = WAIT_SPIN.seconds
        self._task = asyncio.get_running_loop().create_task(self._sample())

    async def _sample(self) -> None:
        interval = self._interval_s
        lags = self._lags
        while True:
            due = time.monotonic() + interval
            await asyncio.sleep(interval)
            if len(lags) < MAX_SAMPLES:
                lags.append(max(0.0, time.monotonic() - due))

    async def stop(self, unsent: int = 0) -> LoadHealth:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        mono, wall, cpu = time.monotonic(), time.time(), _cpu_s()
        lags = sorted(self._lags)

        def at(q: float) -> float | None:
            return lags[min(len(lags) - 1, int(q * len(lags)))] if lags else None

        return LoadHealth(
            worker=self._worker,
            wall_s=mono - self._mono0,
            cpu_s=cpu - self._cpu0,
            loop_lag_p50_s=at(0.5),
            loop_lag_p99_s=at(0.99),
            loop_lag_max_s=lags[-1] if lags else None,
            loop_samples=len(lags),
            clock_drift_s=(wall - self._wall0) - (mono - self._mono0),
            unsent=unsent,
            wait_spin_s=WAIT_SPIN.seconds - self._spin0,
        )

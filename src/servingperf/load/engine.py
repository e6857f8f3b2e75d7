"""The load engine's entry point: run one phase of any schedule, in this process or in workers.

``run_phase`` decides how many worker processes to use (``workers`` given, else ``load.workers``,
else the usable cores; never more than the users or concurrency slots there are to share). With
one, the phase runs in the caller's event loop and records go to the caller's sink; with more,
it runs on worker processes (:mod:`servingperf.load.pool`) that stream their records to their
own segments in ``records_dir``. Either way the records of a run directory are complete once it
returns, and the timing returned is the phase's.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from servingperf.load.execute import PhaseTiming
from servingperf.load.pool import Recipe, run_workers
from servingperf.load.shard import Shard, run_shard, useful_workers
from servingperf.load.sinks import PhaseOutputs
from servingperf.load.worker import import_object
from servingperf.model.specs import LoadSpec

__all__ = ["PhaseTiming", "Recipe", "run_phase", "usable_cores", "worker_count"]


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def worker_count(load: LoadSpec, workers: int | None = None) -> int:
    """How many workers ``run_phase`` will use for ``load``."""
    wanted = workers if workers is not None else load.workers
    return useful_workers(load, wanted if wanted is not None else usable_cores())


async def run_phase(
    load: LoadSpec,
    recipe: Recipe,
    outputs: PhaseOutputs,
    *,
    instance: str,
    phase: str,
    records_dir: Path,
    stop: asyncio.Event | None = None,
    workers: int | None = None,
) -> PhaseTiming:
    """Run the phase ``load`` describes (not a sweep: run a sweep's stages one by one). With
    worker processes, each writes its own records (``records_dir``): ``outputs.sink`` is used
    in this process only."""
    count = worker_count(load, workers)
    if count > 1:
        return await run_workers(
            load,
            recipe,
            instance=instance,
            phase=phase,
            count=count,
            records_dir=records_dir,
            progress=outputs.progress,
            counters=outputs.counters,
            t0=outputs.t0,
            stop=stop,
        )
    client = import_object(recipe.client_factory)(recipe.target)
    make_request = import_object(recipe.requests_factory)(worker=0, **recipe.requests_args)
    try:
        timing: PhaseTiming = await run_shard(
            load, Shard(), client, make_request, outputs, stop=stop
        )
    finally:
        await client.aclose()
    return timing

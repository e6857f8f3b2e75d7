"""The local coordinator: one phase spread over N worker processes on this host.

It spawns N workers (``multiprocessing`` "spawn" context: the coordinator has threads, so no
fork), hands each its :class:`~servingperf.load.worker.WorkerSpec`, waits until all are ready
(the *barrier*), then sends them one common start time a little in the future on CLOCK_MONOTONIC,
so all begin together however long each took to start. While they run it sums their counters for
the progress sink; records never cross the pipe, each worker streams its own Parquet segments.
On ``stop`` it tells every worker to stop; a worker that fails or dies makes the phase fail after
the others were stopped. Every process it starts is joined, or terminated, before it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from servingperf import errors
from servingperf.load.execute import PhaseTiming
from servingperf.load.sinks import LoadCounters, ProgressSink
from servingperf.load.worker import (
    Done,
    Failed,
    Progress,
    Ready,
    Start,
    Stop,
    WorkerSpec,
    merged,
    worker_main,
)
from servingperf.model.specs import LoadSpec
from servingperf.model.target import Target

# The common start is this far after the barrier: enough to deliver the start to every worker.
_START_MARGIN_S = 0.2
# After the planned end, workers cut, flush and report within this much (else they are killed).
_FINISH_GRACE_S = 60.0
_JOIN_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Recipe:
    """How each worker builds its client and its requests (importable factories + JSON args)."""

    target: Target
    client_factory: str
    requests_factory: str
    requests_args: Mapping[str, Any]


@dataclass(slots=True)
class _Gone:
    """The pipe of a worker closed (it exited, or died)."""

    index: int


async def run_workers(
    load: LoadSpec,
    recipe: Recipe,
    *,
    instance: str,
    phase: str,
    count: int,
    records_dir: Path,
    progress: ProgressSink,
    counters: LoadCounters,
    t0: float,
    stop: asyncio.Event | None = None,
    ready_timeout_s: float = 120.0,
    progress_interval_s: float = 0.5,
) -> PhaseTiming:
    """Run the phase ``load`` describes on ``count`` worker processes; merged timing back."""
    stop_event = stop if stop is not None else asyncio.Event()
    t0_unix = time.time() - (time.monotonic() - t0)
    specs = [
        WorkerSpec(
            index=i,
            count=count,
            instance=instance,
            phase=phase,
            load=load.model_dump(mode="json"),
            target=recipe.target,
            client_factory=recipe.client_factory,
            requests_factory=recipe.requests_factory,
            requests_args=dict(recipe.requests_args),
            records_dir=str(records_dir),
            t0_monotonic=t0,
            t0_unix=t0_unix,
            progress_interval_s=progress_interval_s,
        )
        for i in range(count)
    ]
    context = multiprocessing.get_context("spawn")
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[object] = asyncio.Queue()
    processes: list[BaseProcess] = []
    pipes: list[Connection] = []
    try:
        for spec in specs:
            mine, theirs = context.Pipe(duplex=True)
            process = context.Process(
                target=worker_main,
                args=(spec.to_json(), theirs, recipe.target.token),
                name=f"servingperf-worker-{spec.index}",
                daemon=True,
            )
            process.start()
            theirs.close()
            processes.append(process)
            pipes.append(mine)
            loop.add_reader(mine.fileno(), _pump, mine, spec.index, inbox)
        return await _coordinate(
            load, pipes, inbox, instance, phase, progress, counters, stop_event, ready_timeout_s
        )
    finally:
        for pipe in pipes:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(pipe.fileno())
        await asyncio.to_thread(_reap, processes)
        for pipe in pipes:
            pipe.close()


def _pump(pipe: Connection, index: int, inbox: asyncio.Queue[object]) -> None:
    try:
        while pipe.poll():
            inbox.put_nowait(pipe.recv())
    except (EOFError, OSError):
        asyncio.get_running_loop().remove_reader(pipe.fileno())
        inbox.put_nowait(_Gone(index))


def _reap(processes: list[BaseProcess]) -> None:
    deadline = time.monotonic() + _JOIN_TIMEOUT_S
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.terminate()
            process.join(_JOIN_TIMEOUT_S)
        if process.is_alive():
            process.kill()
            process.join()


def _broadcast(pipes: list[Connection], message: object) -> None:
    for pipe in pipes:
        with contextlib.suppress(OSError, ValueError):
            pipe.send(message)


async def _next(inbox: asyncio.Queue[object], wait_s: float) -> object | None:
    try:
        return await asyncio.wait_for(inbox.get(), wait_s)
    except TimeoutError:
        return None


async def _coordinate(
    load: LoadSpec,
    pipes: list[Connection],
    inbox: asyncio.Queue[object],
    instance: str,
    phase: str,
    progress: ProgressSink,
    counters: LoadCounters,
    stop: asyncio.Event,
    ready_timeout_s: float,
) -> PhaseTiming:
    count = len(pipes)
    ready: set[int] = set()
    deadline = time.monotonic() + ready_timeout_s
    while len(ready) < count:  # the barrier
        if stop.is_set():
            _broadcast(pipes, Stop())
            raise errors.TargetError("stopped before the workers were ready")
        if time.monotonic() > deadline:
            raise errors.TargetError(f"workers not ready within {ready_timeout_s} s")
        message = await _next(inbox, 0.1)
        if isinstance(message, Ready):
            ready.add(message.index)
        elif message is not None:
            _fail(message)
    start = time.monotonic() + _START_MARGIN_S
    _broadcast(pipes, Start(start, time.time() + _START_MARGIN_S))
    planned_end = start + load.ramp_up_s + load.duration_s
    latest: dict[int, LoadCounters] = {}
    done: dict[int, Done] = {}
    stopping = False
    progress.phase_started(counters, load.ramp_up_s + load.duration_s)
    try:
        while len(done) < count:
            if stop.is_set() and not stopping:
                stopping = True
                _broadcast(pipes, Stop())
            if time.monotonic() > planned_end + load.drain_s + _FINISH_GRACE_S:
                raise errors.TargetError(f"workers did not finish within {_FINISH_GRACE_S} s")
            message = await _next(inbox, 0.1)
            if isinstance(message, Progress):
                latest[message.index] = message.counters
                _copy(merged(latest, instance, phase), counters)
                progress.tick(counters, max(0.0, time.monotonic() - start))
            elif isinstance(message, Done):
                done[message.index] = message
                latest[message.index] = message.counters
                _copy(merged(latest, instance, phase), counters)
            elif isinstance(message, _Gone) and message.index in done:
                continue  # a worker that reported done has exited
            elif message is not None:
                _broadcast(pipes, Stop())
                _fail(message)
    finally:
        progress.phase_ended(counters)
    timings = [d.timing for d in done.values()]
    return PhaseTiming(
        start_s=min(t.start_s for t in timings),
        measure_start_s=min(t.measure_start_s for t in timings),
        # Workers whose share of a trace ran out end at different times: the window is the last.
        measure_end_s=(max if all(t.exhausted for t in timings) else min)(
            t.measure_end_s for t in timings
        ),
        end_s=max(t.end_s for t in timings),
        stopped_early=any(t.stopped_early for t in timings),
        exhausted=all(t.exhausted for t in timings),
        health=tuple(h for t in timings for h in t.health),
    )


def _copy(source: LoadCounters, target: LoadCounters) -> None:
    for item in fields(LoadCounters):
        if item.name not in ("instance", "phase"):
            setattr(target, item.name, getattr(source, item.name))


_KNOWN: dict[str, type[errors.ServingPerfError]] = {
    "ConfigError": errors.ConfigError,
    "TargetError": errors.TargetError,
    "DeployError": errors.DeployError,
    "RunDirError": errors.RunDirError,
}


def _fail(message: object) -> None:
    """Raise what a worker's failure (or death) means here."""
    if isinstance(message, Failed):
        known = _KNOWN.get(message.error_type)
        if known is not None:
            raise known(f"load worker {message.index}: {message.message}")
        raise RuntimeError(
            f"load worker {message.index} failed: {message.error_type}: {message.message}\n"
            f"{message.details}"
        )
    if isinstance(message, _Gone):
        raise RuntimeError(f"load worker {message.index} exited without reporting")
    raise RuntimeError(f"unexpected message from a load worker: {message!r}")

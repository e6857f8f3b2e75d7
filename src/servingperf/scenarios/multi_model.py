"""The seed's multi-model flavour: N instances deployed at once, loaded all together, then each alone.

Terms. Each entry of ``models`` is one *instance* (names are unique). The *concurrent phase*
(phase name ``concurrent``) loads every instance at the same time, each with its own ``load.users``
users and its own prompt stream; the *sequential phase* (``sequential``, unless
``multi_model.sequential`` is false) then loads each instance alone, one after the other, with the
same load, prompts and seeds: its *baseline*. Every phase lasts ``load.ramp_up_s`` then
``load.duration_s`` (D). An instance's *load* is the scenario's with ``seed`` + its index, so the
instances draw different prompts and each draws the same ones in both phases.

The concurrent phase's *common window* is when every instance was past its ramp-up and still
loaded: [latest measurement start, earliest measurement end]. It is every instance's measurement
window of that phase (``run.json``), so no instance's concurrent figures include time when another
was not loaded yet; starts differ by milliseconds in one process, by the spawn time of load worker
processes when there are several.

Load generation. By default each instance gets ``max(1, usable cores // N)`` load processes (one
means: every instance's users run in this process's event loop, all starting together);
``load.workers`` overrides that, the same in both phases. Every load worker process writes its
record segments straight into ``records/``: their names are unique per writer
(:mod:`servingperf.results.record_writer`), so the workers of instances loaded at once never
overwrite each other's.

Devices. Instances naming the same emulated device (``emulator.device``) are deployed with the
device's model ids (:func:`instance_requests`), so the local platform serves them from one
emulator process: they share its batching engine, as models over-subscribing one GPU would.

The verdict (saturated or not) is drawn later, from the records, by
:mod:`servingperf.analysis.multi_model`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

from servingperf.errors import ConfigError, DeployError, TargetError
from servingperf.load.engine import PhaseTiming, usable_cores
from servingperf.load.sinks import LoadCounters, ProgressSink
from servingperf.model.specs import LoadSpec, ModelSpec, PlatformKind, ScenarioSpec, SweepSpec
from servingperf.model.target import Target
from servingperf.platforms.base import Instance, InstanceRequest
from servingperf.platforms.local import emulator_settings
from servingperf.results.rundir import PhaseWindow
from servingperf.scenarios.context import RunContext
from servingperf.scenarios.phase_setup import bring_up, load_instance, mark_failed
from servingperf.scenarios.requests import check_dataset
from servingperf.scenarios.server_metrics import scrape_target

PHASE_CONCURRENT = "concurrent"
PHASE_SEQUENTIAL = "sequential"


@dataclass(slots=True)
class Member:
    """One deployed, probed instance and what its load needs."""

    model: ModelSpec
    instance: Instance
    target: Target
    load: LoadSpec


def instance_requests(spec: ScenarioSpec) -> list[InstanceRequest]:
    """One request per instance; instances naming the same emulated device (``emulator.device``)
    list the device's model ids, so that the local platform serves them from one process (see
    :mod:`servingperf.platforms.local`). ConfigError, before anything is deployed, when instances
    of a device differ in what one server has one of."""
    devices: dict[str, list[int]] = {}
    for index, model in enumerate(spec.models):
        if model.emulator is not None and model.emulator.device is not None:
            devices.setdefault(model.emulator.device, []).append(index)
    requests = [
        InstanceRequest(name=m.name, namespace=spec.name, model=m, seed=i)
        for i, m in enumerate(spec.models)
    ]
    for device, members in devices.items():
        if len(members) < 2:
            continue  # alone on its device: a server of its own
        ids = tuple(dict.fromkeys(spec.models[i].request_model for i in members))
        for i in members:
            requests[i] = replace(requests[i], device_model_ids=ids)
        first = requests[members[0]]
        for i in members[1:]:
            if spec.platform.kind is PlatformKind.LOCAL and emulator_settings(
                requests[i]
            ) != emulator_settings(first):
                raise ConfigError(
                    f"models[{i}] ({spec.models[i].name}) shares device {device!r} with"
                    f" {first.name}, so one emulator serves both: give them the same emulator"
                    " profile, overrides, load_time_s and faults, and protocols of one family"
                    " (HTTP or gRPC)"
                )
    return requests


def instance_load(load: LoadSpec, index: int) -> LoadSpec:
    """Instance ``index``'s load: the scenario's, with its own seed (its own prompt stream)."""
    return load.model_copy(update={"seed": load.seed + index})


def workers_per_instance(load: LoadSpec, instances: int, cores: int) -> int:
    """Load processes per instance: ``load.workers`` if given, else the cores shared out."""
    if load.workers is not None:
        return load.workers
    return max(1, cores // max(1, instances))


def common_window(timings: Sequence[PhaseTiming]) -> tuple[float, float]:
    """[latest measurement start, earliest measurement end] of phases run at once (see module)."""
    start = max(t.measure_start_s for t in timings)
    end = min(t.measure_end_s for t in timings)
    return start, max(start, end)


async def run_multi_model(context: RunContext) -> None:
    spec = context.spec
    if isinstance(spec.load.schedule, SweepSpec):
        raise ConfigError(
            "a multi-model run takes one schedule per phase, not a sweep: give load.schedule"
            " users (the default) or a rate"
        )
    check_dataset(spec.dataset, context.base_dir)  # validate the dataset before deploying
    requests = instance_requests(spec)
    instances: list[Instance] = []
    try:
        members = await _deploy_all(context, requests, instances)
        if members is None or context.stop.is_set():
            return
        workers = workers_per_instance(spec.load, len(members), usable_cores())
        await _concurrent_phase(context, members, workers)
        if spec.multi.sequential:
            for member in members:
                if context.stop.is_set():
                    return
                await _sequential_phase(context, member, workers)
    finally:
        await asyncio.shield(_delete_all(context, instances))


# --- deployment --------------------------------------------------------------------------------


async def _deploy_all(
    context: RunContext, requests: list[InstanceRequest], instances: list[Instance]
) -> list[Member] | None:
    """Deploy every instance (at most ``platform.deploy_concurrency`` at once), wait until each is
    ready and answers a probe. All must come up: a multi-model test with an instance missing
    would load the others at a different concurrency than asked. None when stopped meanwhile."""
    spec = context.spec
    slots = asyncio.Semaphore(spec.platform.deploy_concurrency)
    failures: list[str] = []

    async def one(index: int, request: InstanceRequest) -> Member | None:
        model = request.model
        async with slots:
            if context.stop.is_set() or failures:  # the run fails anyway: deploy no more
                return None
            try:
                instance = await context.platform.deploy(request)
            except DeployError as exc:
                failures.append(str(exc))
                return None
            instances.append(instance)
            try:
                target = await bring_up(context, instance)
            except (DeployError, TargetError) as exc:
                failures.append(mark_failed(instance, exc))
                return None
            await context.metrics.attach(scrape_target(instance, target, spec.metrics))
        return Member(model, instance, target, instance_load(spec.load, index))

    results = await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))
    if failures:
        raise DeployError(
            f"{len(failures)} of {len(spec.models)} instances failed before the load, and a"
            f" multi-model test needs all of them: {'; '.join(sorted(failures))}"
        )
    members = [m for m in results if m is not None]
    return members if len(members) == len(spec.models) else None


async def _delete_all(context: RunContext, instances: list[Instance]) -> None:
    # the closing scrape, while they still answer
    await asyncio.gather(*(context.metrics.detach(i.request.name) for i in instances))
    results = await asyncio.gather(
        *(context.platform.delete(i) for i in instances), return_exceptions=True
    )
    for result in results:
        if isinstance(result, BaseException):
            raise result


# --- phases ------------------------------------------------------------------------------------


async def _concurrent_phase(context: RunContext, members: list[Member], workers: int) -> None:
    """Every instance at once; the first failure stops the others (they cut and flush)."""
    phase_stop = asyncio.Event()
    relay = asyncio.create_task(_relay(context.stop, phase_stop))
    combined = CombinedProgress(context.progress, PHASE_CONCURRENT, len(members))

    async def one(member: Member) -> PhaseTiming:
        try:
            return await _load(
                context, member, PHASE_CONCURRENT, workers, combined.member(), phase_stop
            )
        except BaseException:
            phase_stop.set()
            raise

    try:
        results = await asyncio.gather(*(one(m) for m in members), return_exceptions=True)
    finally:
        relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay
        combined.close()
    done = [(m, r) for m, r in zip(members, results, strict=True) if isinstance(r, PhaseTiming)]
    if done:
        start, end = common_window([timing for _, timing in done])
        for member, timing in done:
            context.add_phase(
                PhaseWindow(
                    member.model.name, PHASE_CONCURRENT, timing.start_s, start, end, timing.end_s
                )
            )
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def _sequential_phase(context: RunContext, member: Member, workers: int) -> None:
    timing = await _load(context, member, PHASE_SEQUENTIAL, workers, context.progress, context.stop)
    context.add_phase(
        PhaseWindow(
            member.model.name,
            PHASE_SEQUENTIAL,
            timing.start_s,
            timing.measure_start_s,
            timing.measure_end_s,
            timing.end_s,
        )
    )


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


async def _load(
    context: RunContext,
    member: Member,
    phase: str,
    workers: int,
    progress: ProgressSink,
    stop: asyncio.Event,
) -> PhaseTiming:
    """One instance's load in one phase; its error breaker (if any) stops the whole run."""
    return await load_instance(
        context,
        member.model,
        member.target,
        member.load,
        phase,
        sink=context.records,
        progress=progress,
        stop=stop,
        workers=workers,
    )


# --- progress ----------------------------------------------------------------------------------


class CombinedProgress:
    """One progress line for instances loaded at once: their counters summed.

    A terminal shows one live phase at a time, and the concurrent phase is one phase of N
    instances. The line starts with the first instance and ends with the last (or ``close``).
    """

    def __init__(self, inner: ProgressSink, phase: str, instances: int) -> None:
        self._inner = inner
        self._instances = instances
        self._total = LoadCounters(instance=f"{instances} instances", phase=phase)
        self._parts: dict[int, LoadCounters] = {}
        self._ended: set[int] = set()
        self._members = 0
        self._started = False
        self._finished = False

    def member(self) -> ProgressSink:
        """The progress sink of one more instance."""
        self._members += 1
        return _Part(self, self._members)

    def _update(self, key: int, counters: LoadCounters) -> LoadCounters:
        self._parts[key] = counters
        total = self._total
        total.issued = sum(c.issued for c in self._parts.values())
        total.ok = sum(c.ok for c in self._parts.values())
        total.errors = sum(c.errors for c in self._parts.values())
        total.cut = sum(c.cut for c in self._parts.values())
        total.output_tokens = sum(c.output_tokens for c in self._parts.values())
        total.in_flight = sum(c.in_flight for c in self._parts.values())
        return total

    def started(self, key: int, counters: LoadCounters, duration_s: float) -> None:
        total = self._update(key, counters)
        if not self._started:
            self._started = True
            self._inner.phase_started(total, duration_s)

    def tick(self, key: int, counters: LoadCounters, elapsed_s: float) -> None:
        total = self._update(key, counters)
        if self._started and not self._finished:
            self._inner.tick(total, elapsed_s)

    def ended(self, key: int, counters: LoadCounters) -> None:
        self._update(key, counters)
        self._ended.add(key)
        if len(self._ended) >= self._instances:
            self.close()

    def close(self) -> None:
        """End the line if it started and has not ended (a member failed before its end)."""
        if self._started and not self._finished:
            self._finished = True
            self._inner.phase_ended(self._total)


class _Part:
    __slots__ = ("_key", "_owner")

    def __init__(self, owner: CombinedProgress, key: int) -> None:
        self._owner = owner
        self._key = key

    def phase_started(self, counters: LoadCounters, duration_s: float) -> None:
        self._owner.started(self._key, counters, duration_s)

    def tick(self, counters: LoadCounters, elapsed_s: float) -> None:
        self._owner.tick(self._key, counters, elapsed_s)

    def phase_ended(self, counters: LoadCounters) -> None:
        self._owner.ended(self._key, counters)

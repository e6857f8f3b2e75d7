"""Phase set-up shared by the scenarios that put load on instances (single-model, multi-model).

Terms. *Bringing up* an instance: wait until the platform says it is ready, resolve its target
(URL, model id, TLS, credentials) and check with one protocol probe that it answers. An instance
that fails a step is *failed before its load*: :func:`mark_failed` notes it in its deployment
record (status ``failed`` and the reason) and the scenario decides whether the run goes on.
A phase's *recipe* is what the load engine needs to build the phase's client and prompt streams
in any process, this one or a load worker: the two factories, by import name, and their JSON
arguments (:func:`phase_recipe`). :func:`load_instance` runs one instance's load in one phase from
its recipe, with the error breaker the load asks for: the one way every flavour puts load on an
instance.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from servingperf.errors import ServingPerfError
from servingperf.load.breaker import ErrorBreaker
from servingperf.load.engine import PhaseTiming, Recipe, run_phase
from servingperf.load.shard import is_open_loop
from servingperf.load.sinks import LoadCounters, PhaseOutputs, ProgressSink, RecordSink
from servingperf.model.deployments import DeploymentStatus
from servingperf.model.specs import LoadSpec, ModelSpec
from servingperf.model.target import Target
from servingperf.platforms.base import Instance
from servingperf.protocols.registry import create_client
from servingperf.scenarios.context import RunContext
from servingperf.scenarios.targets import target_for

CLIENT_FACTORY = "servingperf.protocols.registry:create_client"
REQUESTS_FACTORY = "servingperf.scenarios.requests:worker_request_factory"
OPEN_LOOP_STREAMS = 64  # open-loop request k draws its prompt from sampler k mod this


async def bring_up(context: RunContext, instance: Instance) -> Target:
    """The instance's target once it is ready and answers a probe; DeployError (never ready) or
    TargetError (the probe failed) otherwise, its record left for :func:`mark_failed`. What the
    server says it is (engine, version) goes to ``run.json`` (``environment.engines``), for the
    run's comparability fingerprint."""
    model = instance.request.model
    await context.platform.wait_ready(instance, context.spec.platform.ready_timeout_s)
    target = target_for(instance, model, context.spec.load, context.base_dir)
    client = create_client(target)
    try:
        await client.probe()
        describe = getattr(client, "describe", None)  # what the server says it is, if it says
        if callable(describe):
            engines = context.info.environment.setdefault("engines", {})
            engines[instance.request.name] = await describe()
            context.run_dir.write_info(context.info)
    finally:
        await client.aclose()
    return target


def mark_failed(instance: Instance, exc: ServingPerfError) -> str:
    """Note a failure before the load in the instance's deployment record (a reason the platform
    already gave is kept); the reason for the run's message, prefixed with the instance name."""
    record = instance.record
    if record.status != DeploymentStatus.FAILED.value:
        record.status = DeploymentStatus.FAILED.value
        record.failure_reason = str(exc)
    message = str(exc)
    name = instance.request.name
    return message if message.startswith(f"{name}:") else f"{name}: {message}"


def phase_recipe(
    context: RunContext, model: ModelSpec, target: Target, load: LoadSpec, phase: str
) -> Recipe:
    """The recipe of ``model``'s load ``load`` in ``phase``: names and JSON, because a load worker
    process rebuilds the client and the prompt streams itself (neither crosses processes)."""
    args = {
        "instance": model.name,
        "model_id": target.model,  # the instance's own id when its platform set one
        "phase": phase,
        # only what the scenario set: a dataset knows which fields were given (a trace's own
        # output lengths are used when output_tokens is not), and a full dump would set them all
        "dataset": context.spec.dataset.model_dump(mode="json", exclude_unset=True),
        "load": load.model_dump(mode="json"),
        "base_dir": str(context.base_dir),
        "streams": OPEN_LOOP_STREAMS if is_open_loop(load) else None,
        "adapters": model.adapters.model_dump(mode="json") if model.adapters else None,
        "output_tokens_from": model.tokens.output_tokens_from,
    }
    return Recipe(target, CLIENT_FACTORY, REQUESTS_FACTORY, args)


async def load_instance(
    context: RunContext,
    model: ModelSpec,
    target: Target,
    load: LoadSpec,
    phase: str,
    *,
    sink: RecordSink,
    progress: ProgressSink,
    stop: asyncio.Event,
    workers: int | None = None,
    on_timing: Callable[[PhaseTiming], None] | None = None,
) -> PhaseTiming:
    """Run ``model``'s load ``load`` in ``phase`` (``workers`` processes, default: the load's own
    choice), records to ``sink``; ``on_timing`` gets the phase's timing as soon as it ended and
    the instance's server metrics were scraped once more (the phase's closing scrape).

    An error breaker in ``load`` watches the progress and, when it trips, stops the whole run
    (``context.stop``) and raises once the phase has flushed and ``on_timing`` has run (so a
    tripped phase keeps its window)."""
    name = model.name
    breaker = ErrorBreaker.of(load.breaker, context.stop)
    timing = await run_phase(
        load,
        phase_recipe(context, model, target, load, phase),
        PhaseOutputs(
            sink,
            progress if breaker is None else breaker.watch(progress),
            LoadCounters(instance=name, phase=phase),
            context.t0,
        ),
        instance=name,
        phase=phase,
        records_dir=context.run_dir.records_dir,
        stop=stop,
        workers=workers,
    )
    await context.metrics.boundary([name])  # the phase's closing scrape of the instance
    context.add_health(name, phase, timing)
    if on_timing is not None:
        on_timing(timing)
    if breaker is not None:
        breaker.raise_if_tripped()
    return timing

"""The seed's single-model flavour: each model alone on the platform, N closed-loop users for a
duration, prompts drawn at random from a dataset subset; one phase ("load") per model.
"""

from __future__ import annotations

from servingperf.datasets.select import load_prompts
from servingperf.load.closed_loop import ClosedLoopPlan, run_closed_loop
from servingperf.load.sinks import LoadCounters
from servingperf.platforms.base import InstanceRequest
from servingperf.protocols.registry import create_client
from servingperf.results.rundir import PhaseWindow
from servingperf.scenarios.requests import request_factory
from servingperf.scenarios.runner import RunContext
from servingperf.scenarios.targets import target_for

PHASE = "load"


async def run_single_model(context: RunContext) -> None:
    spec = context.spec
    prompts = load_prompts(spec.dataset, context.base_dir)
    for index, model in enumerate(spec.models):
        if context.stop.is_set():
            return
        request = InstanceRequest(name=model.name, namespace=spec.name, model=model, seed=index)
        instance = await context.platform.deploy(request)
        try:
            await context.platform.wait_ready(instance, spec.platform.ready_timeout_s)
            client = create_client(target_for(instance, model, spec.load, context.base_dir))
            try:
                await client.probe()
                plan = ClosedLoopPlan(
                    users=spec.load.users,
                    duration_s=spec.load.duration_s,
                    ramp_up_s=spec.load.ramp_up_s,
                    request_timeout_s=spec.load.request_timeout_s,
                )
                make = request_factory(
                    model.name, model.request_model, PHASE, prompts, spec.dataset, spec.load
                )
                counters = LoadCounters(instance=model.name, phase=PHASE)
                timing = await run_closed_loop(
                    client,
                    plan,
                    make,
                    context.records,
                    context.progress,
                    counters,
                    context.t0,
                    stop=context.stop,
                )
                context.add_phase(
                    PhaseWindow(
                        instance=model.name,
                        phase=PHASE,
                        start_s=timing.start_s,
                        measure_start_s=timing.measure_start_s,
                        measure_end_s=timing.measure_end_s,
                        end_s=timing.end_s,
                    )
                )
            finally:
                await client.aclose()
        finally:
            await context.platform.delete(instance)

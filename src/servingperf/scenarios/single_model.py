"""The seed's single-model flavour: each model alone on the platform, under the scenario's load
schedule (closed-loop users by default), prompts drawn at random from a dataset subset; one phase
("load") per model, or one phase per stage of a sweep ("sweep-00", "sweep-01", ...).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from servingperf.analysis.summary import summarize_window
from servingperf.analysis.sweep import StageResult, SweepStage, next_stage, stage_result
from servingperf.errors import DeployError, TargetError
from servingperf.load.engine import PhaseTiming
from servingperf.load.sinks import ListSink, RecordSink
from servingperf.model.records import RequestRecord
from servingperf.model.specs import (
    LoadSpec,
    ModelSpec,
    RateScheduleSpec,
    SweepSpec,
    UsersScheduleSpec,
)
from servingperf.model.target import Target
from servingperf.platforms.base import InstanceRequest
from servingperf.results.record_writer import records_to_table
from servingperf.results.rundir import PhaseWindow
from servingperf.scenarios.context import RunContext
from servingperf.scenarios.phase_setup import bring_up, load_instance, mark_failed
from servingperf.scenarios.requests import check_dataset
from servingperf.scenarios.server_metrics import scrape_target

PHASE = "load"


async def run_single_model(context: RunContext) -> None:
    spec = context.spec
    check_dataset(spec.dataset, context.base_dir)  # validate the dataset before deploying
    failed: list[str] = []  # a model that cannot be deployed is reported; the others go on
    for index, model in enumerate(spec.models):
        if context.stop.is_set():
            return
        request = InstanceRequest(name=model.name, namespace=spec.name, model=model, seed=index)
        try:
            instance = await context.platform.deploy(request)
        except DeployError as exc:
            failed.append(str(exc))
            continue
        try:
            try:
                target = await bring_up(context, instance)
            except (DeployError, TargetError) as exc:
                failed.append(mark_failed(instance, exc))
                continue
            await context.metrics.attach(scrape_target(instance, target, spec.metrics))
            if isinstance(spec.load.schedule, SweepSpec):
                await _sweep(context, model, target, spec.load.schedule)
            else:
                await _phase(context, model, target, spec.load, PHASE, context.records)
        finally:
            await context.metrics.detach(model.name)
            await context.platform.delete(instance)
    if failed:
        raise DeployError(
            f"{len(failed)} of {len(spec.models)} models failed before their load:"
            f" {'; '.join(failed)}"
        )


async def _phase(
    context: RunContext,
    model: ModelSpec,
    target: Target,
    load: LoadSpec,
    phase: str,
    sink: RecordSink,
) -> PhaseWindow:
    windows: list[PhaseWindow] = []

    def add_window(timing: PhaseTiming) -> None:
        window = PhaseWindow(
            model.name,
            phase,
            timing.start_s,
            timing.measure_start_s,
            timing.measure_end_s,
            timing.end_s,
        )
        context.add_phase(window)
        windows.append(window)

    await load_instance(
        context,
        model,
        target,
        load,
        phase,
        sink=sink,
        progress=context.progress,
        stop=context.stop,
        on_timing=add_window,
    )
    return windows[0]


async def _sweep(context: RunContext, model: ModelSpec, target: Target, sweep: SweepSpec) -> None:
    """Run the stages analysis.sweep asks for, judging each from its own records."""
    history: list[tuple[SweepStage, StageResult]] = []
    while (stage := next_stage(sweep, history)) is not None and not context.stop.is_set():
        if stage.users is not None:
            load = context.spec.load.model_copy(
                update={"users": stage.users, "schedule": UsersScheduleSpec()}
            )
        else:
            schedule = RateScheduleSpec(
                rate_rps=stage.rate_rps or 0.0,
                arrivals=sweep.arrivals,
                burstiness=sweep.burstiness,
                max_concurrency=sweep.max_concurrency,
            )
            load = context.spec.load.model_copy(update={"schedule": schedule})
        mine = _Tee(context.records)
        window = await _phase(context, model, target, load, stage.phase, mine)
        on_disk = context.run_dir.read_records()  # worker processes' segments are complete
        from_workers = on_disk.filter(
            pc.and_(pc.equal(on_disk["phase"], stage.phase), pc.not_equal(on_disk["worker"], 0))
        )
        table = pa.concat_tables([from_workers, records_to_table(mine.kept.records)])
        history.append((stage, stage_result(summarize_window(table, window, context.spec.slo))))


class _Tee:
    """Writes to the run's sink and keeps a copy (a sweep stage run in this process)."""

    def __init__(self, sink: RecordSink) -> None:
        self._sink = sink
        self.kept = ListSink()

    def write(self, record: RequestRecord) -> None:
        self._sink.write(record)
        self.kept.write(record)

"""The seed's many-model flavour: deploy M namespaces x K instances of one model and validate each.

Terms. A *namespace driver* runs one namespace::

    for each of the K instances: deploy it, wait until ready, validate it with Q queries
    then validate each of the K instances again with Q queries

Drivers start ``namespace_stagger_s`` apart (the seed's drivers started 60 s apart), at most
``namespace_concurrency`` at once. A *validation query* is one small generation request
(``validation_output_tokens`` output tokens) sent through the model's protocol client, one at a
time per instance; each becomes a request record, of phase ``validate-deploy`` (right after the
instance became ready) or ``validate-namespace`` (the second round). A query is *ok* when its
record's status is ok; the counts go to the instance's deployment record (``validations_ok`` /
``validations_failed``) and ``t_first_validated_s`` is the end of its first ok query.

An instance that is refused, never becomes ready or crashes while starting is *failed*: its record
keeps the reason, it is removed at once (unless ``keep_deployed``), and the driver goes on with the
next instance. Anything else that goes wrong (a protocol this build cannot speak, a bug) stops the
run. Ctrl-C stops the drivers at once (a query in flight is recorded ``cut``). At the end every
instance is removed, unless ``keep_deployed`` and the drivers ran to their end
(:mod:`servingperf.scenarios.runner` says why an interrupted or failed run removes them all the
same). While the run goes, ``deployments.parquet`` is rewritten at most once a second, so an
interrupted run keeps every deployment fact gathered so far; refused instances' records go to the
run context too, so the runner's final write keeps them. Each namespace's driver window (start,
end) is a phase ``namespace`` in ``run.json`` with the namespace as its instance.

Progress: a progress sink that also implements :class:`DeployProgressSink` gets the deployment
counts; any other sink sees one phase line whose instance label carries them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from servingperf.datasets.select import load_prompts
from servingperf.errors import ConfigError, DeployError
from servingperf.load.execute import RequestFactory
from servingperf.load.sinks import LoadCounters
from servingperf.model.deployments import DeploymentRecord, DeploymentStatus
from servingperf.model.records import ErrorKind, Exchange, RequestStatus, freeze
from servingperf.model.specs import NAME_PATTERN, ManyModelSpec, ModelSpec
from servingperf.model.target import Target
from servingperf.platforms.base import Instance, InstanceRequest
from servingperf.protocols.registry import create_client
from servingperf.results.rundir import PhaseWindow
from servingperf.scenarios.context import RunContext
from servingperf.scenarios.requests import request_factory
from servingperf.scenarios.server_metrics import scrape_target
from servingperf.scenarios.targets import target_for

PHASE_DEPLOY = "validate-deploy"
PHASE_NAMESPACE = "validate-namespace"
PHASE_DRIVER = "namespace"
PROGRESS_LABEL = "many-model"
WRITE_INTERVAL_S = 1.0
TICK_INTERVAL_S = 0.5
DELETE_CONCURRENCY = 32

_NAME_RE = re.compile(NAME_PATTERN)


@dataclass(slots=True)
class DeployCounters:
    """Live deployment counts for progress display (figures come from the deployment records)."""

    planned: int
    namespaces: int = 0
    created: int = 0
    ready: int = 0
    failed: int = 0  # never ready (refused ones included)
    refused: int = 0  # refused by the platform: never created
    deleted: int = 0
    validations_ok: int = 0
    validations_failed: int = 0
    namespaces_started: int = 0
    namespaces_done: int = 0

    @property
    def loading(self) -> int:
        """Created, neither ready nor failed yet."""
        return self.created - self.ready - (self.failed - self.refused)

    def label(self) -> str:
        return (
            f"{self.ready}/{self.planned} ready, {self.loading} loading, {self.failed} failed,"
            f" namespaces {self.namespaces_done} done/{self.namespaces_started} started"
            f"/{self.namespaces}"
        )


@runtime_checkable
class DeployProgressSink(Protocol):
    """What a progress sink implements to show deployment counts (optional)."""

    def deployments_changed(self, counters: DeployCounters, elapsed_s: float) -> None: ...


@dataclass(frozen=True, slots=True)
class NamespacePlan:
    index: int
    name: str
    instances: tuple[str, ...]


def plan_namespaces(many: ManyModelSpec, model: ModelSpec) -> list[NamespacePlan]:
    """Namespace and instance names: ``<prefix>-01`` and ``<model>-<ns>-<i>``, zero-padded so they
    sort in creation order. Instance names are unique in the run (records are keyed by them) and
    are DNS labels, as Kubernetes requires; ConfigError names what to shorten otherwise."""
    ns_width = max(2, len(str(many.namespaces)))
    i_width = max(2, len(str(many.instances_per_namespace)))
    plans = []
    for n in range(many.namespaces):
        namespace = f"{many.namespace_prefix}-{n + 1:0{ns_width}d}"
        names = tuple(
            f"{model.name}-{n + 1:0{ns_width}d}-{i + 1:0{i_width}d}"
            for i in range(many.instances_per_namespace)
        )
        for name in (namespace, names[-1]):
            if not _NAME_RE.fullmatch(name):
                raise ConfigError(
                    f"many-model name {name!r} is not a DNS label of at most 63 characters:"
                    " shorten the model name or many_model.namespace_prefix"
                )
        plans.append(NamespacePlan(n, namespace, names))
    return plans


async def run_many_model(context: RunContext) -> None:
    """Run the many-model scenario on ``context.platform`` (any Platform)."""
    await _ManyModelRun(context).run()


class _ManyModelRun:
    def __init__(self, context: RunContext) -> None:
        spec = context.spec
        self.context = context
        self.many = spec.many
        self.model = spec.models[0]
        self.plans = plan_namespaces(self.many, self.model)
        validation_dataset = spec.dataset.model_copy(
            update={"output_tokens": self.many.validation_output_tokens}
        )
        self.prompts = (
            load_prompts(validation_dataset, context.base_dir) if self.many.queries else ()
        )
        self.validation_dataset = validation_dataset
        self.counters = DeployCounters(
            planned=len(self.plans) * self.many.instances_per_namespace,
            namespaces=len(self.plans),
        )
        self.load_counters = LoadCounters(instance=self.counters.label(), phase=PROGRESS_LABEL)
        self.instances: list[Instance] = []
        self.refused = context.refused  # the runner writes them too, after the platform's
        self.error: BaseException | None = None
        self.failure = asyncio.Event()
        self.dirty = True
        self.last_write = -math.inf

    # --- the whole run --------------------------------------------------------------------------

    async def run(self) -> None:
        context = self.context
        context.progress.phase_started(self.load_counters, math.inf)
        reporter = asyncio.create_task(self._report_loop(), name="many-model-progress")
        main = asyncio.create_task(self._drive_all(), name="many-model-drivers")
        waiters = [
            asyncio.create_task(context.stop.wait()),
            asyncio.create_task(self.failure.wait()),
        ]
        try:
            await asyncio.wait([main, *waiters], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (main, *waiters):
                task.cancel()
            outcome = await asyncio.gather(main, *waiters, return_exceptions=True)
            try:
                if not self._keeps(outcome[0]):
                    await self._delete_all()
            finally:
                reporter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reporter
                self._write_deployments()
                self._tick()
                context.progress.phase_ended(self.load_counters)
        if self.error is not None:
            raise self.error
        first = outcome[0]
        if isinstance(first, BaseException) and not isinstance(first, asyncio.CancelledError):
            raise first

    def _keeps(self, main: object) -> bool:
        """Leave the instances deployed: asked for, and the drivers ran to their end (an
        interrupted or failed run removes everything, as the runner does: see its docstring)."""
        ended = not isinstance(main, BaseException)
        return self.many.keep_deployed and ended and not self.context.stop.is_set()

    async def _drive_all(self) -> None:
        """Start the drivers, staggered and at most ``namespace_concurrency`` at once."""
        slots = asyncio.Semaphore(self.many.namespace_concurrency)
        drivers: list[asyncio.Task[None]] = []
        last_start: float | None = None
        try:
            for plan in self.plans:
                await slots.acquire()
                if last_start is not None:
                    await asyncio.sleep(
                        max(0.0, last_start + self.many.namespace_stagger_s - time.monotonic())
                    )
                last_start = time.monotonic()
                drivers.append(
                    asyncio.create_task(self._driver(plan, slots), name=f"driver-{plan.name}")
                )
            await asyncio.gather(*drivers)
        finally:
            for task in drivers:
                task.cancel()
            await asyncio.gather(*drivers, return_exceptions=True)

    async def _driver(self, plan: NamespacePlan, slots: asyncio.Semaphore) -> None:
        start = time.monotonic() - self.context.t0
        self.counters.namespaces_started += 1
        try:
            ready: list[Instance] = []
            for index, name in enumerate(plan.instances):
                instance = await self._deploy_one(plan, index, name)
                if instance is not None:
                    ready.append(instance)
                    await self._validate(instance, PHASE_DEPLOY)
            for instance in ready:
                await self._validate(instance, PHASE_NAMESPACE)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # stops the run; re-raised by run() after clean-up
            if self.error is None:
                self.error = exc
            self.failure.set()
        finally:
            slots.release()
            self.counters.namespaces_done += 1
            end = time.monotonic() - self.context.t0
            self.context.add_phase(
                PhaseWindow(
                    instance=plan.name,
                    phase=PHASE_DRIVER,
                    start_s=start,
                    measure_start_s=start,
                    measure_end_s=end,
                    end_s=end,
                )
            )

    # --- one instance ---------------------------------------------------------------------------

    async def _deploy_one(self, plan: NamespacePlan, index: int, name: str) -> Instance | None:
        """Deploy and wait until ready; None (the instance reported failed) when it does not."""
        platform = self.context.platform
        request = InstanceRequest(
            name=name,
            namespace=plan.name,
            model=self.model,
            seed=plan.index * self.many.instances_per_namespace + index,
        )
        try:
            instance = await platform.deploy(request)
        except DeployError as exc:
            self.refused.append(self._refused_record(request, str(exc)))
            self.counters.failed += 1
            self.counters.refused += 1
            self.dirty = True
            return None
        self.instances.append(instance)
        self.counters.created += 1
        self.dirty = True
        try:
            await platform.wait_ready(instance, self.context.spec.platform.ready_timeout_s)
        except DeployError as exc:
            record = instance.record
            reason = record.failure_reason or str(exc)
            self.counters.failed += 1
            self.dirty = True
            if not self.many.keep_deployed:
                with contextlib.suppress(DeployError):
                    await platform.delete(instance)
                    self.counters.deleted += 1
            record.status = DeploymentStatus.FAILED.value  # a delete must not hide the failure
            record.failure_reason = reason
            return None
        self.counters.ready += 1
        self.dirty = True
        context = self.context
        target = target_for(instance, self.model, context.spec.load, context.base_dir)
        await context.metrics.attach(scrape_target(instance, target, context.spec.metrics))
        return instance

    def _refused_record(self, request: InstanceRequest, reason: str) -> DeploymentRecord:
        return DeploymentRecord(
            instance=request.name,
            namespace=request.namespace,
            model=request.model.request_model,
            platform=self.context.platform.name,
            clock_source="harness",
            status=DeploymentStatus.FAILED.value,
            failure_reason=reason,
        )

    def _factory(self, instance: Instance, target: Target, phase: str) -> RequestFactory:
        """Validation requests for ``instance``, carrying its target's model id (the instance's
        own when the platform set one, see :mod:`servingperf.scenarios.targets`)."""
        spec = self.context.spec
        return request_factory(
            instance.request.name,
            target.model,
            phase,
            self.prompts,
            self.validation_dataset,
            spec.load,
            output_tokens_from=self.model.tokens.output_tokens_from,
        )

    async def _validate(self, instance: Instance, phase: str) -> None:
        """``queries`` sequential validation queries, each one a record; never raises for a
        failed query (it is counted on the instance's deployment record)."""
        if self.many.queries == 0:
            return
        context = self.context
        target = target_for(instance, self.model, context.spec.load, context.base_dir)
        make = self._factory(instance, target, phase)
        timeout_s = context.spec.load.request_timeout_s
        client = create_client(target)
        try:
            for sequence in range(self.many.queries):
                request, request_context = make(0, sequence)
                exchange = Exchange(request=request, mono_scheduled=time.monotonic())
                self.load_counters.issued += 1
                self.load_counters.in_flight += 1
                try:
                    async with asyncio.timeout(timeout_s):
                        await client.generate(exchange)
                except TimeoutError:
                    exchange.fail(
                        time.monotonic(), ErrorKind.TIMEOUT, f"no answer within {timeout_s} s"
                    )
                except asyncio.CancelledError:
                    self.load_counters.in_flight -= 1
                    self.load_counters.cut += 1
                    context.records.write(freeze(exchange, request_context, context.t0))
                    raise
                except Exception as exc:  # a client bug is a failed query, as in the load engine
                    exchange.fail(time.monotonic(), ErrorKind.PROTOCOL, f"client error: {exc!r}")
                self.load_counters.in_flight -= 1
                record = freeze(exchange, request_context, context.t0)
                context.records.write(record)
                self._count(instance, exchange, record.t_end_s)
        finally:
            await client.aclose()

    def _count(self, instance: Instance, exchange: Exchange, t_end_s: float | None) -> None:
        deployment = instance.record
        if exchange.status is RequestStatus.OK:
            deployment.validations_ok += 1
            self.counters.validations_ok += 1
            self.load_counters.ok += 1
            self.load_counters.output_tokens += exchange.usage_output_tokens or sum(
                exchange.chunk_tokens
            )
            if deployment.t_first_validated_s is None:
                deployment.t_first_validated_s = t_end_s
        else:
            deployment.validations_failed += 1
            self.counters.validations_failed += 1
            self.load_counters.errors += 1
        self.dirty = True

    # --- clean-up and reporting -------------------------------------------------------------------

    async def _delete_all(self) -> None:
        slots = asyncio.Semaphore(DELETE_CONCURRENCY)
        platform = self.context.platform

        async def delete(instance: Instance) -> None:
            async with slots:
                await self.context.metrics.detach(instance.request.name)
                try:
                    await platform.delete(instance)
                except DeployError as exc:
                    if instance.record.failure_reason is None:
                        instance.record.failure_reason = f"delete failed: {exc}"
                    return
                self.counters.deleted += 1
                self.dirty = True

        await asyncio.gather(*(delete(i) for i in self.instances if i.record.t_deleted_s is None))

    def records(self) -> list[DeploymentRecord]:
        """Every deployment record of the run: deployed instances, then refused ones."""
        return [i.record for i in self.instances] + self.refused

    def _write_deployments(self) -> None:
        self.context.run_dir.write_deployments(self.records())
        self.dirty = False
        self.last_write = time.monotonic()

    def _tick(self) -> None:
        self.load_counters.instance = self.counters.label()
        elapsed = time.monotonic() - self.context.t0
        progress = self.context.progress
        progress.tick(self.load_counters, elapsed)
        if isinstance(progress, DeployProgressSink):
            progress.deployments_changed(self.counters, elapsed)

    async def _report_loop(self) -> None:
        """Progress twice a second; deployment records rewritten at most once a second."""
        while True:
            self._tick()
            if self.dirty and time.monotonic() - self.last_write >= WRITE_INTERVAL_S:
                self._write_deployments()
            await asyncio.sleep(TICK_INTERVAL_S)

"""Run a scenario end to end: create the run directory, deploy, load, and always finish cleanly.

Whatever happens (success, a target failure, Ctrl-C), the records gathered so far are flushed,
everything deployed is removed, ``run.json`` says how the run ended, ``deployments.parquet`` holds
the record of every instance the platform took into use (whatever the platform), and the summary
and report are drawn from what was recorded. The scenario modules only orchestrate phases.

*Kept* instances. A many-model scenario with ``many_model.keep_deployed`` asks to leave its
instances deployed for the user to inspect. The runner honours that only when the run completes
(:func:`keeps_deployed`): it then does not close the platform, and hands it back in
:attr:`RunOutcome.kept`; the caller ends it with ``release()`` (the instances stay, the platform's
own sessions and watches are closed: what the CLI does) or ``close()`` (they are removed). A run
that is interrupted (Ctrl-C, SIGTERM, cancellation) or fails removes everything all the same: an
interruption means "stop and leave nothing behind" (a cancelled CI job is the common case, and
nobody is there to inspect or remove what it left), and a failed run stopped on the harness's
side, not at a state the user asked to look at; the deployment records (``failure_reason``) and
the instances' logs keep the diagnosis. Instances that fail to start during a completed run are
kept with the others. Local servers die with the harness process whatever is kept
(:mod:`servingperf.platforms.local`), so on the local platform kept instances outlive the run
only within the process that ran it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from servingperf.errors import ConfigError, ServingPerfError
from servingperf.load.sinks import ProgressSink
from servingperf.model.deployments import DeploymentRecord
from servingperf.model.specs import PlatformKind, ScenarioKind, ScenarioSpec
from servingperf.platforms.base import Platform
from servingperf.platforms.local import LocalLimits, LocalPlatform
from servingperf.platforms.static import StaticPlatform
from servingperf.results.record_writer import ParquetRecordWriter
from servingperf.results.redact import Redactor
from servingperf.results.rundir import RunDir, RunInfo, utc_iso
from servingperf.scenarios.calibration import calibrate
from servingperf.scenarios.context import RunContext
from servingperf.scenarios.environment import environment
from servingperf.scenarios.outputs import write_report, write_summary
from servingperf.scenarios.registry import flavour
from servingperf.scenarios.server_metrics import query_windows
from servingperf.scenarios.targets import check_tokenizers
from servingperf.telemetry.session import ServerMetrics, prometheus_token


@dataclass(slots=True)
class RunOptions:
    base_dir: Path  # the scenario file's folder: relative paths in the scenario resolve here
    runs_dir: Path  # where run directories are created
    out: Path | None = None  # exact run directory, overriding runs_dir/<run_id>
    report: bool = True


@dataclass(slots=True)
class RunOutcome:
    run_dir: RunDir
    info: RunInfo
    summary: dict[str, Any]
    # The platform still holding the instances left deployed (see the module docstring); the
    # caller owns it and must end it: ``await kept.release()`` leaves them deployed and closes
    # the platform's own sessions, ``await kept.close()`` removes them. None: nothing was kept.
    kept: Platform | None = None


def new_run_id(name: str, now: datetime) -> str:
    return f"{name}-{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(2)}"


def make_platform(
    spec: ScenarioSpec, work_dir: Path, t0: float, run_id: str, base_dir: Path
) -> Platform:
    kind = spec.platform.kind
    if kind is PlatformKind.LOCAL:
        limits = spec.platform.limits
        return LocalPlatform(
            work_dir,
            t0,
            host=spec.platform.host,
            deploy_concurrency=spec.platform.deploy_concurrency,
            limits=LocalLimits(
                memory_limit_mib=limits.memory_limit_mib,
                cpus=tuple(limits.cpus) if limits.cpus else None,
                nice=limits.nice,
            ),
            run_id=run_id,
        )
    if kind is PlatformKind.STATIC:
        return StaticPlatform(t0)
    if kind is PlatformKind.KSERVE and spec.platform.kserve is not None:
        from servingperf.platforms.kserve import KServePlatform

        return KServePlatform(spec.platform.kserve, run_id, t0, base_dir)
    raise ConfigError(f"platform kind {kind.value!r} is not available in this build")


def keeps_deployed(spec: ScenarioSpec, status: str) -> bool:
    """True when the run's final clean-up leaves the instances deployed: the user asked for it
    (``many_model.keep_deployed``) and the run completed (see the module docstring for why an
    interrupted or failed run removes everything all the same)."""
    asked = spec.kind is ScenarioKind.MANY_MODEL and spec.many.keep_deployed
    return asked and status == "complete"


async def run_scenario(
    spec: ScenarioSpec,
    options: RunOptions,
    progress: ProgressSink,
    stop: asyncio.Event,
) -> RunOutcome:
    """Run ``spec``; ServingPerfError after clean-up if it failed, with the run dir still written."""
    scenario = flavour(spec.kind)
    check_tokenizers(spec, options.base_dir)  # bad input, before a run directory exists
    token = prometheus_token(spec.metrics)  # a variable named but unset: bad input, before all
    started = datetime.now(UTC)
    t0 = time.monotonic()
    run_id = new_run_id(spec.name, started)
    run_dir = RunDir(options.out or options.runs_dir / run_id)
    run_dir.create()
    config = spec.model_dump(mode="json")
    redactor = Redactor.for_scenario(config, options.base_dir)  # no secret reaches a run file
    if token:
        redactor.add(token)
    info = RunInfo(
        run_id=run_id,
        scenario=spec.name,
        kind=spec.kind.value,
        started_at=utc_iso(started),
        t0_monotonic=t0,
        labels=redactor.json(dict(spec.labels)),
        config=redactor.json(config),
        environment=redactor.json(environment()),
    )
    run_dir.write_info(info)
    if spec.kind is not ScenarioKind.MANY_MODEL:  # its validation queries are not a load
        info.environment["client_calibration"] = await calibrate(spec)
        run_dir.write_info(info)
    platform = make_platform(spec, run_dir.path / "instances", t0, run_id, options.base_dir)
    records = ParquetRecordWriter(run_dir.records_dir)
    metrics = ServerMetrics(
        spec.metrics, run_dir.metrics_dir, t0, token=token, redact=redactor.text
    )
    context = RunContext(
        spec, options.base_dir, run_dir, info, t0, platform, records, progress, stop, metrics
    )
    failure: ServingPerfError | None = None
    keep = False
    try:
        await metrics.start()
        await scenario(context)
        info.status = "incomplete" if stop.is_set() else "complete"
        if stop.is_set():
            info.status_reason = "interrupted"
    except ServingPerfError as exc:
        failure = exc
        info.status, info.status_reason = "failed", redactor.text(str(exc))
    except asyncio.CancelledError:
        info.status, info.status_reason = "incomplete", "cancelled"
        raise
    finally:
        # A stop that came after the scenario returned is an interruption too: remove.
        keep = keeps_deployed(spec, info.status) and not stop.is_set()
        try:
            try:  # before the platform closes: spans still being exported need their servers
                await asyncio.shield(
                    metrics.finish(
                        query_windows(info.phases),
                        interrupted=stop.is_set() or info.status != "complete",
                    )
                )
            finally:
                if not keep:
                    await asyncio.shield(platform.close())
        finally:
            records.close()
            _write_deployments(run_dir, platform, context.refused, redactor)
            info.ended_at = utc_iso(datetime.now(UTC))
            run_dir.write_info(info)
    summary = write_summary(run_dir)
    if options.report:
        write_report(run_dir)
    if failure is not None:
        raise redactor.error(failure)
    return RunOutcome(run_dir, info, summary, kept=platform if keep else None)


def _write_deployments(
    run_dir: RunDir, platform: Platform, refused: list[DeploymentRecord], redactor: Redactor
) -> None:
    """The records of every instance the platform took into use, as they stand, then the refused
    ones, secrets masked (an endpoint URL may carry credentials, a failure reason may quote a
    server). Written for every run, empty when nothing was deployed, so every run directory has
    the same files."""
    records = [i.record for i in platform.instances] + refused
    for record in records:
        if record.failure_reason:
            record.failure_reason = redactor.text(record.failure_reason)
        if record.endpoint:
            record.endpoint = redactor.text(record.endpoint)
    run_dir.write_deployments(records)

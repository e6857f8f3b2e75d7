"""The run context: what a scenario flavour gets from the runner, and the flavour's signature.

A *flavour* (single-, multi-, many-model) is an async function of a :class:`RunContext`. It only
orchestrates: deploys through ``platform``, loads through the load engine, writes records to
``records`` and phase windows through :meth:`RunContext.add_phase`, and stops when ``stop`` is set.
The runner (:mod:`servingperf.scenarios.runner`) creates the context and always finishes the run;
flavours depend on this module, never on the runner, so the runner can list them
(:mod:`servingperf.scenarios.registry`) without an import circle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servingperf.load.execute import PhaseTiming
from servingperf.load.sinks import ProgressSink
from servingperf.model.deployments import DeploymentRecord
from servingperf.model.specs import ScenarioSpec
from servingperf.platforms.base import Platform
from servingperf.results.record_writer import ParquetRecordWriter
from servingperf.results.rundir import PhaseWindow, RunDir, RunInfo
from servingperf.telemetry.session import ServerMetrics


@dataclass(slots=True)
class RunContext:
    """What a scenario module gets: the spec, where to write, how to deploy, when to stop."""

    spec: ScenarioSpec
    base_dir: Path
    run_dir: RunDir
    info: RunInfo
    t0: float
    platform: Platform
    records: ParquetRecordWriter
    progress: ProgressSink
    stop: asyncio.Event
    # The run's server metrics (scraping, spans, Prometheus): scenarios attach each instance
    # once ready, mark every phase boundary and detach before deleting (servingperf.telemetry).
    metrics: ServerMetrics
    # Records of instances the platform refused (never created, so it holds no Instance for
    # them): a scenario adds them here and the runner writes them after the platform's.
    refused: list[DeploymentRecord] = field(default_factory=list)
    # The load generator's health per phase (``load_health.json``), for the validity verdict.
    health: list[dict[str, Any]] = field(default_factory=list)

    def add_phase(self, window: PhaseWindow) -> None:
        self.info.phases.append(window)
        self.run_dir.write_info(self.info)

    def add_health(self, instance: str, phase: str, timing: PhaseTiming) -> None:
        """Keep the load processes' health of one phase, written at once (an interrupted run
        keeps what its finished phases measured)."""
        processes = [h.to_json() for h in timing.health]
        self.health.append({"instance": instance, "phase": phase, "processes": processes})
        self.run_dir.write_load_health(self.health)


ScenarioFn = Callable[[RunContext], Awaitable[None]]
"""A flavour: runs the scenario's phases in ``context``; raises ServingPerfError on failure."""

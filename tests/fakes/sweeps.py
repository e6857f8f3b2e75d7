"""Synthetic rate sweeps: a made-up server judged by the real sweep decisions, and the
``summary.json`` stage entries such a sweep would write (``summarize_window``'s throughput part).

The server completes min(offered, ``capacity``) requests/s; with ``slo_limit`` it meets the SLOs
(attainment 1.0) at offered rates up to the limit and 0.9 above, without it no SLO was given.
"""

from __future__ import annotations

from typing import Any

from servingperf.analysis.sweep import StageResult, SweepStage, next_stage, sweep_summary
from servingperf.model.specs import SweepSpec

Judge = Any  # Callable[[SweepStage], StageResult]


def synthetic_server(capacity: float, slo_limit: float | None) -> Judge:
    def judge(stage: SweepStage) -> StageResult:
        if stage.users is not None:
            return StageResult(capacity, None if slo_limit is None else 0.5)
        offered = stage.rate_rps or 0.0
        attainment = None if slo_limit is None else (1.0 if offered <= slo_limit else 0.9)
        return StageResult(min(offered, capacity), attainment)

    return judge


def run_sweep(spec: SweepSpec, judge: Judge) -> list[tuple[SweepStage, StageResult]]:
    """Every stage the decisions ask for, judged by ``judge`` (bounded: 100 stages)."""
    history: list[tuple[SweepStage, StageResult]] = []
    for _ in range(100):
        stage = next_stage(spec, history)
        if stage is None:
            return history
        history.append((stage, judge(stage)))
    raise AssertionError("the sweep never ended")


def stage_entries(
    history: list[tuple[SweepStage, StageResult]], instance: str
) -> dict[str, dict[str, Any]]:
    """``summary.json["instances"]`` entries of the stages (the fields the sweep reads)."""
    entries = {}
    for stage, result in history:
        goodput = None
        if result.slo_attainment is not None:
            goodput = result.completed_rps * result.slo_attainment
        entries[f"{instance}/{stage.phase}"] = {
            "instance": instance,
            "phase": stage.phase,
            "throughput": {"request_rps": result.completed_rps, "goodput_rps": goodput},
        }
    return entries


def synthetic_sweep(
    instances: dict[str, tuple[float, float | None]], spec: SweepSpec | None = None
) -> dict[str, Any]:
    """``summary.json["sweep"]`` of sweeps of made-up servers: instance -> (capacity, slo_limit)."""
    spec = spec or SweepSpec(precision=0.02, max_stages=12)
    entries: dict[str, dict[str, Any]] = {}
    for name, (capacity, slo_limit) in instances.items():
        entries |= stage_entries(run_sweep(spec, synthetic_server(capacity, slo_limit)), name)
    return sweep_summary(spec, entries)

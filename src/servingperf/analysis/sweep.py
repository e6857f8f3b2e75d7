"""The rate sweep's decisions, as pure functions of the stages run so far.

Terms. A *stage* runs one load for a fixed time: the first, the *probe*, is closed loop with
``probe_users`` users and measures the *capacity* C (completed requests/s when the server is kept
busy); every later stage is open loop at an *offered* rate. A stage's *completed* rate is its
measured requests per second (ok requests ending in its window, as in ``summary.json``); its *SLO
attainment* is goodput / completed (the fraction of those meeting every SLO; ``None`` without
SLOs). A stage is *saturated* when completed < (1 - saturation_tolerance) x offered (the server,
or the client, did not keep up); it *passes* when it is not saturated and its attainment, if any,
is at least ``slo_attainment``.

Search: after the probe, the first open-loop stage offers C. If it passes, C is the answer (no
higher rate can complete). Otherwise the answer lies in [low, high) with low = the highest passing
rate (0 at first) and high = the lowest failing rate; each next stage offers the midpoint, until
(high - low) / high < ``precision`` or ``max_stages`` stages have run. The *knee* of the
throughput curve is the highest offered rate that was not saturated: beyond it, offering more
stops yielding proportionally more completions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from servingperf.model.specs import SweepSpec


@dataclass(frozen=True, slots=True)
class SweepStage:
    """What to run next: a closed-loop probe (``users``) or an open-loop ``rate_rps``."""

    index: int
    users: int | None = None
    rate_rps: float | None = None

    @property
    def is_probe(self) -> bool:
        return self.users is not None

    @property
    def phase(self) -> str:
        """The records' phase name of this stage."""
        return f"sweep-{self.index:02d}"


@dataclass(frozen=True, slots=True)
class StageResult:
    """The figures a decision reads, taken from the stage's summary."""

    completed_rps: float
    slo_attainment: float | None = None


@dataclass(frozen=True, slots=True)
class SweepOutcome:
    capacity_rps: float | None  # the probe's completed rate
    max_rate_meeting_slos_rps: float | None  # highest passing offered rate (None: none passed)
    knee_rps: float | None  # highest offered rate not saturated
    stages: int


History = Sequence[tuple[SweepStage, StageResult]]


def stage_result(summary_entry: Mapping[str, Any]) -> StageResult:
    """A stage's figures from its ``summary.json`` instance entry (summarize_window's output)."""
    throughput = summary_entry["throughput"]
    completed = float(throughput["request_rps"] or 0.0)
    goodput = throughput.get("goodput_rps")
    attainment = None
    if goodput is not None:
        attainment = float(goodput) / completed if completed > 0 else 0.0
    return StageResult(completed_rps=completed, slo_attainment=attainment)


def saturated(spec: SweepSpec, offered_rps: float, result: StageResult) -> bool:
    return result.completed_rps < (1.0 - spec.saturation_tolerance) * offered_rps


def passes(spec: SweepSpec, offered_rps: float, result: StageResult) -> bool:
    if saturated(spec, offered_rps, result):
        return False
    return result.slo_attainment is None or result.slo_attainment >= spec.slo_attainment


def _bracket(spec: SweepSpec, history: History) -> tuple[float, float | None]:
    """(low, high): highest passing and lowest failing offered rates (high None: none failed)."""
    low, high = 0.0, None
    for stage, result in history:
        if stage.rate_rps is None:
            continue
        if passes(spec, stage.rate_rps, result):
            low = max(low, stage.rate_rps)
        elif high is None or stage.rate_rps < high:
            high = stage.rate_rps
    return low, high


def next_stage(spec: SweepSpec, history: History) -> SweepStage | None:
    """The stage to run after ``history`` (in run order), or None when the sweep is done."""
    if not history:
        return SweepStage(index=0, users=spec.probe_users)
    if len(history) >= spec.max_stages:
        return None
    probe = history[0][1]
    capacity = probe.completed_rps
    if capacity <= 0:
        return None  # nothing completed even when kept busy: no rate can pass
    index = len(history)
    if index == 1:
        return SweepStage(index=index, rate_rps=capacity)
    low, high = _bracket(spec, history)
    if high is None:
        return None  # the capacity itself passed
    if (high - low) / high < spec.precision:
        return None
    return SweepStage(index=index, rate_rps=(low + high) / 2.0)


def outcome(spec: SweepSpec, history: History) -> SweepOutcome:
    """What the sweep found (also for a sweep stopped early)."""
    capacity = history[0][1].completed_rps if history and history[0][0].is_probe else None
    low, _ = _bracket(spec, history)
    unsaturated = [
        stage.rate_rps
        for stage, result in history
        if stage.rate_rps is not None and not saturated(spec, stage.rate_rps, result)
    ]
    return SweepOutcome(
        capacity_rps=capacity,
        max_rate_meeting_slos_rps=low if low > 0 else None,
        knee_rps=max(unsaturated) if unsaturated else None,
        stages=len(history),
    )

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

Stored. Each stage is a phase of its own (``sweep-00``, ``sweep-01``...), so ``summary.json`` has
one entry per stage; :func:`sweep_summary` replays the decisions on those entries and writes what
the sweep found, per instance, as ``summary.json["sweep"]``.
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


def replay(spec: SweepSpec, entries: Sequence[Mapping[str, Any]]) -> tuple[History, int]:
    """The history of a sweep from its stages' ``summary.json`` entries, in run order.

    An entry does not say what rate its stage offered: :func:`next_stage` decided it from the
    stages before, so replaying the decisions on the stored figures gives it back exactly. Returns
    the history and how many entries could not be explained that way (0 for any run this code
    wrote; entries past the first unexplained one are not used).
    """
    history: list[tuple[SweepStage, StageResult]] = []
    for used, entry in enumerate(entries):
        stage = next_stage(spec, history)
        if stage is None or stage.phase != entry.get("phase"):
            return history, len(entries) - used
        history.append((stage, stage_result(entry)))
    return history, 0


def _stage_json(spec: SweepSpec, stage: SweepStage, result: StageResult) -> dict[str, Any]:
    offered = stage.rate_rps
    return {
        "phase": stage.phase,
        "kind": "probe" if stage.is_probe else "open-loop",
        "users": stage.users,
        "offered_rps": offered,
        "completed_rps": result.completed_rps,
        "slo_attainment": result.slo_attainment,
        "saturated": None if offered is None else saturated(spec, offered, result),
        "passed": None if offered is None else passes(spec, offered, result),
    }


def verdict(found: SweepOutcome, slos: bool) -> str:
    """The sweep's answer in one sentence (the report's and the CLI's verdict line)."""
    what = "highest rate meeting the SLOs" if slos else "highest rate not saturated"
    answer = (
        f"{what}: {found.max_rate_meeting_slos_rps:.4g} req/s"
        if found.max_rate_meeting_slos_rps is not None
        else f"{what}: none of the rates tried"
    )
    knee = f"{found.knee_rps:.4g} req/s" if found.knee_rps is not None else "not found"
    capacity = f"{found.capacity_rps:.4g} req/s" if found.capacity_rps is not None else "unknown"
    stages = f"{found.stages} stage{'' if found.stages == 1 else 's'}"
    return f"{answer}; knee {knee}; measured capacity {capacity} ({stages})"


def sweep_summary(spec: SweepSpec, instances: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``summary.json["sweep"]``: per instance, the sweep's outcome and every stage, recomputed
    from the stage entries of ``summary.json["instances"]`` (those whose phase is ``sweep-NN``).

    Per instance: ``capacity_rps``, ``max_rate_meeting_slos_rps``, ``knee_rps`` (None when not
    found), ``slos`` (whether any SLO was given: without, a stage passes on saturation alone),
    ``criteria`` (the spec's ``slo_attainment`` and ``saturation_tolerance``), ``verdict`` (one
    sentence), ``unexplained_stages`` (entries the replay could not place: 0 normally) and
    ``stages`` in run order: ``phase``, ``kind`` (probe | open-loop), ``users`` (probe),
    ``offered_rps`` (None for the probe), ``completed_rps``, ``slo_attainment``, ``saturated`` and
    ``passed`` (None for the probe).
    """
    by_instance: dict[str, list[tuple[int, Mapping[str, Any]]]] = {}
    for key, entry in instances.items():
        phase = str(entry.get("phase") or "")
        prefix, _, number = phase.partition("-")
        if prefix != "sweep" or not number.isdigit():
            continue
        instance = str(entry.get("instance") or key.rpartition("/")[0])
        by_instance.setdefault(instance, []).append((int(number), entry))
    result: dict[str, Any] = {}
    for instance, numbered in by_instance.items():
        entries = [entry for _, entry in sorted(numbered, key=lambda item: item[0])]
        history, unexplained = replay(spec, entries)
        found = outcome(spec, history)
        slos = any(r.slo_attainment is not None for _, r in history)
        result[instance] = {
            "capacity_rps": found.capacity_rps,
            "max_rate_meeting_slos_rps": found.max_rate_meeting_slos_rps,
            "knee_rps": found.knee_rps,
            "slos": slos,
            "criteria": {
                "slo_attainment": spec.slo_attainment,
                "saturation_tolerance": spec.saturation_tolerance,
            },
            "verdict": verdict(found, slos),
            "unexplained_stages": unexplained,
            "stages": [_stage_json(spec, stage, res) for stage, res in history],
        }
    return result

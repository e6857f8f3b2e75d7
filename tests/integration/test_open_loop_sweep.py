"""A sweep scenario end to end against the emulator: a closed-loop probe stage, then open-loop
stages at the rates analysis.sweep picks, each a phase of its own in run.json and summary.json;
what the sweep found is written to summary.json["sweep"]."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from servingperf.analysis.sweep import (
    StageResult,
    SweepStage,
    next_stage,
    outcome,
    passes,
    stage_result,
)
from servingperf.config import parse_scenario
from servingperf.load.sinks import NullProgress
from servingperf.model.specs import SweepSpec
from servingperf.scenarios.runner import RunOptions, run_scenario

pytestmark = pytest.mark.slow

SCENARIO = """\
name: sweep
platform: {kind: local}
models:
  - name: small
    emulator: {profile: flan-t5-small, load_time_s: 0.2, overrides: {max_batch: 4}}
load:
  duration_s: 1.5
  ramp_up_s: 0.5
  workers: 1
  schedule: {kind: sweep, probe_users: 8, max_stages: 4, arrivals: constant}
dataset: {source: synthetic, synthetic_input_tokens: 16, prompts: 8, seed: 1, output_tokens: 8}
slo: {ttft_s: 10.0}
"""


async def test_sweep_runs_the_stages_the_pure_decision_asks_for(tmp_path: Path) -> None:
    spec = parse_scenario(SCENARIO, "sweep.yaml")
    options = RunOptions(base_dir=tmp_path, runs_dir=tmp_path, out=tmp_path / "run", report=False)
    run = await run_scenario(spec, options, NullProgress(), asyncio.Event())
    phases = [w.phase for w in run.info.phases]
    assert phases[0] == "sweep-00"
    assert 2 <= len(phases) <= 4
    summary = run.summary["instances"]
    # replaying the decisions on the stored summaries gives the same stages
    sweep = spec.load.schedule
    assert isinstance(sweep, SweepSpec)
    history: list[tuple[SweepStage, StageResult]] = []
    for phase in phases:
        stage = next_stage(sweep, history)
        assert stage is not None
        assert stage.phase == phase
        history.append((stage, stage_result(summary[f"small/{phase}"])))
    # what the sweep found is in summary.json, recomputed from the stored stages
    found = outcome(sweep, history)
    written = json.loads(run.run_dir.summary_json.read_text())["sweep"]
    assert written == run.summary["sweep"]
    small = written["small"]
    assert small["capacity_rps"] == found.capacity_rps
    assert small["max_rate_meeting_slos_rps"] == found.max_rate_meeting_slos_rps
    assert small["knee_rps"] == found.knee_rps
    assert small["unexplained_stages"] == 0 and small["slos"] is True
    assert [s["phase"] for s in small["stages"]] == phases
    assert small["stages"][1]["offered_rps"] == pytest.approx(found.capacity_rps)
    assert [s["completed_rps"] for s in small["stages"]] == [r.completed_rps for _, r in history]
    assert (
        [s["passed"] for s in small["stages"][1:]]
        == [
            passes(sweep, st.rate_rps, r)  # type: ignore[arg-type]
            for st, r in history[1:]
        ]
    )
    probe = summary["small/sweep-00"]
    assert probe["throughput"]["request_rps"] > 0
    # the first open-loop stage offers what the probe completed
    records = run.run_dir.read_records().to_pylist()
    first = [r for r in records if r["phase"] == "sweep-01"]
    assert first
    assert all(r["worker"] == 0 for r in first)

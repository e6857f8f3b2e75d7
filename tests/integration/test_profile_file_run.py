"""A scenario naming a profile file runs the local platform's emulator process with it: the
step cost the file gives is the time per output token the client measures (a real process on
loopback; the bound allows a loaded machine on the high side only)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from servingperf.config import load_scenario
from servingperf.load.sinks import NullProgress
from servingperf.results.rundir import RunDir
from servingperf.scenarios.runner import RunOptions, run_scenario

STEP_S = 0.02


@pytest.mark.slow
async def test_the_emulator_runs_the_profile_file_a_scenario_names(tmp_path: Path) -> None:
    twin = {
        "servingperf_profile": 1,
        "name": "twin",
        "version": "2.5.0",
        "base": "instant",
        "parameters": {"decode_base_s": STEP_S},
    }
    (tmp_path / "twin.yaml").write_text(yaml.safe_dump(twin), encoding="utf-8")
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(
        """\
name: twin-run
platform: {kind: local}
models:
  - name: m
    emulator: {profile: twin.yaml, load_time_s: 0}
load: {users: 2, duration_s: 2, ramp_up_s: 0, drain_s: 5, workers: 1}
dataset: {source: bundled, prompts: 4, output_tokens: 8}
""",
        encoding="utf-8",
    )
    spec = load_scenario(scenario)
    out = tmp_path / "run"
    options = RunOptions(base_dir=tmp_path, runs_dir=tmp_path, out=out, report=False)
    await run_scenario(spec, options, NullProgress(), asyncio.Event())
    summary = RunDir(out).read_summary()
    tpot = summary["instances"]["m"]["stats"]["tpot_s"]
    assert tpot["n"] >= 10
    assert STEP_S * 0.95 <= tpot["p50"] <= STEP_S * 1.5, tpot

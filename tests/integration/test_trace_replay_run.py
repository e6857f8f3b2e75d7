"""Trace replay through a whole run (#18): request k is scheduled at the trace's k-th arrival
offset / speedup (exactly: the record keeps the schedule, never the send), is never sent before
it, and, on this machine, nearly always within the validity verdict's lateness bound; each
request asks for the trace's output length."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from servingperf.analysis.validity import BEHIND_S
from servingperf.config import load_scenario
from servingperf.datasets.traces import read_trace
from servingperf.load.sinks import NullProgress
from servingperf.results.rundir import RunDir
from servingperf.scenarios.runner import RunOptions, run_scenario

ROOT = Path(__file__).parents[2]
TRACE = ROOT / "examples" / "traces" / "mooncake-sample.jsonl"
SPEEDUP = 20.0


@pytest.mark.slow
async def test_replay_sends_follow_the_trace(tmp_path: Path) -> None:
    trace = read_trace(TRACE, "mooncake")
    span_s = trace[-1].t_s / SPEEDUP
    scenario = tmp_path / "replay.yaml"
    scenario.write_text(
        f"""\
name: replay
platform: {{kind: local}}
models:
  - name: m
    emulator: {{profile: instant, load_time_s: 0}}
load:
  duration_s: {span_s + 1:.3f}
  ramp_up_s: 0
  drain_s: 5
  workers: 1
  schedule: {{kind: trace, speedup: {SPEEDUP}}}
dataset:
  source: trace
  trace: {{path: "{TRACE}", format: mooncake, block_tokens: 16}}
""",
        encoding="utf-8",
    )
    out = tmp_path / "run"
    options = RunOptions(base_dir=tmp_path, runs_dir=tmp_path, out=out, report=False)
    await run_scenario(load_scenario(scenario), options, NullProgress(), asyncio.Event())
    rows = sorted(RunDir(out).read_records().to_pylist(), key=lambda r: r["t_scheduled_s"])
    assert len(rows) == len(trace)
    first = rows[0]["t_scheduled_s"]
    for row, recorded in zip(rows, trace, strict=True):
        assert row["t_scheduled_s"] - first == pytest.approx(recorded.t_s / SPEEDUP, abs=1e-6)
        assert row["requested_output_tokens"] == recorded.output_tokens
        assert row["t_sent_s"] >= row["t_scheduled_s"]  # never early
    late = [r for r in rows if r["t_sent_s"] - r["t_scheduled_s"] > BEHIND_S]
    assert len(late) <= max(2, len(rows) // 20), [r["t_sent_s"] - r["t_scheduled_s"] for r in late]

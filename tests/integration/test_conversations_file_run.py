"""Conversations read from a file, through a whole run: each turn is a record of its session, in
turn order, and each sends the history. The load worker rebuilds the dataset from the scenario's
JSON; a dataset dumped with every default filled in looked as if it set the synthetic-session
fields beside ``path``, which the dataset refuses, and the phase failed (found with the
trace-replay lengths, fixed in ``scenarios/phase_setup.py``)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from servingperf.config import load_scenario
from servingperf.load.sinks import NullProgress
from servingperf.results.rundir import RunDir
from servingperf.scenarios.runner import RunOptions, run_scenario


@pytest.mark.slow
async def test_conversations_from_a_file_run_turn_by_turn(tmp_path: Path) -> None:
    lines = [
        {"conversations": [{"from": "human", "value": f"question {i} {k}"} for k in range(3)]}
        for i in range(4)
    ]
    (tmp_path / "chats.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), "utf-8")
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        """\
name: chats
platform: {kind: local}
models:
  - name: m
    protocol: openai-chat
    emulator: {profile: instant, load_time_s: 0, overrides: {decode_base_s: 0.002}}
load: {users: 2, duration_s: 2, ramp_up_s: 0, drain_s: 5, workers: 1}
dataset:
  source: conversations
  output_tokens: 4
  conversations: {path: chats.jsonl}
""",
        encoding="utf-8",
    )
    out = tmp_path / "run"
    options = RunOptions(base_dir=tmp_path, runs_dir=tmp_path, out=out, report=False)
    await run_scenario(load_scenario(scenario), options, NullProgress(), asyncio.Event())
    rows = [r for r in RunDir(out).read_records().to_pylist() if r["status"] == "ok"]
    assert rows and all(r["session"] is not None and r["turn"] is not None for r in rows)
    assert {r["turn"] for r in rows} >= {0, 1, 2}

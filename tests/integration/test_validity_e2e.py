"""Validity end to end, against the emulator: a starved client is ``invalid`` and the gate refuses
to judge it (exit 4, from the command line); a healthy run is ``valid``.

Starved: one load process asked for 40,000 requests/s, far above what it can issue (the run's
own calibration measures its ceiling at a few thousand per CPU-second here); with a 64-request
cap the emulator and the client both fall behind, so most arrivals go late or never go.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from servingperf.config import parse_scenario
from servingperf.continuous.ingest import ingest
from servingperf.load.sinks import NullProgress
from servingperf.results.rundir import RunDir
from servingperf.results.store import open_store
from servingperf.scenarios.runner import RunOptions, run_scenario

pytestmark = pytest.mark.slow

HEALTHY = """\
name: validity-e2e
labels: {release: "1.0"}
models:
  - name: small
    emulator: {profile: flan-t5-small, load_time_s: 0}
load: {users: 4, duration_s: 5, ramp_up_s: 0.5, workers: 1}
dataset: {source: synthetic, prompts: 16, output_tokens: 8}
"""
STARVED = """\
name: validity-e2e
labels: {release: "2.0"}
models:
  - name: small
    emulator: {profile: flan-t5-small, load_time_s: 0}
load:
  workers: 1
  duration_s: 3
  ramp_up_s: 0
  schedule: {kind: rate, rate_rps: 40000, arrivals: constant, max_concurrency: 64}
dataset: {source: synthetic, prompts: 16, output_tokens: 8}
"""


async def _run(tmp: Path, text: str, name: str) -> RunDir:
    spec = parse_scenario(text, f"{name}.yaml")
    options = RunOptions(base_dir=tmp, runs_dir=tmp, out=tmp / name, report=False)
    outcome = await run_scenario(spec, options, NullProgress(), asyncio.Event())
    return outcome.run_dir


async def test_a_starved_client_is_invalid_and_the_gate_refuses_it(tmp_path: Path) -> None:
    healthy = await _run(tmp_path, HEALTHY, "healthy")
    starved = await _run(tmp_path, STARVED, "starved")
    good = healthy.read_summary()["validity"]
    assert good["verdict"] == "valid", good["reasons"]
    assert good["calibration"]["status"] == "ok"
    assert 0 < good["client_usage_max"] < 0.8  # the headroom the run had
    bad = starved.read_summary()["validity"]
    assert bad["verdict"] == "invalid"
    assert any("never sent" in r or "after their scheduled time" in r for r in bad["reasons"])
    health = json.loads((starved.path / "load_health.json").read_text())["phases"][0]
    assert health["processes"][0]["unsent"] > 0 and health["processes"][0]["loop_samples"] > 0

    store = tmp_path / "results.db"
    with open_store(str(store)) as opened:
        ingest(opened, healthy)
        ingest(opened, starved)

    def gate(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "servingperf",
                "gate",
                "--store",
                str(store),
                "--reference",
                "release=1.0",
                "--candidate",
                "release=2.0",
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    refused = gate("--json", str(tmp_path / "gate.json"))
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert "not judged" in refused.stdout
    document = json.loads((tmp_path / "gate.json").read_text())
    assert document["exit_code"] == 4 and "invalid run" in document["refused"]
    # told to judge it anyway, the gate does (the starved run's figures are what they are; its
    # load differs from the reference's, so comparability must be relaxed too)
    judged = gate("--allow-invalid", "--allow-incomparable")
    assert judged.returncode in (0, 1), judged.stdout + judged.stderr

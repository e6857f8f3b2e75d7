"""The release gate end to end: real runs against the emulator, recorded in a store, gated from
the command line. A slower emulator release is caught (exit 1, JUnit failure); the same release
run again is not (exit 0); a stored run can be re-gated and its report redrawn without rerunning.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from servingperf.config import parse_scenario
from servingperf.continuous.ingest import ingest
from servingperf.load.sinks import NullProgress
from servingperf.results.store import open_store
from servingperf.scenarios.runner import RunOptions, run_scenario

pytestmark = pytest.mark.slow

SCENARIO = """\
name: gate-e2e
labels: {{release: "{release}"}}
models:
  - name: small
    emulator: {{profile: flan-t5-small, load_time_s: 0, overrides: {{decode_base_s: {decode}}}}}
load: {{users: 8, duration_s: 6, ramp_up_s: 1}}
dataset: {{source: synthetic, prompts: 16, output_tokens: 32}}
"""


async def _run(tmp: Path, release: str, decode_base_s: float) -> Path:
    spec = parse_scenario(SCENARIO.format(release=release, decode=decode_base_s), "gate.yaml")
    out = tmp / f"run-{release}"
    options = RunOptions(base_dir=tmp, runs_dir=tmp, out=out, report=False)
    await run_scenario(spec, options, NullProgress(), asyncio.Event())
    return out


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "servingperf", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def test_gate_catches_the_slow_release_and_passes_the_same_one(tmp_path: Path) -> None:
    runs = {
        "2.5.0": await _run(tmp_path, "2.5.0", 0.005),
        "2.6.0": await _run(tmp_path, "2.6.0", 0.005),
        "2.7.0": await _run(tmp_path, "2.7.0", 0.0065),  # 30% slower decode steps
    }
    store_path = str(tmp_path / "results.db")
    from servingperf.results.rundir import RunDir

    with open_store(store_path) as store:
        for path in runs.values():
            ingest(store, RunDir(path))

    slow = _cli(
        "gate",
        "--store",
        store_path,
        "--reference",
        "release=2.5.0",
        "--candidate",
        "release=2.7.0",
        "--junit",
        "out/junit.xml",
        "--markdown",
        "out/gate.md",
        "--json",
        "out/gate.json",
        cwd=tmp_path,
    )
    assert slow.returncode == 1, slow.stdout + slow.stderr
    document = json.loads((tmp_path / "out" / "gate.json").read_text())
    by_kpi = {v["kpi"]: v for v in document["verdicts"]}
    assert by_kpi["tpot_s"]["outcome"] == "regressed"
    assert by_kpi["tpot_s"]["relative_change"] == pytest.approx(0.3, abs=0.1)
    # one run per release: every output says the interval holds within-run variance only
    assert document["within_run_only"] is True
    assert by_kpi["tpot_s"]["run_variance"] == "within_run_only"
    suite = ET.parse(tmp_path / "out" / "junit.xml").getroot()
    failed = {case.get("name") for case in suite if case.find("failure") is not None}
    assert "tpot_s.median" in failed
    flags = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert flags["within_run_only"] == "true"
    markdown = (tmp_path / "out" / "gate.md").read_text()
    assert "regression" in markdown
    assert "Within-run variance only" in markdown

    same = _cli(
        "gate",
        "--store",
        store_path,
        "--reference",
        "release=2.5.0",
        "--candidate",
        "release=2.6.0",
        "--threshold",
        "0.2",  # identical runs, one per side, moved a 14 ms TTFT by 10 % on a loaded machine
        "--json",
        "out/same.json",
        cwd=tmp_path,
    )
    assert same.returncode == 0, same.stdout + same.stderr
    outcomes = {
        v["outcome"] for v in json.loads((tmp_path / "out/same.json").read_text())["verdicts"]
    }
    assert "regressed" not in outcomes

    # acknowledged: the regression is reported but no longer fails the gate
    (tmp_path / "acks.yaml").write_text(
        "version: 1\nacknowledgements:\n"
        "  - {kpi: '*', candidate: {release: '2.7.*'}, reason: slower decode accepted}\n"
    )
    acked = _cli(
        "gate",
        "--store",
        store_path,
        "--reference",
        "release=2.5.0",
        "--candidate",
        "release=2.7.0",
        "--acknowledgements",
        "acks.yaml",
        cwd=tmp_path,
    )
    assert acked.returncode == 0, acked.stdout + acked.stderr

    # re-analysis long after: summary and report are redrawn from the stored records alone
    redraw = _cli("report", str(runs["2.7.0"]), cwd=tmp_path)
    assert redraw.returncode == 0, redraw.stderr
    assert (runs["2.7.0"] / "report.html").stat().st_size > 100_000

    history = _cli("history", "--store", store_path, "--releases", cwd=tmp_path)
    assert history.returncode == 0 and "2.7.0" in history.stdout

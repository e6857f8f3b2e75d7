"""How a multi-model run behaves around its phases: stopping, load worker processes, a failed
deployment. Servers: an in-process emulator serving several model ids (static platform), or
emulator processes (local platform)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from servingperf.config import parse_scenario
from servingperf.emulator.server import ServeOptions, start_server
from servingperf.errors import DeployError
from servingperf.load.sinks import NullProgress
from servingperf.results.rundir import RunDir
from servingperf.scenarios.runner import RunOptions, RunOutcome, run_scenario

pytestmark = pytest.mark.slow

DATASET = "dataset: {source: synthetic, synthetic_input_tokens: 8, prompts: 4, output_tokens: 4}"


@pytest.fixture
async def server_url() -> AsyncIterator[str]:
    running = await start_server(
        ServeOptions(
            profile="flan-t5-small",
            model_ids=("a", "b"),
            overrides={"decode_base_s": 0.01, "decode_per_seq_s": 0.0},
            load_time_s=0,
        )
    )
    try:
        yield running.url
    finally:
        await running.close()


def _static(url: str, load: str) -> str:
    return f"""\
name: mm-control
kind: multi-model
platform: {{kind: static}}
models:
  - {{name: a, model_id: a, endpoint: {{url: "{url}"}}}}
  - {{name: b, model_id: b, endpoint: {{url: "{url}"}}}}
load: {load}
{DATASET}
"""


async def _run(text: str, out: Path, stop: asyncio.Event | None = None) -> RunOutcome:
    spec = parse_scenario(text, "scenario.yaml")
    options = RunOptions(base_dir=out.parent, runs_dir=out.parent, out=out, report=False)
    return await run_scenario(spec, options, NullProgress(), stop or asyncio.Event())


async def test_a_stop_during_the_concurrent_phase_ends_the_run_there(
    server_url: str, tmp_path: Path
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.call_later(1.5, stop.set)
    started = loop.time()
    # no start-of-run calibration: the stop must land in the concurrent phase, 1.5 s in
    load = "{users: 2, duration_s: 30, ramp_up_s: 0.2, workers: 1, calibration_s: 0}"
    outcome = await _run(_static(server_url, load), tmp_path / "run", stop)
    assert loop.time() - started < 10  # not the 30 s planned, nor a sequential phase
    info = outcome.run_dir.read_info()
    assert info.status == "incomplete"
    assert {(w.instance, w.phase) for w in info.phases} == {
        ("a", "concurrent"),
        ("b", "concurrent"),
    }
    records = outcome.run_dir.read_records()
    assert set(records.column("phase").to_pylist()) == {"concurrent"}
    assert set(records.column("instance").to_pylist()) == {"a", "b"}


async def test_worker_processes_of_every_instance_keep_all_their_records(
    server_url: str, tmp_path: Path
) -> None:
    text = _static(server_url, "{users: 4, duration_s: 1.5, ramp_up_s: 0.2, workers: 2}")
    outcome = await _run(text, tmp_path / "run")
    records = outcome.run_dir.read_records()
    rows = records.to_pylist()
    assert len({r["request_id"] for r in rows}) == len(rows) > 0
    for instance in ("a", "b"):
        for phase in ("concurrent", "sequential"):
            workers = {
                r["worker"] for r in rows if (r["instance"], r["phase"]) == (instance, phase)
            }
            assert workers == {1, 2}, (instance, phase)  # no worker's segments were overwritten
    records_dir = outcome.run_dir.records_dir  # segments straight in records/, no staging
    assert [p.name for p in records_dir.iterdir() if p.is_dir()] == []
    names = [p.name for p in records_dir.glob("part-w*.parquet")]
    # each worker of each (instance, phase) wrote at least one segment of its own name
    assert len(names) >= 8
    assert any(n.startswith("part-w001-") for n in names)
    assert any(n.startswith("part-w002-") for n in names)


def _servers_left(marker: str) -> list[int]:
    """Emulator processes whose command line names ``marker`` (their run directory)."""
    left = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes()
            if b"emulator\x00serve" in cmdline and marker.encode() in cmdline:
                left.append(int(entry.name))
    return left


async def test_an_instance_that_cannot_start_fails_the_run_and_nothing_is_left(
    tmp_path: Path,
) -> None:
    text = f"""\
name: mm-fail
kind: multi-model
platform: {{kind: local, ready_timeout_s: 30}}
models:
  - name: good
    emulator: {{profile: flan-t5-small, load_time_s: 0}}
  - name: bad
    emulator: {{profile: flan-t5-small, load_time_s: 0.2, faults: {{start: fail}}}}
load: {{users: 1, duration_s: 1, ramp_up_s: 0}}
{DATASET}
"""
    run = tmp_path / "run"
    with pytest.raises(DeployError, match=r"1 of 2 instances failed before the load.*bad"):
        await _run(text, run)
    assert RunDir(run).read_info().status == "failed"
    deployments = RunDir(run).read_deployments().to_pylist()
    statuses = {d["instance"]: d["status"] for d in deployments}
    assert statuses == {"bad": "failed", "good": "deleted"}
    assert _servers_left(str(run)) == []

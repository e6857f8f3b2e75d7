"""Real worker processes: a phase spread over 2 spawned workers writes each worker's records to its
own segments, and the run directory's reader merges them into exactly the unsharded schedule;
stop and a failing worker end the phase cleanly; a scenario with workers matches the emulator's
ground truth."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from pathlib import Path

import pyarrow as pa
import pytest

from servingperf.config import parse_scenario
from servingperf.load.engine import Recipe, run_phase
from servingperf.load.execute import PhaseTiming
from servingperf.load.schedules import arrival_times
from servingperf.load.sinks import ListSink, LoadCounters, NullProgress, PhaseOutputs
from servingperf.model.specs import LoadSpec, RateScheduleSpec
from servingperf.results.rundir import RunDir
from servingperf.scenarios.runner import RunOptions, run_scenario
from tests.fakes.clients import fake_target
from tests.support.ground_truth import compare, load_ground_truth

pytestmark = pytest.mark.slow

FAKE = "tests.fakes.clients:fake_client"
REQUESTS = "tests.fakes.clients:fake_requests"


def _read(records_dir: Path) -> pa.Table:
    run = RunDir(records_dir.parent)
    return run.read_records()


async def _phase(
    tmp_path: Path,
    load: LoadSpec,
    recipe: Recipe,
    stop: asyncio.Event | None = None,
    timings: list[PhaseTiming] | None = None,
) -> tuple[pa.Table, LoadCounters, ListSink]:
    records_dir = tmp_path / "records"
    records_dir.mkdir()
    counters = LoadCounters("i", "load")
    sink = ListSink()
    timing = await run_phase(
        load,
        recipe,
        PhaseOutputs(sink, NullProgress(), counters, time.monotonic()),
        instance="i",
        phase="load",
        records_dir=records_dir,
        stop=stop,
        workers=2,
    )
    if timings is not None:
        timings.append(timing)
    return _read(records_dir), counters, sink


def _no_children_left() -> bool:
    return not multiprocessing.active_children()


async def test_two_workers_share_an_open_loop_schedule_exactly(tmp_path: Path) -> None:
    schedule = RateScheduleSpec(rate_rps=60, arrivals="poisson", max_concurrency=64)
    load = LoadSpec(schedule=schedule, duration_s=1.5, ramp_up_s=0.25, seed=11)
    recipe = Recipe(fake_target(first_delay_s=0.01, tokens=3), FAKE, REQUESTS, {})
    timings: list[PhaseTiming] = []
    table, counters, sink = await _phase(tmp_path, load, recipe, timings=timings)
    assert sink.records == []  # records never cross the pipe
    # each worker writes its own segments (one or more, by flush interval)
    assert sorted({p.name[:10] for p in (tmp_path / "records").glob("*.parquet")}) == [
        "part-w001-",
        "part-w002-",
    ]
    rows = table.to_pylist()
    expected = list(arrival_times(schedule, until_s=1.75, seed=11))
    users = sorted(r["user"] for r in rows)
    # each arrival at most once, from the one schedule; on a loaded machine a worker that starts
    # late may not send its last arrivals before the phase ends: those are counted as unsent
    # (its health record, the validity verdict's evidence), never lost silently
    assert len(set(users)) == len(users) and set(users) <= set(range(len(expected)))
    unsent = sum(h.unsent for h in timings[0].health)
    # every missing arrival is counted (a worker counts what was due by its own end of issuing,
    # which may be a few arrivals past the common end: at least the missing ones)
    assert len(expected) - len(users) <= unsent, (len(users), unsent, len(expected))
    assert all(r["worker"] == 1 + r["user"] % 2 for r in rows)  # round-robin shards
    starts = [r["t_scheduled_s"] - expected[r["user"]] for r in rows]
    assert max(starts) - min(starts) < 1e-6  # one common start time for both processes
    assert counters.issued == len(rows)
    assert counters.ok + counters.errors + counters.cut == len(rows)
    assert _no_children_left()


async def test_two_workers_split_closed_loop_users(tmp_path: Path) -> None:
    load = LoadSpec(users=5, duration_s=1.0, ramp_up_s=0.2)
    recipe = Recipe(fake_target(first_delay_s=0.02, tokens=2), FAKE, REQUESTS, {})
    table, counters, _ = await _phase(tmp_path, load, recipe)
    rows = table.to_pylist()
    assert {(r["user"], r["worker"]) for r in rows} == {(u, 1 + u % 2) for u in range(5)}
    assert sum(1 for r in rows if r["status"] == "cut") == 5  # one in flight per user at the end
    assert counters.issued == len(rows)


async def test_stop_reaches_every_worker(tmp_path: Path) -> None:
    load = LoadSpec(users=4, duration_s=60.0, ramp_up_s=0.0)
    recipe = Recipe(fake_target(first_delay_s=0.05, tokens=1), FAKE, REQUESTS, {})
    stop = asyncio.Event()
    # 10 s: the workers are spawned processes, whose start takes seconds on a loaded machine
    asyncio.get_running_loop().call_later(10.0, stop.set)
    started = time.monotonic()
    table, _, _ = await _phase(tmp_path, load, recipe, stop)
    assert time.monotonic() - started < 40.0  # the phase was 60 s
    assert {r["worker"] for r in table.to_pylist()} == {1, 2}
    assert _no_children_left()


async def test_a_failing_worker_fails_the_phase_and_no_process_is_left(tmp_path: Path) -> None:
    load = LoadSpec(users=2, duration_s=5.0, ramp_up_s=0.0)
    recipe = Recipe(fake_target(), "tests.fakes.clients:no_such_factory", REQUESTS, {})
    with pytest.raises(RuntimeError, match="no_such_factory"):
        await _phase(tmp_path, load, recipe)
    assert _no_children_left()


SCENARIO = """\
name: workers
platform: {kind: local}
models:
  - name: small
    emulator: {profile: flan-t5-small, load_time_s: 0.2}
load:
  duration_s: 4
  ramp_up_s: 1
  workers: 2
  schedule: {kind: rate, rate_rps: 20, arrivals: poisson}
dataset: {source: synthetic, synthetic_input_tokens: 32, prompts: 16, seed: 3, output_tokens: 16}
slo: {ttft_s: 5.0}
"""


async def test_a_scenario_on_two_workers_matches_the_server(tmp_path: Path) -> None:
    spec = parse_scenario(SCENARIO, "workers.yaml")
    options = RunOptions(base_dir=tmp_path, runs_dir=tmp_path, out=tmp_path / "run", report=False)
    outcome = await run_scenario(spec, options, NullProgress(), asyncio.Event())
    records = outcome.run_dir.read_records()
    rows = records.to_pylist()
    assert {r["worker"] for r in rows} == {1, 2}
    truth = load_ground_truth(list((tmp_path / "run" / "instances").rglob("ground_truth.jsonl")))
    comparison = compare(records, truth)
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) > 40
    assert comparison.matched == len(ok)
    assert comparison.missing_on_server == []
    assert comparison.token_mismatches == []
    summary = outcome.summary["instances"]["small"]
    # SLOs of the scenario file reach goodput: every request meets a 5 s TTFT here
    assert summary["throughput"]["goodput_rps"] == pytest.approx(
        summary["throughput"]["request_rps"]
    )
    assert summary["stats"]["client_lag_s"]["n"] == summary["counts"]["issued"]
    assert _no_children_left()

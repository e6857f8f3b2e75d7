"""``many_model.keep_deployed`` on the local platform (real emulator processes): a completed run
leaves its servers running and hands the platform back; an interrupted run removes them all the
same. Each test has its own state directory, so the marked servers it counts are its own, and
kills whatever it finds there at the end."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from servingperf.config import parse_scenario
from servingperf.load.sinks import NullProgress
from servingperf.model.specs import ScenarioSpec
from servingperf.platforms.reaper import STATE_ENV, find_servers, reap_stale
from servingperf.scenarios.many_model import DeployCounters
from servingperf.scenarios.runner import RunOptions, RunOutcome, keeps_deployed, run_scenario

pytestmark = pytest.mark.slow

SCENARIO = """\
name: keep
kind: many-model
platform: {{kind: local, ready_timeout_s: 30}}
models:
  - name: m
    emulator: {{profile: flan-t5-small, load_time_s: {load_time_s}}}
many_model:
  namespaces: 1
  instances_per_namespace: 2
  queries: 1
  validation_output_tokens: 4
  namespace_stagger_s: 0
  keep_deployed: true
dataset: {{source: synthetic, synthetic_input_tokens: 8, prompts: 2, seed: 1, output_tokens: 4}}
"""


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = (tmp_path / "state").resolve()
    monkeypatch.setenv(STATE_ENV, str(path))
    try:
        yield path
    finally:  # never leave a test's servers running, whatever failed
        for server in find_servers(path):
            os.killpg(server.pgrp, signal.SIGKILL)


class StopWhenReady(NullProgress):
    """Sets ``stop`` once an instance is ready: an interruption in the middle of the run."""

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop

    def deployments_changed(self, counters: DeployCounters, elapsed_s: float) -> None:
        if counters.ready >= 1:
            self.stop.set()


async def _run(
    spec: ScenarioSpec, tmp_path: Path, progress: NullProgress, stop: asyncio.Event
) -> RunOutcome:
    options = RunOptions(base_dir=tmp_path, runs_dir=tmp_path, out=tmp_path / "run", report=False)
    return await run_scenario(spec, options, progress, stop)


async def _answers(url: str) -> bool:
    timeout = aiohttp.ClientTimeout(total=5)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(f"{url}/health") as response,
        ):
            return response.status == 200
    except (TimeoutError, aiohttp.ClientError):
        return False


async def test_a_completed_run_keeps_its_servers_until_the_caller_closes(
    tmp_path: Path, state: Path
) -> None:
    spec = parse_scenario(SCENARIO.format(load_time_s=0.2), "keep.yaml")
    outcome = await _run(spec, tmp_path, NullProgress(), asyncio.Event())
    assert outcome.info.status == "complete"
    assert outcome.kept is not None
    try:
        deployments = outcome.run_dir.read_deployments().to_pylist()
        assert sorted(d["instance"] for d in deployments) == ["m-01-01", "m-01-02"]
        for d in deployments:  # recorded as left: ready, never deleted
            assert (d["status"], d["t_deleted_s"]) == ("ready", None)
            assert d["validations_ok"] == 2
            assert await _answers(d["endpoint"])
        assert len(find_servers(state)) == 2
        report = await asyncio.to_thread(reap_stale, state)  # `servingperf cleanup`
        assert (report.killed, report.live_owned) == ([], 2)  # its harness (we) is alive
        assert len(find_servers(state)) == 2
    finally:
        await outcome.kept.close()
    assert find_servers(state) == []
    for d in deployments:
        assert not await _answers(d["endpoint"])


async def test_an_interrupted_run_removes_its_servers_despite_keep_deployed(
    tmp_path: Path, state: Path
) -> None:
    spec = parse_scenario(SCENARIO.format(load_time_s=1.0), "keep.yaml")
    stop = asyncio.Event()
    outcome = await _run(spec, tmp_path, StopWhenReady(stop), stop)
    assert (outcome.info.status, outcome.info.status_reason) == ("incomplete", "interrupted")
    assert outcome.kept is None
    assert find_servers(state) == []
    deployments = outcome.run_dir.read_deployments().to_pylist()
    assert deployments  # the first instance at least was deployed
    for d in deployments:
        assert d["t_deleted_s"] is not None
        assert d["status"] in ("deleted", "failed")


def test_only_a_completed_many_model_run_asking_for_it_keeps() -> None:
    spec = parse_scenario(SCENARIO.format(load_time_s=0.2), "keep.yaml")
    assert keeps_deployed(spec, "complete")
    for status in ("incomplete", "failed", "running"):
        assert not keeps_deployed(spec, status)
    assert spec.many_model is not None
    unasked = spec.model_copy(
        update={"many_model": spec.many_model.model_copy(update={"keep_deployed": False})}
    )
    assert not keeps_deployed(unasked, "complete")


def test_the_cli_says_what_it_kept_and_closes_its_sessions(tmp_path: Path, state: Path) -> None:
    """``servingperf run`` with keep_deployed: it names what it kept, closes its own client
    sessions (no "Unclosed client session" at exit), and its local servers end with it."""
    scenario = tmp_path / "keep.yaml"
    scenario.write_text(SCENARIO.format(load_time_s=0.2))
    command = ["run", str(scenario), "--out", str(tmp_path / "r"), "--no-store", "--no-report"]
    result = subprocess.run(
        [sys.executable, "-m", "servingperf", *command],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    assert "kept deployed (local): 2 instance(s)" in result.stdout
    assert "m-01-01" in result.stdout
    assert "never outlive the harness" in result.stdout
    assert "Unclosed" not in result.stderr
    deadline = time.monotonic() + 20  # they die with the harness (parent-death signal)
    while find_servers(state) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert find_servers(state) == []

"""Teardown is certain: SIGINT, SIGTERM or SIGKILL of a harness running a many-model scenario
(``python -m servingperf run many.yaml``, a real subprocess), followed by the next run's clean-up
(:func:`reap_stale`), leaves no server process behind.

Each harness gets its own state directory (``SERVINGPERF_STATE_DIR``), so the marked processes
counted here are exactly the ones it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from servingperf.platforms.reaper import STATE_ENV, find_servers, reap_stale
from servingperf.results.rundir import RunDir

pytestmark = pytest.mark.slow

SCENARIO = """\
name: many-signals
kind: many-model
platform: {kind: local, ready_timeout_s: 60}
models:
  - name: m
    emulator: {profile: flan-t5-small, load_time_s: 0.5}
many_model:
  namespaces: 2
  instances_per_namespace: 6
  queries: 20
  validation_output_tokens: 8
  namespace_stagger_s: 0
dataset: {source: synthetic, synthetic_input_tokens: 16, prompts: 4, seed: 1, output_tokens: 8}
"""
SERVERS_BEFORE_SIGNAL = 3
WAIT_S = 90.0


def start_harness(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    state = (tmp_path / "state").resolve()
    (tmp_path / "many.yaml").write_text(SCENARIO)
    log = (tmp_path / "harness.log").open("wb")
    harness = subprocess.Popen(
        [sys.executable, "-m", "servingperf", "run", "many.yaml", "--out", "run", "--no-report"],
        cwd=tmp_path,
        env={**os.environ, STATE_ENV: str(state)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    deadline = time.monotonic() + WAIT_S
    while len(find_servers(state)) < SERVERS_BEFORE_SIGNAL:
        if harness.poll() is not None or time.monotonic() > deadline:
            harness.kill()
            harness.wait()
            pytest.fail(f"harness never had servers: {(tmp_path / 'harness.log').read_text()}")
        time.sleep(0.05)
    return harness, state


def wait_no_servers(state: Path, timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    left = [s.pid for s in find_servers(state)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [s.pid for s in find_servers(state)]
    return left


def kill_leftovers(state: Path) -> None:
    for server in find_servers(state):  # only on failure: never leave a test's servers running
        os.killpg(server.pgrp, signal.SIGKILL)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_graceful_signal_removes_every_server(tmp_path: Path, signum: signal.Signals) -> None:
    harness, state = start_harness(tmp_path)
    try:
        harness.send_signal(signum)
        code = harness.wait(WAIT_S)
        output = (tmp_path / "harness.log").read_text()
        assert code == 130, output  # interrupted, after a clean stop
        assert find_servers(state) == []  # removed by the harness itself, before it exited
        info = RunDir(tmp_path / "run").read_info()
        assert info.status == "incomplete"
        deployments = RunDir(tmp_path / "run").read_deployments().to_pylist()
        assert len(deployments) >= SERVERS_BEFORE_SIGNAL
        assert all(d["t_deleted_s"] is not None for d in deployments)
        assert list(state.iterdir()) == []  # the run's state folder went with its servers
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()
        kill_leftovers(state)


def test_sigkill_then_next_cleanup_leaves_nothing(tmp_path: Path) -> None:
    harness, state = start_harness(tmp_path)
    try:
        harness.send_signal(signal.SIGKILL)
        assert harness.wait(WAIT_S) == -signal.SIGKILL
        report = reap_stale(state, grace_s=5)  # what the next run does first
        assert report.survivors == []
        assert wait_no_servers(state, 10) == []
        assert list(state.iterdir()) == []  # the dead run's state folder is gone too
        # deployments seen so far were kept on disk while the run went (at most 1 s old)
        assert RunDir(tmp_path / "run").deployments_file.exists()
    finally:
        kill_leftovers(state)

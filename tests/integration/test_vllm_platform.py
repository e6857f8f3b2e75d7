"""servingperf starting a real vLLM engine itself: the local platform with ``models[].server``.

- An engine not up within ``platform.ready_timeout_s`` is a failure of the run: ``servingperf
  run`` exits 3 with one line naming the instance, the timeout and the engine's last log lines,
  and nothing of the engine's process group survives.
- An engine that dies mid-run (its API server killed with SIGKILL while four users load it) makes
  the requests that follow counted ``connect`` errors, the run completes and writes every record
  (each user's sequence numbers run 0..n-1 without a gap), and the platform's teardown sweeps the
  engine-core and worker processes the dead API server left in its group.

Each test starts its own engine (not the session's shared one): the second one pays vLLM's
start-up, about 40 s on this machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from servingperf.config import parse_scenario
from servingperf.load.sinks import NullProgress
from servingperf.platforms.processes import group_members
from servingperf.platforms.reaper import STATE_ENV, find_servers
from servingperf.scenarios.runner import RunOptions, run_scenario
from tests.integration.test_faults_matrix import check_records_are_requests
from tests.support.vllm_engine import ENGINE_ENV, engine_python, serve_command, tiny_model_dir

pytestmark = pytest.mark.slow


def scenario(python: str, model_dir: Path, *, ready_timeout_s: float, load: str) -> str:
    command = json.dumps(serve_command(python, model_dir))  # a YAML flow sequence
    env = json.dumps(ENGINE_ENV)
    return f"""
name: vllm-local
platform: {{kind: local, ready_timeout_s: {ready_timeout_s}}}
models:
  - name: engine
    model_id: tiny-llama
    protocol: openai-completions
    server:
      command: {command}
      env: {env}
      ready_path: /health
load: {{{load}}}
dataset: {{source: bundled, prompts: 16, seed: 3, output_tokens: 16}}
"""


def test_an_engine_not_up_in_time_exits_3_with_its_last_log_lines(tmp_path: Path) -> None:
    python = engine_python()
    text = scenario(
        python,
        tiny_model_dir(python),
        ready_timeout_s=25,
        load="users: 1, duration_s: 1, ramp_up_s: 0, workers: 1",
    )
    (tmp_path / "slow.yaml").write_text(text)
    state = tmp_path / "state"
    result = subprocess.run(
        [sys.executable, "-m", "servingperf", "run", "slow.yaml", "--out", "run", "--no-report"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        stdin=subprocess.DEVNULL,
        env={**os.environ, STATE_ENV: str(state)},
    )
    assert result.returncode == 3, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    failure = next(line for line in lines if "not ready after 25 s" in line)
    assert "engine: not ready after 25 s (last log lines: " in failure
    log = (tmp_path / "run" / "instances" / "vllm-local" / "engine" / "server.log").read_text()
    assert log.strip(), "vLLM wrote nothing in 25 s"
    logged = [line.strip() for line in log.splitlines() if line.strip()]
    assert any(line[:60] in failure for line in logged[:40]), (failure, logged[:10])
    assert "Traceback" not in result.stderr
    assert find_servers(state.resolve()) == []
    deployments = json.loads((tmp_path / "run" / "run.json").read_text())
    assert deployments["status"] == "failed"


async def _kill_engine_under_load(state: Path, after_tokens: float) -> int:
    """Wait for the engine's pid file, then for it to have generated ``after_tokens`` tokens of
    the run's load; SIGKILL its API server (the group leader) alone. Returns its pid."""
    deadline = time.monotonic() + 400
    engine: tuple[int, str] | None = None
    while time.monotonic() < deadline:
        if engine is None:
            engine = await asyncio.to_thread(_engine_in, state)
        else:
            generated = await asyncio.to_thread(_generated_tokens, engine[1])
            if generated is not None and generated >= after_tokens:
                os.kill(engine[0], signal.SIGKILL)
                return engine[0]
        await asyncio.sleep(0.2)
    raise AssertionError("the engine never served the run's load")


def _engine_in(state: Path) -> tuple[int, str] | None:
    """(pid, port) of the server the local platform listed in its state directory, if any."""
    files = [p for p in state.glob("*/*.json") if p.name != "owner.json"]
    if not files:
        return None
    pid = int(json.loads(files[0].read_text())["pid"])
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return pid, argv[argv.index(b"--port") + 1].decode()


def _generated_tokens(port: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("vllm:generation_tokens_total{"):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_an_engine_that_dies_mid_run_gives_connect_errors_and_every_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    python = engine_python()
    state = tmp_path / "state"
    monkeypatch.setenv(STATE_ENV, str(state))
    text = scenario(
        python,
        tiny_model_dir(python),
        ready_timeout_s=400,
        load="users: 4, duration_s: 6, ramp_up_s: 0, request_timeout_s: 30, workers: 1",
    )
    spec = parse_scenario(text, "dies.yaml")
    options = RunOptions(base_dir=tmp_path, runs_dir=tmp_path, out=tmp_path / "run", report=False)
    killer = asyncio.create_task(_kill_engine_under_load(state, after_tokens=200))
    outcome = await run_scenario(spec, options, NullProgress(), asyncio.Event())
    pid = await killer

    assert outcome.info.status == "complete"
    rows = outcome.run_dir.read_records().to_pylist()
    check_records_are_requests(rows)  # every request issued left a record
    kinds = Counter(r["error_kind"] for r in rows if r["status"] == "error")
    ok = sum(1 for r in rows if r["status"] == "ok")
    print(f"{ok} ok, errors {dict(kinds)}, {len(rows)} records")
    assert ok >= 4, "no load before the kill"
    assert kinds["connect"] >= 1, kinds
    assert set(kinds) <= {"connect", "protocol"}, kinds  # protocol: in flight at the kill
    last_ok_end = max(r["t_end_s"] for r in rows if r["status"] == "ok")
    connect_sent = [
        r["t_sent_s"] if r["t_sent_s"] is not None else r["t_scheduled_s"]
        for r in rows
        if r["error_kind"] == "connect"
    ]
    assert min(connect_sent) >= last_ok_end - 1.0  # the connect errors came after the death
    entry = next(e for e in outcome.summary["instances"].values() if e["instance"] == "engine")
    assert entry["counts"]["errors_by_kind"] == dict(kinds)  # counted in the summary as recorded
    # Teardown: nothing of the engine's group is left (its engine core and worker outlived the
    # API server until the platform swept the group), and no marked process of the run either.
    assert group_members(pid) == []
    assert find_servers(state.resolve()) == []
    deployments = outcome.run_dir.read_deployments().to_pylist()
    assert [d["status"] for d in deployments] == ["deleted"]

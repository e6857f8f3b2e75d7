"""The emulator as a process: ``serve()`` binds, writes its port file, exits 0 on SIGTERM/SIGINT,
and dies with its parent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from servingperf.emulator.groundtruth import read_ground_truth


def serve_code(port_file: Path, ground_truth: Path | None = None) -> str:
    return (
        "from pathlib import Path\n"
        "from servingperf.emulator.server import ServeOptions, serve\n"
        "serve(ServeOptions(profile='instant', model_ids=('m1',), load_time_s=0,"
        f" port_file=Path({str(port_file)!r}),"
        f" ground_truth_path={None if ground_truth is None else f'Path({str(ground_truth)!r})'}))\n"
    )


def wait_for_file(path: Path, process: subprocess.Popen[bytes] | None, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_text()
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the emulator exited early with {process.returncode}")
        time.sleep(0.02)
    raise AssertionError(f"{path} did not appear within {timeout_s} s")


def pid_alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    state = next(line for line in status.splitlines() if line.startswith("State:"))
    return "Z" not in state.split()[1]  # a zombie has exited; only reaping is left


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_writes_port_file_and_exits_zero_on_signal(tmp_path: Path, signum: int) -> None:
    port_file = tmp_path / "port"
    ground_truth = tmp_path / "gt.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-c", serve_code(port_file, ground_truth)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        port = int(wait_for_file(port_file, process, timeout_s=30))
        url = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(url + "/health", timeout=10) as response:
            assert response.status == 200
        request = urllib.request.Request(
            url + "/v1/completions",
            data=json.dumps({"prompt": "hi", "max_tokens": 3, "ignore_eos": True}).encode(),
            headers={"Content-Type": "application/json", "X-Request-Id": "r1"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response)["usage"]["completion_tokens"] == 3
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr.decode()
    line = stdout.decode().strip()
    assert line == f"servingperf-emulator listening on {url} profile=instant load_time_s=0.000"
    assert [g.request_id for g in read_ground_truth(ground_truth)] == ["r1"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_emulator_dies_with_its_parent(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    pid_file = tmp_path / "child.pid"
    parent_code = (
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-c', {serve_code(port_file)!r}])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code])
    child_pid = None
    try:
        wait_for_file(port_file, None, timeout_s=30)
        child_pid = int(wait_for_file(pid_file, None, timeout_s=5))
        assert pid_alive(child_pid)
        parent.send_signal(signal.SIGKILL)  # a harness killed without any chance to clean up
        parent.wait(timeout=10)
        deadline = time.monotonic() + 15
        while pid_alive(child_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(child_pid), "the emulator outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child_pid is not None and pid_alive(child_pid):
            os.kill(child_pid, signal.SIGKILL)

"""The emulator as a process: ``serve()`` binds, writes its port file, exits 0 on SIGTERM/SIGINT,
and dies with its parent; ``servingperf emulator serve --processes 2`` serves one port from two."""

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


def _helpers_of(pid: int) -> list[int]:
    """The multiprocessing children of ``pid`` that serve (not its resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def _natural_length(port: int) -> int:
    """One request on a new connection (urllib never reuses one), always the same request id, no
    forced length: the length is drawn from the serving process's own seed."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/completions",
        data=json.dumps({"model": "instant", "prompt": "hi", "stream": False}).encode(),
        headers={"Content-Type": "application/json", "X-Request-Id": "same"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        return int(json.loads(response.read())["usage"]["completion_tokens"])


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_cli_processes_flag_serves_one_port_from_two_processes(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    ground_truth = tmp_path / "gt.jsonl"
    command = [sys.executable, "-m", "servingperf", "emulator", "serve", "--profile", "instant"]
    command += ["--port", "0", "--load-time", "0", "--seed", "1", "--processes", "2"]
    command += ["--port-file", str(port_file), "--ground-truth", str(ground_truth)]
    # output to files, not pipes: a helper holding a pipe must not block the test's reads
    with (tmp_path / "out").open("wb") as out, (tmp_path / "err").open("wb") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err)
    helpers: list[int] = []
    try:
        port = int(wait_for_file(port_file, process, timeout_s=60))
        deadline = time.monotonic() + 60
        while not (helpers := _helpers_of(process.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(helpers) == 1, "one helper process beside the first"
        # each process draws natural lengths from its own seed (1 and 2): the same request id
        # gets two different lengths once both processes answer on the one port
        lengths: set[int] = set()
        deadline = time.monotonic() + 60
        for _ in range(300):
            lengths.add(_natural_length(port))
            if len(lengths) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.05)  # the helper may still be importing, then binding
        assert len(lengths) == 2, f"only one process answered: {lengths}"
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        deadline = time.monotonic() + 15
        while any(pid_alive(pid) for pid in helpers) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in helpers:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert process.returncode == 0, (tmp_path / "err").read_text()
    assert "processes=2" in (tmp_path / "out").read_text()
    assert not any(pid_alive(pid) for pid in helpers), "a helper outlived the server"
    # both processes append to the one ground truth file
    assert len(read_ground_truth(ground_truth)) >= 2

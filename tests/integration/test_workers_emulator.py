"""The emulator as several processes on one port (SO_REUSEPORT), so that a multi-worker load never
finds the emulator its bottleneck: both processes answer, and stopping the first stops all."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from servingperf.emulator.server import ServeOptions, serve

pytestmark = pytest.mark.slow


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _wait_for(predicate: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.05)


def _natural_length(port: int) -> int:
    """One request on a new connection (urllib never reuses one), always the same request id."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/completions",
        data=json.dumps({"model": "instant", "prompt": "hi", "stream": False}).encode(),
        headers={"Content-Type": "application/json", "X-Request-Id": "same"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        return int(json.loads(response.read())["usage"]["completion_tokens"])


def test_two_processes_share_the_port_and_stop_together(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    options = ServeOptions(
        profile="instant", load_time_s=0, processes=2, port_file=port_file, seed=1
    )
    process = multiprocessing.get_context("spawn").Process(target=serve, args=(options,))
    process.start()
    helpers: list[int] = []
    try:
        _wait_for(port_file.exists, 60)
        port = int(port_file.read_text())
        _wait_for(lambda: _children_of(process.pid or 0), 60)
        time.sleep(2.0)  # the helper imports, then binds
        helpers = _children_of(process.pid or 0)
        assert len(helpers) == 1
        # the same request id without a forced length gets a natural length drawn from the
        # serving process's seed (1 or 2): both lengths appear once both processes answer
        lengths: set[int] = set()
        for _ in range(60):
            lengths.add(_natural_length(port))
            if len(lengths) == 2:
                break
        assert len(lengths) == 2
    finally:
        if process.pid is not None and process.is_alive():
            os.kill(process.pid, signal.SIGTERM)
        process.join(20)
        if process.is_alive():
            process.kill()
            process.join()
    assert process.exitcode == 0
    for pid in helpers:
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or ") Z " in stat.read_text()

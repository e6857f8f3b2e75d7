"""The command line as a user meets it: exit codes and one-line errors, never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest


def servingperf(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "servingperf", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends


def test_malformed_scenario_is_one_line_naming_file_line_field(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "name: x\nmodels:\n  - name: m\n    emulator: {profile: flan-t5-small}\nload:\n  users: -3\n"
    )
    result = servingperf("run", "bad.yaml", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "bad.yaml:6: load.users: Input should be greater than or equal to 1" in lines[0]
    assert "Traceback" not in result.stderr


def test_unreachable_target_is_exit_3_with_a_clear_message(tmp_path: Path) -> None:
    port = _closed_port()
    (tmp_path / "static.yaml").write_text(
        "name: x\nplatform: {kind: static}\n"
        f"models:\n  - name: m\n    endpoint: {{url: 'http://127.0.0.1:{port}'}}\n"
        "load: {users: 2, duration_s: 1, ramp_up_s: 0}\ndataset: {source: synthetic}\n"
    )
    result = servingperf("run", "static.yaml", "--no-report", cwd=tmp_path)
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"127.0.0.1:{port}/v1/models: cannot connect" in result.stderr
    assert "Traceback" not in result.stderr
    runs = list((tmp_path / "servingperf-data" / "runs").iterdir())
    assert len(runs) == 1 and '"status": "failed"' in (runs[0] / "run.json").read_text()


def test_unknown_emulator_profile_is_bad_input(tmp_path: Path) -> None:
    result = servingperf("emulator", "serve", "--profile", "nope", "--port", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert "nope" in result.stderr and "flan-t5-small" in result.stderr


@pytest.mark.parametrize("command", ["summarize", "report"])
def test_not_a_run_directory(tmp_path: Path, command: str) -> None:
    result = servingperf(command, str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert "not a servingperf run directory" in result.stderr

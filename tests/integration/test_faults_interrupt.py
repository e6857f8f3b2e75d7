"""Interrupting ``servingperf run`` (a real subprocess, real emulator processes on loopback).

- SIGINT or SIGTERM: the run stops issuing, flushes its records, tears down what it deployed and
  marks the run incomplete; exit code 130.
- A second SIGINT: exit at once (130), still leaving a readable run directory; the emulators die
  with their parent (PR_SET_PDEATHSIG).
- SIGKILL: at most the last flush interval of records is lost (checked against the emulator's
  ground truth), and ``summarize`` / ``report`` read the partial run and say it is incomplete.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from servingperf.results.rundir import RunDir
from tests.integration.test_faults_matrix import check_records_are_requests, emulators_of
from tests.support.ground_truth import load_ground_truth

pytestmark = pytest.mark.slow

FLUSH_INTERVAL_S = 2.0  # ParquetRecordWriter's default
SLACK_S = 1.0  # a request ends on the server a little before its record is queued

NO_EXTRAS = ("--no-report", "--no-store")
SCENARIO = """\
name: interrupted
platform: {kind: local, ready_timeout_s: 60}
models:
  - name: a
    emulator: {profile: instant, load_time_s: 0, overrides: {decode_base_s: 0.004}}
load: {users: 4, duration_s: 120, ramp_up_s: 0, request_timeout_s: 10, workers: 1}
dataset: {source: synthetic, synthetic_input_tokens: 16, prompts: 8, output_tokens: 12}
"""


def start_run(tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    (tmp_path / "s.yaml").write_text(SCENARIO)
    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "servingperf", "run", "s.yaml", "--out", str(run), *NO_EXTRAS],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, run


def wait_for_segments(process: subprocess.Popen[str], run: Path, count: int) -> None:
    deadline = time.monotonic() + 60
    while len(list((run / "records").glob("*.parquet"))) < count:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            _, err = process.communicate()
            pytest.fail(f"no record segment appeared: {err}")
        time.sleep(0.1)


def wait_gone(run: Path, timeout_s: float = 15.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while (left := emulators_of(run)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def finish(process: subprocess.Popen[str], timeout_s: float = 60.0) -> tuple[int, str]:
    try:
        _, err = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return process.returncode, err


def servingperf(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "servingperf", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_flushes_tears_down_and_marks_incomplete(
    tmp_path: Path, signum: signal.Signals
) -> None:
    process, run = start_run(tmp_path)
    wait_for_segments(process, run, 1)
    assert emulators_of(run), "the emulator should be running"
    sent = time.monotonic()
    process.send_signal(signum)
    code, err = finish(process)
    assert code == 130, err
    assert time.monotonic() - sent < 15.0  # teardown is bounded (SIGTERM grace of the server)
    assert "Traceback" not in err
    assert f"{signum.name}: stopping" in err
    info = RunDir(run).read_info()
    assert info.status == "incomplete"
    assert info.status_reason == "interrupted"
    rows = RunDir(run).read_records().to_pylist()
    assert any(r["status"] == "ok" for r in rows)
    check_records_are_requests(rows)
    # Every request the server saw has a record: nothing in flight was lost at the stop.
    truth = load_ground_truth(list(run.rglob("ground_truth.jsonl")))
    assert set(truth) <= {r["request_id"] for r in rows}
    assert emulators_of(run) == []
    deployments = RunDir(run).read_deployments().to_pylist()
    assert [d["status"] for d in deployments] == ["deleted"]


def test_second_sigint_exits_at_once_and_leaves_a_readable_run(tmp_path: Path) -> None:
    process, run = start_run(tmp_path)
    wait_for_segments(process, run, 1)
    process.send_signal(signal.SIGINT)
    time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    sent = time.monotonic()
    code, err = finish(process)
    assert code == 130, err
    assert time.monotonic() - sent < 5.0
    assert "second interrupt: exiting now" in err
    assert wait_gone(run) == [], "an emulator outlived the harness"
    result = servingperf("summarize", str(run), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "incomplete"
    assert summary["records"]["total"] > 0
    assert "note: this run is incomplete" in result.stderr


def test_sigkill_loses_at_most_the_last_flush_interval(tmp_path: Path) -> None:
    process, run = start_run(tmp_path)
    wait_for_segments(process, run, 2)
    killed_at = time.monotonic()
    process.kill()
    finish(process)
    assert wait_gone(run) == [], "an emulator outlived the killed harness"

    info = RunDir(run).read_info()
    assert info.status == "running"  # never closed
    rows = RunDir(run).read_records().to_pylist()
    recorded = {r["request_id"] for r in rows}
    check_records_are_requests(rows)  # each user's flushed records: a gapless prefix
    truth = load_ground_truth(list(run.rglob("ground_truth.jsonl")))
    older = [
        rid
        for rid, t in truth.items()
        if t.end is not None and t.end < killed_at - FLUSH_INTERVAL_S - SLACK_S
    ]
    assert older, "the run was killed before any flush interval had passed"
    lost = [rid for rid in older if rid not in recorded]
    assert lost == [], f"{len(lost)} records older than the last flush interval were lost"

    for command in ("summarize", "report"):
        result = servingperf(command, str(run), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        assert "note: this run is incomplete: run.json still says 'running'" in result.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "incomplete"
    assert summary["instances"]["a"]["counts"]["ok"] == sum(1 for r in rows if r["status"] == "ok")
    assert (run / "report.html").stat().st_size > 0
    assert "incomplete" in (run / "report.html").read_text()

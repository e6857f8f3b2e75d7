"""Issue #22 end to end: a scenario against an emulator that misbehaves (usage counts that
disagree with the stream, reasoning before content, 429s), run through ``run_scenario`` with the
local platform, then summarised, reported and gated. What a reader sees: mismatches counted with
the share of requests affected (summary.json, report, CLI), TTFO beside TTFT (summary.json,
report, gate KPIs) and ``rate_limited`` as its own error kind; a release whose reasoning grew is
caught on TTFO while TTFT stays unchanged."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from servingperf.config import parse_scenario
from servingperf.continuous.ingest import ingest
from servingperf.load.sinks import NullProgress
from servingperf.results.rundir import RunDir
from servingperf.results.store import open_store
from servingperf.scenarios.runner import RunOptions, run_scenario
from tests.support.ground_truth import load_ground_truth

pytestmark = pytest.mark.slow

SCENARIO = """\
name: misbehaving
labels: {{release: "{release}"}}
models:
  - name: chatty
    protocol: openai-chat
    emulator:
      profile: instant
      load_time_s: 0
      overrides: {{decode_base_s: 0.004}}
      faults: {faults}
    tokens: {{output_tokens_from: {count_from}}}
load: {{users: 8, duration_s: {duration}, ramp_up_s: 0.5, workers: 1}}
dataset: {{source: synthetic, synthetic_input_tokens: 16, prompts: 8, output_tokens: 16}}
"""

MISBEHAVING = "{seed: 3, usage_mismatch_p: 0.3, usage_extra_tokens: 5, error_status: {429: 0.1}}"


async def _run(
    tmp: Path,
    name: str,
    faults: str,
    *,
    count_from: str = "usage",
    duration: float = 3.0,
    report: bool = True,
) -> Path:
    text = SCENARIO.format(release=name, faults=faults, count_from=count_from, duration=duration)
    spec = parse_scenario(text, f"{name}.yaml")
    out = tmp / f"run-{name}"
    options = RunOptions(base_dir=tmp, runs_dir=tmp, out=out, report=report)
    await run_scenario(spec, options, NullProgress(), asyncio.Event())
    return out


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "servingperf", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _entry(run: Path) -> dict[str, Any]:
    summary = json.loads((run / "summary.json").read_text())
    entry: dict[str, Any] = summary["instances"]["chatty"]
    return entry


async def test_mismatches_are_counted_shared_and_reported(tmp_path: Path) -> None:
    run = await _run(tmp_path, "usage", MISBEHAVING)
    entry = _entry(run)
    rows = RunDir(run).read_records().to_pylist()
    truth = load_ground_truth(list(run.rglob("ground_truth.jsonl")))
    start, end = entry["window"]["start_s"], entry["window"]["end_s"]
    measured = [r for r in rows if r["status"] == "ok" and start <= r["t_end_s"] <= end]
    injected = [r for r in measured if truth[r["request_id"]].fault == "usage_mismatch"]
    assert injected, "no request of the window got the fault"
    assert {r["request_id"] for r in measured if r["token_mismatch"]} == {
        r["request_id"] for r in injected
    }
    tokens = entry["token_counts"]
    assert tokens["compared"] == len(measured) == entry["counts"]["measured"]
    assert tokens["mismatched"] == len(injected)
    assert tokens["mismatched_usage_tokens"] - tokens["mismatched_stream_tokens"] == 5 * len(
        injected
    )
    assert tokens["n_from"] == {"usage": len(measured)}
    assert entry["token_mismatch_rate"] == pytest.approx(len(injected) / len(measured))
    # N from usage: the throughput counts the 5 tokens each mismatched request never streamed
    length = entry["window"]["length_s"]
    usage_total = sum(r["usage_output_tokens"] for r in measured)
    assert entry["throughput"]["output_tps"] == pytest.approx(usage_total / length)
    # 429 is its own kind, beside the counts
    assert set(entry["counts"]["errors_by_kind"]) == {"rate_limited"}

    page = (run / "report.html").read_text()
    share = f"{100 * len(injected) / len(measured):.4g}%"
    assert f"{len(injected)} of {len(measured)} measured requests ({share})" in page
    assert "Token count mismatches" in page
    assert "rate_limited" in page

    summarize = _cli("summarize", str(run), cwd=tmp_path)
    assert summarize.returncode == 0, summarize.stderr
    assert f"chatty: {len(injected)} of {len(measured)} measured requests" in summarize.stderr


async def test_the_scenario_may_count_n_from_the_stream(tmp_path: Path) -> None:
    run = await _run(tmp_path, "stream", MISBEHAVING, count_from="stream")
    entry = _entry(run)
    rows = RunDir(run).read_records().to_pylist()
    start, end = entry["window"]["start_s"], entry["window"]["end_s"]
    measured = [r for r in rows if r["status"] == "ok" and start <= r["t_end_s"] <= end]
    assert {r["token_source"] for r in measured} == {"stream"}
    assert entry["token_counts"]["n_from"] == {"stream": len(measured)}
    assert entry["token_counts"]["mismatched"] > 0  # still flagged: both counts are kept
    streamed_total = sum(r["stream_output_tokens"] for r in measured)
    assert streamed_total == 16 * len(measured)  # what the server really sent
    assert entry["throughput"]["output_tps"] == pytest.approx(
        streamed_total / entry["window"]["length_s"]
    )


async def test_ttfo_is_reported_beside_ttft_and_gated(tmp_path: Path) -> None:
    short = await _run(tmp_path, "1.0", "{reasoning_p: 1.0, reasoning_tokens: 4}", duration=4)
    long = await _run(tmp_path, "2.0", "{reasoning_p: 1.0, reasoning_tokens: 12}", duration=4)
    plain = await _run(tmp_path, "plain", "{}", duration=2, report=False)
    for run in (short, long):
        stats = _entry(run)["stats"]
        # the first content token comes the reasoning's decode steps after the first token
        gap = stats["ttfo_s"]["p50"] - stats["ttft_s"]["p50"]
        assert gap > 0
        assert stats["ttfo_s"]["n"] == stats["ttft_s"]["n"]
    gaps = [
        _entry(r)["stats"]["ttfo_s"]["p50"] - _entry(r)["stats"]["ttft_s"]["p50"]
        for r in (short, long)
    ]
    assert gaps[1] > 2 * gaps[0]  # 12 steps against 4
    plain_stats = _entry(plain)["stats"]
    assert plain_stats["ttfo_s"] == plain_stats["ttft_s"]  # no reasoning: the same figure

    page = (short / "report.html").read_text()
    assert 'data-metric="ttft_s"' in page and 'data-metric="ttfo_s"' in page
    assert "Time to first content token" in page and "reasoning excluded" in page
    assert "reasoning included" in page

    store_path = str(tmp_path / "results.db")
    with open_store(store_path) as store:
        for path in (short, long):
            ingest(store, RunDir(path))
    gate = _cli(
        "gate",
        "--store",
        store_path,
        "--reference",
        "release=1.0",
        "--candidate",
        "release=2.0",
        "--json",
        "gate.json",
        "--markdown",
        "gate.md",
        cwd=tmp_path,
    )
    assert gate.returncode == 1, gate.stdout + gate.stderr
    verdicts = {v["kpi"]: v for v in json.loads((tmp_path / "gate.json").read_text())["verdicts"]}
    assert verdicts["ttfo_s"]["outcome"] == "regressed"
    assert verdicts["ttft_s"]["outcome"] != "regressed"
    markdown = (tmp_path / "gate.md").read_text()
    assert "| ttfo_s (Time to first content token) |" in markdown
    assert "| ttft_s (Time to first token) |" in markdown

"""Server metrics through whole runs: the emulators' /metrics scraped during every phase and
agreeing with the records; a real Prometheus queried over the phase windows through a
bearer-token gate; a Prometheus that is down is a warning and a gap, never a failed run."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from servingperf.config import parse_scenario
from servingperf.emulator.server import RunningServer, ServeOptions, start_server
from servingperf.load.sinks import NullProgress
from servingperf.results.rundir import RunDir
from servingperf.scenarios.runner import RunOptions, run_scenario
from tests.support.prometheus import TokenGate, free_port, prometheus, wait_for_series

TOKEN = "sm-test-token-5f1c9e0a7b"
TOKEN_ENV = "SERVINGPERF_TEST_PROMETHEUS_TOKEN"


async def run(text: str, tmp_path: Path) -> RunDir:
    spec = parse_scenario(text, "scenario.yaml")
    out = tmp_path / "run"
    options = RunOptions(base_dir=tmp_path, runs_dir=tmp_path, out=out, report=True)
    await run_scenario(spec, options, NullProgress(), asyncio.Event())
    return RunDir(out)


@pytest.mark.slow
async def test_multi_model_shared_device_agrees_in_every_phase(tmp_path: Path) -> None:
    """Two instances on one emulated device (one process, one engine, two model ids) and one
    alone: every window of both phases must agree, each instance counted from its own label
    sets (the shared server's /metrics holds both models)."""
    run_dir = await run(
        """\
name: sm-multi
kind: multi-model
platform: {kind: local}
models:
  - {name: a, model_id: ma, emulator: {profile: flan-t5-small, load_time_s: 0, device: gpu0}}
  - {name: b, model_id: mb, emulator: {profile: flan-t5-small, load_time_s: 0, device: gpu0}}
  - {name: c, emulator: {profile: bloom-560m, load_time_s: 0}}
load: {users: 4, duration_s: 2, ramp_up_s: 0.5, drain_s: 5, workers: 1}
dataset: {source: synthetic, synthetic_input_tokens: 16, prompts: 8, output_tokens: 12}
metrics: {scrape: {interval_s: 0.5, timeout_s: 0.4}}
""",
        tmp_path,
    )
    summary = run_dir.read_summary()
    agreement = summary["server_metrics"]["agreement"]
    windows = {(w["instance"], w["phase"]): w for w in agreement["windows"]}
    assert set(windows) == {
        (name, phase) for name in "abc" for phase in ("concurrent", "sequential")
    }
    for key, window in windows.items():
        assert window["verdict"] == "agree", (key, window)
        rows = {r["figure"]: r for r in window["rows"]}
        assert rows["requests"]["client"] == rows["requests"]["server"] > 0, key
        assert rows["requests"]["rule"] == "exact"  # the drain left nothing cut
    assert agreement["verdict"] == "agree"
    # both shared-device instances were scraped from the same server, each seeing both models
    scraped = run_dir.read_metrics("scrape")
    a_labels = {r["labels"] for r in scraped.to_pylist() if r["instance"] == "a"}
    assert any('"model_name":"mb"' in labels for labels in a_labels)
    html = (run_dir.path / "report.html").read_text()
    assert 'id="server-metrics"' in html and "server_timeline_a" in html
    assert (run_dir.path / "charts" / "server_distributions_c.png").exists()


@pytest.fixture
async def emulator() -> AsyncIterator[RunningServer]:
    running = await start_server(
        ServeOptions(profile="flan-t5-small", model_ids=("m",), load_time_s=0)
    )
    try:
        yield running
    finally:
        await running.close()


def static_scenario(url: str, prometheus_url: str, duration_s: float = 4.0) -> str:
    return f"""\
name: sm-prom
platform: {{kind: static}}
models:
  - {{name: m, model_id: m, endpoint: {{url: "{url}"}}}}
load: {{users: 6, duration_s: {duration_s}, ramp_up_s: 0, drain_s: 5, workers: 1}}
dataset: {{source: synthetic, synthetic_input_tokens: 16, prompts: 8, output_tokens: 16}}
metrics:
  prometheus:
    url: "{prometheus_url}"
    bearer_token_env: {TOKEN_ENV}
    query_sets: [vllm, kserve]
    queries: {{success_raw: "sum(vllm:request_success_total)"}}
    step_s: 0.5
    rate_window_s: 3
    settle_s: 2.5
"""


def assert_token_absent(root: Path) -> None:
    encoded = base64.b64encode(TOKEN.encode())
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert TOKEN.encode() not in data, path
            assert encoded not in data, path


@pytest.mark.slow
async def test_real_prometheus_windows_align_and_the_token_is_never_written(
    emulator: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    target = emulator.url.removeprefix("http://")
    async with prometheus(tmp_path / "prom", {"emulator": [target]}, interval_s=0.5) as prom:
        await wait_for_series(prom.url, "vllm:num_requests_running")
        async with TokenGate(prom.url, TOKEN) as gate:
            run_dir = await run(static_scenario(emulator.url, gate.url), tmp_path)
    assert gate.forwarded > 0 and gate.refused == 0
    info = run_dir.read_info()
    (window,) = info.phases
    queries = run_dir.read_metrics("queries").to_pylist()
    assert queries and all(q["ok"] for q in queries), [q["error"] for q in queries]
    by_name = {q["name"]: q for q in queries}
    assert by_name["vllm_running"]["series"] == 1
    assert by_name["workqueue_depth"]["series"] == 0  # absent here: recorded, not an error
    samples = run_dir.read_metrics("prometheus").to_pylist()
    raw = sorted((s["t_s"], s["value"]) for s in samples if s["name"] == "success_raw")
    assert raw
    # every point lies in the phase window, on the run's clock
    assert all(window.start_s - 0.01 <= t <= window.end_s + 0.01 for t, _ in raw)
    # alignment: Prometheus's value at run time t is the counter as our scraper saw it
    # between t - 2 s (Prometheus scrapes every 0.5 s, our scraper every 1 s) and t
    ours = run_dir.read_metrics("scrape").to_pylist()
    counter: dict[float, float] = {}
    for s in ours:
        if s["name"] == "vllm:request_success_total":
            counter[s["t_s"]] = counter.get(s["t_s"], 0.0) + s["value"]
    times = sorted(counter)
    moving = 0
    for t, value in raw:
        low = max([counter[x] for x in times if x <= t - 2.0] or [0.0])
        high = min([counter[x] for x in times if x >= t] or [float("inf")])
        assert low <= value <= high, (t, value, low, high)
        moving += low < high
    assert moving >= 3  # the counter moved during the window: the check had teeth
    assert raw[-1][1] > raw[0][1]
    summary = run_dir.read_summary()
    assert summary["server_metrics"]["agreement"]["verdict"] == "agree"
    assert summary["server_metrics"]["prometheus"]["failed"] == 0
    assert_token_absent(run_dir.path)
    assert TOKEN_ENV in json.dumps(info.config)  # the variable's name is kept


@pytest.mark.slow
async def test_a_prometheus_that_is_down_is_a_warning_and_a_gap(
    emulator: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    down = f"http://127.0.0.1:{free_port()}"
    run_dir = await run(static_scenario(emulator.url, down, duration_s=1.0), tmp_path)
    info = run_dir.read_info()
    assert info.status == "complete"
    queries = run_dir.read_metrics("queries").to_pylist()
    assert queries and not any(q["ok"] for q in queries)
    assert run_dir.read_metrics("prometheus").num_rows == 0
    server = run_dir.read_summary()["server_metrics"]
    assert any("Prometheus" in w and "failed" in w for w in server["warnings"])
    assert server["agreement"]["verdict"] == "agree"  # the scraper went on regardless
    assert_token_absent(run_dir.path)

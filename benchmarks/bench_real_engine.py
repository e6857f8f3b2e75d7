"""servingperf and vLLM's own ``vllm bench serve`` against the same real vLLM engine, beside the
engine's own Prometheus metrics.

The engine: vLLM's CPU build (``$SERVINGPERF_VLLM_PYTHON``, made by scripts/test.sh or
scripts/install_vllm.sh) serving the tiny random Llama (scripts/build_tiny_model.py) on
127.0.0.1, started once for both tools. The workload, the same for both: the completions
endpoint, streamed, C concurrent requests kept in flight (servingperf: C closed-loop users;
vllm bench: ``--max-concurrency C`` at an infinite request rate, which is the same thing), every
answer exactly L tokens (``ignore_eos``; servingperf also sends ``min_tokens``), prompts drawn at
random from one JSONL file of 64 prompts of the bundled data set (both tools read it: the
``prompt`` key). servingperf runs for D seconds after a 2 s ramp (and drains); vllm bench then
sends as many requests as servingperf completed. Before each tool's run the engine gets a few
warm-up requests; each tool's engine columns are the ``/metrics`` deltas over that tool's run.

Figures, by vLLM's names (README, Definitions): TTFT, TPOT, ITL, E2E mean / p50 / p99, request
and output-token throughput. servingperf's come from its ``summary.json`` (requests that ended
inside the measurement window), vllm bench's from its result JSON (all its requests), the
engine's from its histograms (means only: its buckets are too coarse for percentiles).

    .venv/bin/python benchmarks/bench_real_engine.py [--users 8] [--tokens 64] [--duration 30]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from importlib import resources
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import PYTHON, load_average, print_table

from tests.support.engine_metrics import EngineCounters
from tests.support.vllm_engine import PYTHON_ENV, VllmEngine, tiny_model_dir

PROMPTS = 64
RAMP_S = 2.0


def write_prompts(path: Path) -> None:
    """64 questions of the bundled data set, as plain ``{"prompt": ...}`` lines."""
    bundled = resources.files("servingperf.datasets") / "data" / "prompts.jsonl"
    lines = [json.loads(line) for line in bundled.read_text().splitlines() if line.strip()]
    chosen = [row["question"] for row in lines if len(row["question"]) < 2000][:PROMPTS]
    path.write_text("".join(json.dumps({"prompt": text}) + "\n" for text in chosen))


def warm_up(engine: VllmEngine, requests: int = 4) -> None:
    for index in range(requests):
        body = {"model": engine.model, "prompt": f"warm up {index}", "max_tokens": 8}
        request = urllib.request.Request(
            f"{engine.base_url}/v1/completions",
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()


def run_servingperf(
    engine: VllmEngine, work: Path, prompts: Path, args: argparse.Namespace
) -> dict[str, Any]:
    scenario = work / "scenario.yaml"
    scenario.write_text(
        f"""
name: real-engine-bench
platform: {{kind: static}}
models:
  - name: tiny
    model_id: {engine.model}
    protocol: openai-completions
    endpoint: {{url: "{engine.base_url}"}}
load:
  users: {args.users}
  duration_s: {args.duration}
  ramp_up_s: {RAMP_S}
  drain_s: 120
  request_timeout_s: 120
  stream: true
  force_output_length: true
  workers: 1
dataset: {{source: jsonl, path: {prompts}, prompts: {PROMPTS}, seed: 1, output_tokens: {args.tokens}}}
"""
    )
    subprocess.run(
        [
            PYTHON,
            "-m",
            "servingperf",
            "run",
            str(scenario),
            "--out",
            str(work / "run"),
            "--no-report",
            "--store",
            f"sqlite:///{work / 'store.db'}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    summary = json.loads((work / "run" / "summary.json").read_text())
    entry = next(iter(summary["instances"].values()))
    stats, throughput = entry["stats"], entry["throughput"]
    figures: dict[str, Any] = {}
    for name, key in (("TTFT", "ttft_s"), ("TPOT", "tpot_s"), ("ITL", "itl_s"), ("E2E", "e2e_s")):
        figures[name] = {q: stats[key][q] * 1e3 for q in ("mean", "p50", "p99")}
    figures["requests"] = entry["counts"]["measured"]
    figures["request_rps"] = throughput["request_rps"]
    figures["output_tps"] = throughput["output_tps"]
    figures["completed"] = entry["counts"]["ok"]
    return figures


def run_vllm_bench(
    engine: VllmEngine, work: Path, prompts: Path, requests: int, args: argparse.Namespace
) -> dict[str, Any]:
    subprocess.run(
        [
            engine.python,
            "-m",
            "vllm.entrypoints.cli.main",
            "bench",
            "serve",
            "--backend",
            "openai",
            "--base-url",
            engine.base_url,
            "--endpoint",
            "/v1/completions",
            "--model",
            engine.model,
            "--tokenizer",
            str(engine.model_dir),
            "--dataset-name",
            "custom",
            "--dataset-path",
            str(prompts),
            "--skip-chat-template",
            "--custom-output-len",
            str(args.tokens),
            "--ignore-eos",
            "--num-prompts",
            str(requests),
            "--max-concurrency",
            str(args.users),
            "--request-rate",
            "inf",
            "--seed",
            "1",
            "--percentile-metrics",
            "ttft,tpot,itl,e2el",
            "--metric-percentiles",
            "50,99",
            "--save-result",
            "--result-dir",
            str(work),
            "--result-filename",
            "bench.json",
            "--disable-tqdm",
        ],
        check=True,
        stdout=(work / "bench.log").open("wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
        },
    )
    result = json.loads((work / "bench.json").read_text())
    figures: dict[str, Any] = {}
    for name, key in (("TTFT", "ttft"), ("TPOT", "tpot"), ("ITL", "itl"), ("E2E", "e2el")):
        figures[name] = {
            "mean": result[f"mean_{key}_ms"],
            "p50": result[f"p50_{key}_ms"],
            "p99": result[f"p99_{key}_ms"],
        }
    figures["requests"] = result["completed"]
    figures["request_rps"] = result["request_throughput"]
    figures["output_tps"] = result["output_throughput"]
    figures["completed"] = result["completed"]
    return figures


def engine_means(delta: EngineCounters) -> dict[str, Any]:
    def ms(value: float | None) -> float | None:
        return None if value is None else value * 1e3

    return {
        "TTFT": {"mean": ms(delta.ttft_mean_s)},
        "TPOT": {"mean": ms(delta.tpot_mean_s)},
        "ITL": {"mean": ms(delta.itl_mean_s)},
        "E2E": {"mean": ms(delta.e2e_mean_s)},
        "completed": int(delta.finished),
    }


def measured(engine: VllmEngine, run: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run one tool between two settled engine snapshots: its figures, the engine's."""
    warm_up(engine)
    before = engine.settled_counters()
    figures = run()
    delta = engine.settled_counters().minus(before)
    return figures, engine_means(delta)


def fmt(value: float | None) -> str:
    return "–" if value is None else (f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}")


def table(
    ours: dict[str, Any],
    ours_engine: dict[str, Any],
    bench: dict[str, Any],
    bench_engine: dict[str, Any],
) -> list[list[str]]:
    rows: list[list[str]] = []
    for name in ("TTFT", "TPOT", "ITL", "E2E"):
        for q in ("mean", "p50", "p99"):
            a, b = ours[name][q], bench[name][q]
            rows.append(
                [
                    f"{name} {q} (ms)",
                    fmt(a),
                    fmt(ours_engine[name].get(q)),
                    fmt(b),
                    fmt(bench_engine[name].get(q)),
                    f"{a - b:+,.1f} ({(a - b) / b:+.0%})" if b else "–",
                ]
            )
    for label, key in (
        ("request throughput (req/s)", "request_rps"),
        ("output throughput (tok/s)", "output_tps"),
    ):
        a, b = ours[key], bench[key]
        rows.append([label, fmt(a), "–", fmt(b), "–", f"{a - b:+,.1f} ({(a - b) / b:+.0%})"])
    rows.append(
        [
            "requests completed (engine: finished)",
            str(ours["completed"]),
            str(ours_engine["completed"]),
            str(bench["completed"]),
            str(bench_engine["completed"]),
            "–",
        ]
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--duration", type=float, default=30.0)
    args = parser.parse_args()
    python = os.environ.get(PYTHON_ENV)
    if not python:
        raise SystemExit(f"set {PYTHON_ENV} (scripts/install_vllm.sh makes the engine venv)")
    with tempfile.TemporaryDirectory(prefix="sp-real-") as tmp:
        work = Path(tmp)
        prompts = work / "prompts.jsonl"
        write_prompts(prompts)
        engine = VllmEngine(python, tiny_model_dir(python), work / "engine")
        load_before = load_average()
        engine.start()
        try:
            engine.wait_ready()
            print(f"engine ready in {engine.startup_s:.0f} s; load {load_before}", flush=True)
            (work / "sp").mkdir()
            (work / "vb").mkdir()
            started = time.monotonic()
            ours, ours_engine = measured(
                engine, lambda: run_servingperf(engine, work / "sp", prompts, args)
            )
            bench, bench_engine = measured(
                engine,
                lambda: run_vllm_bench(engine, work / "vb", prompts, ours["completed"], args),
            )
            elapsed = time.monotonic() - started
        finally:
            engine.stop()
    print_table(
        f"servingperf and vllm bench serve against one vLLM engine: {args.users} concurrent,"
        f" {args.tokens} tokens, streamed (load average {load_before} before, {load_average()}"
        f" after; {elapsed:.0f} s)",
        [
            "figure",
            "servingperf",
            "engine (its run)",
            "vllm bench serve",
            "engine (its run)",
            "servingperf - bench",
        ],
        table(ours, ours_engine, bench, bench_engine),
    )


if __name__ == "__main__":
    main()

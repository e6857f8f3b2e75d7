"""servingperf's ``--as vllm-bench`` view of its own records against ``vllm bench serve``'s own
figures, same server, same workload shape, each tool run ``--repeats`` times (their spread is
the run-to-run noise the two must agree within). Not part of servingperf.

Workload: random prompts of ``--input-len`` tokens, exactly ``--output-len`` output tokens
(ignore_eos), ``--concurrency`` requests in flight. vLLM: ``--num-prompts`` prompts behind its
``--max-concurrency`` semaphore. servingperf: as many closed-loop users for ``--duration`` s with a
drain (so the run ends as vLLM's does, by finishing what is in flight). Needs a running vLLM
OpenAI server (``--url``, ``--model``) and its ``vllm`` command (``--vllm``, or $SERVINGPERF_VLLM)
and tokenizer folder (``--tokenizer``) for ``vllm bench serve``.

Run: ``python benchmarks/bench_vllm_view.py --url http://127.0.0.1:8000 --model tiny-llama
--tokenizer MODEL_DIR --vllm VENV/bin/vllm``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIGURES = (
    ("median_ttft_ms", "ms"),
    ("p99_ttft_ms", "ms"),
    ("median_tpot_ms", "ms"),
    ("p99_tpot_ms", "ms"),
    ("median_itl_ms", "ms"),
    ("p99_itl_ms", "ms"),
    ("median_e2el_ms", "ms"),
    ("output_throughput", "tok/s"),
    ("request_throughput", "req/s"),
)

SCENARIO = """\
name: vllm-view
kind: single-model
platform: {{kind: static}}
models:
  - name: vllm
    model_id: {model}
    endpoint: {{url: "{url}"}}
load: {{users: {users}, duration_s: {duration}, ramp_up_s: 0, drain_s: 30, workers: 1,
        calibration_s: 0}}
dataset: {{source: synthetic, prompts: 256, synthetic_input_tokens: {input_len},
          output_tokens: {output_len}}}
"""


def _vllm_bench(args: argparse.Namespace, out: Path, seed: int) -> dict[str, Any]:
    command = [
        args.vllm,
        "bench",
        "serve",
        "--backend",
        "openai",
        "--base-url",
        args.url,
        "--endpoint",
        "/v1/completions",
        "--model",
        args.model,
        "--tokenizer",
        args.tokenizer,
        "--dataset-name",
        "random",
        "--random-input-len",
        str(args.input_len),
        "--random-output-len",
        str(args.output_len),
        "--random-range-ratio",
        "0",
        "--ignore-eos",
        "--num-prompts",
        str(args.num_prompts),
        "--max-concurrency",
        str(args.concurrency),
        "--request-rate",
        "inf",
        "--percentile-metrics",
        "ttft,tpot,itl,e2el",
        "--metric-percentiles",
        "50,90,99",
        "--seed",
        str(seed),
        "--disable-tqdm",
        "--num-warmups",
        "0",
        "--save-result",
        "--result-dir",
        str(out),
        "--result-filename",
        f"vllm-{seed}.json",
    ]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=1800)
    data: dict[str, Any] = json.loads((out / f"vllm-{seed}.json").read_text())
    return data


def _servingperf(args: argparse.Namespace, out: Path, k: int) -> dict[str, Any]:
    scenario = out / "vllm-view.yaml"
    scenario.write_text(
        SCENARIO.format(
            model=args.model,
            url=args.url,
            users=args.concurrency,
            duration=args.duration,
            input_len=args.input_len,
            output_len=args.output_len,
        )
    )
    run_dir = out / f"sp-{k}"
    cli = [sys.executable, "-m", "servingperf"]
    subprocess.run(
        [*cli, "run", str(scenario), "--out", str(run_dir), "--no-store", "--no-report"],
        check=True,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    view = out / f"view-{k}.json"
    subprocess.run(
        [*cli, "summarize", str(run_dir), "--as", "vllm-bench", "--json", str(view)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    figures = json.loads(view.read_text())["windows"][0]["figures"]
    result = {f["name"]: f["value"] for f in figures}
    summary = json.loads((run_dir / "summary.json").read_text())
    entry = next(iter(summary["instances"].values()))
    result["_ours_ttft_p50_ms"] = entry["stats"]["ttft_s"]["p50"] * 1000
    result["_ours_tpot_p50_ms"] = entry["stats"]["tpot_s"]["p50"] * 1000
    result["_ours_itl_p50_ms"] = entry["stats"]["itl_s"]["p50"] * 1000
    result["_validity"] = summary["validity"]["verdict"]
    return result


def _span(values: list[float]) -> str:
    return f"{min(values):.4g}–{max(values):.4g}" if len(values) > 1 else f"{values[0]:.4g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--vllm", default=os.environ.get("SERVINGPERF_VLLM", "vllm"))
    parser.add_argument("--input-len", type=int, default=64)
    parser.add_argument("--output-len", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--num-prompts", type=int, default=400)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        vllm_runs, ours = [], []
        for k in range(args.repeats):  # interleaved, so machine load drifts hit both alike
            vllm_runs.append(_vllm_bench(args, out, seed=k))
            ours.append(_servingperf(args, out, k))
    print(
        f"workload: input {args.input_len}, output {args.output_len} tokens, concurrency"
        f" {args.concurrency}; {args.repeats} runs each (min–max over runs)"
    )
    print(
        "| figure | vllm bench serve | servingperf --as vllm-bench | medians differ by | noise"
        " (largest run-to-run spread of either tool) | within noise |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for name, unit in FIGURES:
        theirs = [float(r[name]) for r in vllm_runs]
        mine = [float(r[name]) for r in ours]
        gap = abs(statistics.median(mine) - statistics.median(theirs))
        noise = max(max(theirs) - min(theirs), max(mine) - min(mine))
        print(
            f"| {name} ({unit}) | {_span(theirs)} | {_span(mine)} | {gap:.3g} | {noise:.3g}"
            f" | {'yes' if gap <= noise else 'no'} |"
        )
    print()
    print(
        "servingperf's own figures (its definitions), same runs: TTFT p50",
        _span([r["_ours_ttft_p50_ms"] for r in ours]),
        "ms, TPOT p50",
        _span([r["_ours_tpot_p50_ms"] for r in ours]),
        "ms, ITL p50",
        _span([r["_ours_itl_p50_ms"] for r in ours]),
        "ms; validity",
        sorted({r["_validity"] for r in ours}),
    )
    print(
        "vLLM completed per run:",
        [r["completed"] for r in vllm_runs],
        "; servingperf completed per run:",
        [int(r["completed"]) for r in ours],
    )


if __name__ == "__main__":
    main()

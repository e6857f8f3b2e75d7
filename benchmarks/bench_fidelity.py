"""Fidelity: each tool's TTFT, TPOT and ITL against the server's own ground truth.

Workloads (benchmarks/sse_server.py in timed mode, every stream on its own clock):
  16 and 256 concurrent streams: TTFT 100 ms, then 10-20 ms (uniform) between tokens, 128
  tokens; server on core 1, client on core 0 (one client core);
  1,024 concurrent streams: TTFT 100 ms, 50 ms between tokens, 64 tokens; servingperf with 2
  worker processes (the server's 2 processes and the workers share both cores).
Every tool runs closed loop for the same time; users start over the first 2 s (ramp).

The server writes one ground-truth line per request (times right after its writes returned, on
CLOCK_MONOTONIC). Per tool and workload: TTFT and TPOT percentiles over completed requests, and
ITL percentiles over every gap between token chunks, as the tool measured them and as the server
wrote them; the table gives tool - server for p50 and p99 (what the target is about: a
percentile's error). For servingperf, whose requests carry ids, it also gives the p99 of the
per-request |client - server| TTFT difference (tests/support/ground_truth.py). Definitions as in
DESIGN §3 (vLLM's names): AIPerf's "inter_token_latency" and GuideLLM's "inter_token_latency_ms"
are TPOT; GuideLLM gives no per-chunk times, so no ITL.

    .venv/bin/python benchmarks/bench_fidelity.py [--duration 30] [--tools servingperf,locust,aiperf]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import (
    BENCH,
    PYTHON,
    ensure_peer,
    guidellm_prompts,
    load_average,
    local_tokenizer,
    pinned,
    print_table,
    sse_server,
)

from servingperf.analysis.metrics import itl as client_itl
from servingperf.results.rundir import RunDir
from tests.support.ground_truth import compare, load_ground_truth

RAMP_S = 2.0


@dataclass(frozen=True)
class Workload:
    name: str
    users: int
    gap_min_s: float
    gap_max_s: float
    tokens: int
    workers: int
    client_cpus: str
    server_cpus: str
    server_processes: int


WORKLOADS = (
    Workload("16 streams", 16, 0.010, 0.020, 128, 1, "0", "1", 1),
    Workload("256 streams", 256, 0.010, 0.020, 128, 1, "0", "1", 1),
    Workload("1,024 streams, 2 workers", 1024, 0.050, 0.050, 64, 2, "0,1", "0,1", 2),
)


@dataclass
class Measured:
    """Samples in seconds; per-request TTFT error only where requests can be matched."""

    ttft: np.ndarray
    tpot: np.ndarray
    itl: np.ndarray | None
    completed: int
    matched_ttft_error: np.ndarray | None = None


def _arr(values: list[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def server_truth(prefix: Path) -> Measured:
    ttft: list[float] = []
    tpot: list[float] = []
    gaps: list[np.ndarray] = []
    for path in prefix.parent.glob(prefix.name + ".*"):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if row["outcome"] != "ok" or not row["token_written"]:
                continue
            written = np.asarray(row["token_written"])
            ttft.append(written[0] - row["arrival"])
            if len(written) >= 2:
                tpot.append((written[-1] - written[0]) / (len(written) - 1))
                gaps.append(np.diff(written))
    return Measured(_arr(ttft), _arr(tpot), np.concatenate(gaps) if gaps else _arr([]), len(ttft))


def run_tool(tool: str, load: Workload, url: str, duration: float, work: Path) -> Measured:
    total = duration + RAMP_S
    env = None
    if tool == "servingperf":
        argv = [
            PYTHON,
            str(BENCH / "spclient.py"),
            url,
            str(work),
            "--users",
            str(load.users),
            "--duration",
            str(duration),
            "--ramp-up",
            str(RAMP_S),
            "--output-tokens",
            str(load.tokens),
            "--workers",
            str(load.workers),
        ]
        env = {**os.environ, "PYTHONPATH": str(BENCH.parent)}
    elif tool == "locust":
        argv = [
            str(ensure_peer("locust") / "locust"),
            "-f",
            str(BENCH / "peers/locust_llm.py"),
            "--headless",
            "-u",
            str(load.users),
            "-r",
            str(load.users / RAMP_S),
            "-t",
            f"{int(total)}s",
            "-H",
            url,
            "--only-summary",
            "--loglevel",
            "WARNING",
        ]
        env = {
            **os.environ,
            "LOCUST_LLM_TOKENS": str(load.tokens),
            "LOCUST_LLM_OUT": str(work / "locust"),
        }
    elif tool == "aiperf":
        argv = [
            str(ensure_peer("aiperf") / "aiperf"),
            "profile",
            "-m",
            "m",
            "--url",
            url,
            "--endpoint-type",
            "completions",
            "--streaming",
            "--concurrency",
            str(load.users),
            "--concurrency-ramp-duration",
            str(RAMP_S),
            "--benchmark-duration",
            str(int(total)),
            "--tokenizer",
            str(local_tokenizer(work.parent / "tok")),
            "--output-tokens-mean",
            str(load.tokens),
            "--synthetic-input-tokens-mean",
            "8",
            "--use-server-token-count",
            "--ui",
            "none",
            "--artifact-dir",
            str(work / "out"),
        ]
    elif tool == "guidellm":
        argv = [
            str(ensure_peer("guidellm") / "guidellm"),
            "run",
            "--backend",
            f"kind=openai_http,target={url},model=m,request_format=/v1/completions",
            "--profile",
            f"kind=concurrent,streams={load.users}",
            "--constraint",
            f"kind=max_duration,seconds={int(total)}",
            "--data",
            f"kind=json_file,path={guidellm_prompts(work.parent, load.tokens)}",
            "--tokenizer",
            f"kind=huggingface_auto,model={local_tokenizer(work.parent / 'tok')}",
            "--output",
            f"kind=json,path={work / 'out.json'}",
            "--disable-console-interactive",
        ]
    else:
        raise ValueError(tool)
    with (work / "log.txt").open("wb") as log:
        subprocess.run(
            pinned(argv, load.client_cpus),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=work,
            timeout=total + 300,
            check=False,
        )
    return read_tool(tool, work)


def read_tool(tool: str, work: Path) -> Measured:
    ms = 1e-3
    if tool == "servingperf":
        table = RunDir(work).read_records()
        ok = table.filter(np.asarray(table.column("status").to_pylist()) == "ok")
        sent = np.asarray(ok.column("t_sent_s").to_numpy(), dtype=float)
        first = np.asarray(ok.column("t_first_token_s").to_numpy(), dtype=float)
        end = np.asarray(ok.column("t_end_s").to_numpy(), dtype=float)
        offsets = ok.column("chunk_offsets_s").to_pylist()
        last = np.asarray([o[-1] for o in offsets]) + sent
        n = np.asarray([len(o) for o in offsets], dtype=float)
        del end  # TPOT over token chunks, as the server's: (last - first) / (N - 1)
        return Measured(
            first - sent, (last - first) / np.maximum(n - 1, 1), client_itl(ok), ok.num_rows
        )
    if tool == "locust":
        ttft, tpot, gaps = [], [], []
        for path in work.glob("locust.*"):
            for line in path.read_text().splitlines():
                row = json.loads(line)
                chunks = np.asarray(row["chunks"])
                ttft.append(chunks[0] - row["sent"])
                if len(chunks) >= 2:
                    tpot.append((chunks[-1] - chunks[0]) / (len(chunks) - 1))
                    gaps.append(np.diff(chunks))
        return Measured(_arr(ttft), _arr(tpot), np.concatenate(gaps) if gaps else None, len(ttft))
    if tool == "aiperf":
        ttft, tpot, gaps = [], [], []
        for line in (work / "out" / "profile_export.jsonl").read_text().splitlines():
            metrics = json.loads(line).get("metrics", {})
            if "time_to_first_token" not in metrics:
                continue
            ttft.append(metrics["time_to_first_token"]["value"] * ms)
            if "inter_token_latency" in metrics:
                tpot.append(metrics["inter_token_latency"]["value"] * ms)
            gaps.extend(v * ms for v in metrics.get("inter_chunk_latency", {}).get("value", []))
        return Measured(_arr(ttft), _arr(tpot), _arr(gaps), len(ttft))
    data = json.loads((work / "out.json").read_text())
    ttft, tpot = [], []
    for request in data["benchmarks"][0]["requests"]["successful"]:
        if request.get("time_to_first_token_ms") is not None:
            ttft.append(request["time_to_first_token_ms"] * ms)
        if request.get("inter_token_latency_ms") is not None:
            tpot.append(request["inter_token_latency_ms"] * ms)
    return Measured(_arr(ttft), _arr(tpot), None, len(ttft))


def _p(values: np.ndarray | None, q: float) -> float:
    if values is None or values.size == 0:
        return float("nan")
    return float(np.percentile(values, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--tools", default="servingperf,locust,aiperf,guidellm")
    parser.add_argument("--workloads", default="0,1,2", help="indexes into the workload list")
    parser.add_argument("--keep", type=Path, help="keep logs and outputs in this directory")
    args = parser.parse_args()
    tools = args.tools.split(",")
    rows: list[list[object]] = []
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="bench-fidelity-") as tmp:
        root = args.keep or Path(tmp)
        for index in (int(i) for i in args.workloads.split(",")):
            load = WORKLOADS[index]
            for tool in tools if load.workers == 1 else ["servingperf"]:
                work = root / f"w{index}" / tool
                work.mkdir(parents=True, exist_ok=True)
                truth_prefix = work / "truth"
                server_args = [
                    "--ttft",
                    "0.1",
                    "--gap-min",
                    str(load.gap_min_s),
                    "--gap-max",
                    str(load.gap_max_s),
                ]
                with sse_server(
                    *server_args,
                    processes=load.server_processes,
                    cpus=load.server_cpus,
                    ground_truth=truth_prefix,
                ) as server:
                    measured = run_tool(tool, load, server.url, args.duration, work)
                truth = server_truth(truth_prefix)
                matched = None
                if tool == "servingperf":
                    comparison = compare(
                        RunDir(work).read_records(),
                        load_ground_truth(list(work.glob("truth.*"))),
                    )
                    matched = _p(np.abs(_arr(comparison.ttft_error_s)), 99) * 1e3
                row = [load.name, tool, measured.completed, truth.completed]
                for name in ("ttft", "tpot", "itl"):
                    mine, theirs = getattr(measured, name), getattr(truth, name)
                    row += [
                        (_p(mine, 50) - _p(theirs, 50)) * 1e3,
                        (_p(mine, 99) - _p(theirs, 99)) * 1e3,
                    ]
                row += [_p(truth.ttft, 99) * 1e3, "-" if matched is None else f"{matched:.2f}"]
                rows.append(row)
                print(f"  {load.name} {tool}: done", file=sys.stderr, flush=True)
    print_table(
        "Fidelity: tool - server ground truth, milliseconds (load average before:"
        f" {load_before}, after: {load_average()})",
        [
            "workload",
            "tool",
            "completed (tool)",
            "completed (server)",
            "TTFT p50 Δ",
            "TTFT p99 Δ",
            "TPOT p50 Δ",
            "TPOT p99 Δ",
            "ITL p50 Δ",
            "ITL p99 Δ",
            "server TTFT p99",
            "per-request |TTFT Δ| p99",
        ],
        rows,
    )
    by_load: dict[str, dict[str, list[object]]] = {}
    for row in rows:
        by_load.setdefault(str(row[0]), {})[str(row[1])] = row
    for name, tools_rows in by_load.items():
        ours = tools_rows.get("servingperf")
        if ours is None:
            continue
        for tool, row in tools_rows.items():
            if tool == "servingperf":
                continue
            ratios = []
            for column, label in ((5, "TTFT p99"), (9, "ITL p99")):
                a, b = abs(float(row[column])), abs(float(ours[column]))  # type: ignore[arg-type]
                if np.isfinite(a) and b > 0:
                    ratios.append(f"{label} error {a / b:.1f}x servingperf's")
            print(f"{name}, {tool}: " + ("; ".join(ratios) or "no comparable figure"))


if __name__ == "__main__":
    main()

"""Trace replay: how late servingperf sends each request of a replayed trace, on one client core.

Workload: a generated 100,000-request trace in the Mooncake format (Poisson arrivals over an
hour, i.e. about 28 requests/s, input 64-512 words, output 16 tokens, prefix blocks shared by
hash id), replayed by ``servingperf run`` (a static-platform scenario, dataset source ``trace``,
schedule ``trace`` with a speed-up) against the instant benchmark server (benchmarks/sse_server.py
``--instant``, core 1), with one load process pinned to core 0. *Lateness* = sent - scheduled,
per request, from the run's own records (the trace's arrival / speed-up is the schedule). The
table gives it per speed-up, with the send rate it means and the client's CPU share: of the whole
process tree over the run (start-up and the summary included), and of the load phase's work
(``load_health.json``: CPU time less the dispatcher's wait spin, over the phase's wall time).

    .venv/bin/python benchmarks/bench_trace_replay.py [--requests 100000] [--speedups 30 60 120]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import load_average, pinned, print_table, sse_server, tree_cpu_s

SERVINGPERF = str(Path(sys.executable).with_name("servingperf"))


def write_trace(path: Path, requests: int, span_s: float, seed: int = 0) -> None:
    """A Mooncake-format trace: Poisson arrivals over ``span_s``, 1-4 blocks of 128 tokens,
    the first block shared by 16 'system prompts'."""
    rng = random.Random(seed)
    rate = requests / span_s
    t_ms, next_id = 0.0, 1000
    with path.open("w") as out:
        for _ in range(requests):
            t_ms += rng.expovariate(rate) * 1000
            blocks = rng.randint(1, 4)
            ids = [rng.randrange(16), *range(next_id, next_id + blocks - 1)]
            next_id += blocks - 1
            row = {
                "timestamp": int(t_ms),
                "input_length": 64 + 128 * (blocks - 1) + rng.randrange(64),
                "output_length": 16,
                "hash_ids": ids,
            }
            out.write(json.dumps(row) + "\n")


def scenario(url: str, trace: Path, speedup: float, duration_s: float) -> str:
    return f"""\
name: trace-replay
platform: {{kind: static}}
models:
  - name: m
    model_id: m
    endpoint: {{url: "{url}"}}
dataset:
  source: trace
  trace: {{path: "{trace}", format: mooncake, block_tokens: 128}}
load:
  duration_s: {duration_s}
  ramp_up_s: 0
  workers: 1
  request_timeout_s: 30
  schedule: {{kind: trace, speedup: {speedup}}}
"""


def run_one(url: str, trace: Path, speedup: float, span_s: float, work: Path) -> list[object]:
    out = work / f"run-{speedup:g}"
    path = work / f"scenario-{speedup:g}.yaml"
    path.write_text(scenario(url, trace, speedup, span_s / speedup + 5))
    command = pinned(
        [SERVINGPERF, "run", str(path), "--out", str(out), "--no-report", "--no-store"]
    )
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    cpu = 0.0
    while process.poll() is None:
        cpu = max(cpu, tree_cpu_s(process.pid))
        time.sleep(0.5)
    wall = time.monotonic() - started
    if process.returncode not in (0, 1):
        raise RuntimeError(
            f"servingperf run exited {process.returncode}: {process.stderr.read().decode()[-2000:]}"
        )
    from servingperf.results.rundir import RunDir

    table = RunDir(out).read_records()
    sent = np.asarray(table.column("t_sent_s").to_numpy(zero_copy_only=False), dtype=float)
    scheduled = np.asarray(
        table.column("t_scheduled_s").to_numpy(zero_copy_only=False), dtype=float
    )
    ok = np.asarray([s == "ok" for s in table.column("status").to_pylist()])
    lateness_ms = (sent - scheduled)[np.isfinite(sent)] * 1000
    health = json.loads((out / "load_health.json").read_text())["phases"]
    work = max(
        (max(0.0, p["cpu_s"] - p.get("wait_spin_s", 0.0)) / p["wall_s"])
        for entry in health
        for p in entry.get("processes", [entry])
        if p.get("wall_s")
    )
    rate = len(table) / (span_s / speedup)
    p50, p99, p999 = np.percentile(lateness_ms, [50, 99, 99.9])
    return [
        f"{speedup:g}x",
        f"{rate:,.0f}",
        len(table),
        int(ok.sum()),
        round(float(p50), 3),
        round(float(p99), 3),
        round(float(p999), 3),
        round(float(lateness_ms.max()), 2),
        round(cpu / wall, 2),
        round(work, 2),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--span-s", type=float, default=3600.0, help="the trace's length")
    parser.add_argument("--speedups", type=float, nargs="+", default=[30.0, 60.0, 120.0])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        trace = work / "trace.jsonl"
        write_trace(trace, args.requests, args.span_s)
        rows = []
        with sse_server("--instant") as server:
            url = f"http://127.0.0.1:{server.port}"
            for speedup in args.speedups:
                rows.append(run_one(url, trace, speedup, args.span_s, work))
    print_table(
        f"Trace replay lateness, {args.requests:,} requests, one client core"
        f" (load average {load_average()})",
        ["speed-up", "send rate req/s", "records", "ok", "lateness p50 ms", "p99 ms",
         "p99.9 ms", "max ms", "client CPU share", "phase work CPU share"],
        rows,
    )  # fmt: skip


if __name__ == "__main__":
    main()

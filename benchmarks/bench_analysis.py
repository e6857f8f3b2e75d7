"""Analysis at scale: summarising N request records (default 10 million) — time and peak memory.

The records are synthetic but shaped like a real run's: one instance, one phase, streamed
completions of ``--chunks`` token chunks each (16 by default: the client-overhead workload), 0.5 %
errors, 0.1 % cut, written as Parquet segments of 500,000 records (what long runs' writers
produce), and the measured path is ``summarize_run_dir`` (segment by segment, only the columns a
summary needs; ``summarize_run`` over one in-memory table gives the same figures). The summary
runs in a fresh process; its peak memory is that process's maximum resident set size
(``ru_maxrss``), which includes the interpreter and libraries (about 100 MiB).

    .venv/bin/python benchmarks/bench_analysis.py [--records 10000000] [--chunks 16]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from harness import load_average, print_table

from servingperf.results.rundir import PhaseWindow, RunDir, RunInfo
from servingperf.results.schema import REQUEST_SCHEMA

SEGMENT = 500_000
RATE_RPS = 2_000.0  # arrival rate of the synthetic run: 10 M records = 5,000 s


def make_segment(start: int, count: int, chunks: int, rng: np.random.Generator) -> pa.Table:
    index = np.arange(start, start + count)
    sent = index / RATE_RPS + rng.uniform(0, 1e-3, count)
    scheduled = sent - rng.exponential(2e-4, count)
    ttft = rng.gamma(4.0, 0.025, count)
    gaps = rng.uniform(0.010, 0.020, (count, chunks - 1))
    offsets = np.concatenate([ttft[:, None], ttft[:, None] + np.cumsum(gaps, axis=1)], axis=1)
    roll = rng.uniform(0, 1, count)
    status = np.where(roll < 0.005, "error", np.where(roll < 0.006, "cut", "ok"))
    ok = status == "ok"
    end = np.where(ok, sent + offsets[:, -1] + 1e-4, np.nan)
    tokens = np.full(count, chunks, dtype=np.int32)
    list_offsets = pa.array(np.arange(0, count * chunks + 1, chunks, dtype=np.int32))
    columns = {
        "request_id": pa.array([f"m:load:w0:u{i % 256}:{i // 256}" for i in index.tolist()]),
        "instance": pa.array(np.full(count, "m")),
        "model": pa.array(np.full(count, "m")),
        "phase": pa.array(np.full(count, "load")),
        "worker": pa.array(np.zeros(count, dtype=np.int32)),
        "user": pa.array((index % 256).astype(np.int32)),
        "prompt_index": pa.array((index % 32).astype(np.int32)),
        "streamed": pa.array(np.ones(count, dtype=bool)),
        "requested_output_tokens": pa.array(tokens),
        "input_tokens": pa.array(np.full(count, 64, dtype=np.int32)),
        "output_tokens": pa.array(np.where(ok, tokens, 0).astype(np.int32), mask=~ok),
        "token_source": pa.array(np.full(count, "usage")),
        "t_scheduled_s": pa.array(scheduled),
        "t_sent_s": pa.array(sent),
        "t_first_token_s": pa.array(sent + ttft),
        "t_first_content_s": pa.array(sent + ttft),
        "t_end_s": pa.array(end, mask=~ok),
        "chunk_offsets_s": pa.ListArray.from_arrays(list_offsets, pa.array(offsets.ravel())),
        "chunk_tokens": pa.ListArray.from_arrays(
            list_offsets, pa.array(np.ones(count * chunks, dtype=np.int32))
        ),
        "status": pa.array(status),
        "error_kind": pa.array(
            np.where(status == "error", "http_status", np.where(status == "cut", "cut", None))
        ),
        "error_message": pa.array(np.where(status == "error", "HTTP 500: injected", None)),
        "finish_reason": pa.array(np.where(ok, "length", None)),
    }
    return pa.Table.from_pydict(columns, schema=REQUEST_SCHEMA)


def write_run(path: Path, records: int, chunks: int) -> None:
    run = RunDir(path)
    run.create()
    rng = np.random.default_rng(7)
    for number, start in enumerate(range(0, records, SEGMENT)):
        table = make_segment(start, min(SEGMENT, records - start), chunks, rng)
        pq.write_table(
            table, run.records_dir / f"part-w000-{number:06d}.parquet", compression="zstd"
        )
    end = records / RATE_RPS
    info = RunInfo(
        run_id="bench",
        scenario="bench",
        kind="single-model",
        started_at="2026-01-01T00:00:00",
        t0_monotonic=0.0,
        labels={},
        config={"slo": {"ttft_s": 0.2, "tpot_s": 0.05}},
        environment={},
        status="complete",
        phases=[PhaseWindow("m", "load", 0.0, 60.0, end, end + 1.0)],
    )
    run.write_info(info)


def summarize_child(path: Path) -> None:
    """In a fresh process: read the run directory and summarise it, report time and RSS."""
    from servingperf.analysis.summary import summarize_run_dir
    from servingperf.model.specs import SloSpec

    started = time.perf_counter()
    run = RunDir(path)
    slo = SloSpec.model_validate(run.read_info().config["slo"])
    summary = summarize_run_dir(run, slo)
    total_s = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    entry = summary["instances"]["m"]
    print(
        json.dumps(
            {
                "total_s": total_s,
                "peak_mib": peak_mib,
                "measured": entry["counts"]["measured"],
                "itl_n": entry["stats"]["itl_s"]["n"],
                "ttft_p99": entry["stats"]["ttft_s"]["p99"],
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--chunks", type=int, default=16)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        summarize_child(args.child)
        return
    with tempfile.TemporaryDirectory(prefix="bench-analysis-") as tmp:
        run = Path(tmp) / "run"
        started = time.perf_counter()
        write_run(run, args.records, args.chunks)
        written_s = time.perf_counter() - started
        size_mib = sum(p.stat().st_size for p in run.rglob("*.parquet")) / 2**20
        load = load_average()
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(run)],
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
    print_table(
        f"Analysis: summarising {args.records:,} records of {args.chunks} chunks"
        f" (load average: {load})",
        [
            "records",
            "Parquet on disk (MiB)",
            "read + summary (s)",
            "peak RSS (MiB)",
            "measured requests",
            "ITL samples",
        ],
        [
            [
                f"{args.records:,}",
                size_mib,
                result["total_s"],
                result["peak_mib"],
                f"{result['measured']:,}",
                f"{result['itl_n']:,}",
            ]
        ],
    )
    print(f"(synthetic run written in {written_s:.0f} s; targets: < 30 s and < 2,048 MiB)")


if __name__ == "__main__":
    main()

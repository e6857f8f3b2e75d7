"""Run servingperf's load engine against a URL, as a benchmark subprocess (not part of servingperf).

The real path: ``run_phase`` with the OpenAI client from the protocol registry, requests from the
scenario layer's request factory (synthetic prompts), records streamed to Parquet in
``<out>/records`` (by this process with one worker, by the worker processes otherwise).

    python benchmarks/spclient.py URL OUT --users 64 --duration 20 --output-tokens 16 [--workers N]
        [--tokenizer tokenizer.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from servingperf.load.engine import Recipe, run_phase
from servingperf.load.sinks import LoadCounters, NullProgress, PhaseOutputs
from servingperf.model.specs import DatasetSpec, LoadSpec, ProtocolKind
from servingperf.model.target import Target
from servingperf.results.record_writer import ParquetRecordWriter


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("out", type=Path)
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--ramp-up", type=float, default=0.0)
    parser.add_argument("--output-tokens", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--tokenizer", help="a tokenizer.json counting each chunk's tokens")
    args = parser.parse_args()
    records = args.out / "records"
    records.mkdir(parents=True, exist_ok=True)
    load = LoadSpec(
        users=args.users,
        duration_s=args.duration,
        ramp_up_s=args.ramp_up,
        workers=args.workers,
        request_timeout_s=60,
    )
    dataset = DatasetSpec(
        source="synthetic", synthetic_input_tokens=8, prompts=32, output_tokens=args.output_tokens
    )
    target = Target(
        url=args.url,
        model="m",
        protocol=ProtocolKind.OPENAI_COMPLETIONS,
        tokenizer=args.tokenizer,
    )
    recipe = Recipe(
        target,
        "servingperf.protocols.registry:create_client",
        "servingperf.scenarios.requests:worker_request_factory",
        {
            "instance": "bench",
            "model_id": "m",
            "phase": "load",
            "dataset": dataset.model_dump(mode="json"),
            "load": load.model_dump(mode="json"),
            "base_dir": str(args.out),
        },
    )
    writer = ParquetRecordWriter(records)
    counters = LoadCounters("bench", "load")

    t0 = time.monotonic()
    (args.out / "t0.json").write_text(json.dumps({"t0_monotonic": t0}))

    async def run() -> None:
        await run_phase(
            load,
            recipe,
            PhaseOutputs(writer, NullProgress(), counters, t0),
            instance="bench",
            phase="load",
            records_dir=records,
        )

    import uvloop

    try:
        uvloop.run(run())
    finally:
        writer.close()
    print(f"issued={counters.issued} ok={counters.ok} errors={counters.errors} cut={counters.cut}")


if __name__ == "__main__":
    main()

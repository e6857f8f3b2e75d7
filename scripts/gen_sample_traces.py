"""Write the small sample traces shipped in examples/traces/, one per supported format.

The public traces (Mooncake's, Azure's) cannot be downloaded here, and the loaders take the real
files as they are; these samples have their shapes: 300 requests over 5 minutes with bursts,
Mooncake rows sharing leading blocks (16 system prompts of 2 blocks), Azure rows with its date
format. Deterministic: rerunning rewrites the same bytes.

    .venv/bin/python scripts/gen_sample_traces.py
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "examples" / "traces"
ROWS = 300
SPAN_S = 300.0


def arrivals(rng: random.Random) -> list[float]:
    """Poisson arrivals whose rate doubles for the middle minute (a burst)."""
    times, t = [], 0.0
    while len(times) < ROWS:
        rate = ROWS / SPAN_S * (2.0 if 120 <= t < 180 else 1.0)
        t += rng.expovariate(rate)
        times.append(t)
    return times


def main() -> None:
    rng = random.Random(2026)
    times = arrivals(rng)
    OUT.mkdir(parents=True, exist_ok=True)
    next_id = 100
    with (OUT / "mooncake-sample.jsonl").open("w") as f:
        for t in times:
            system = rng.randrange(16)
            own = rng.randint(1, 6)
            ids = [2 * system, 2 * system + 1, *range(next_id, next_id + own)]
            next_id += own
            length = 512 * (len(ids) - 1) + rng.randint(1, 512)
            row = {"timestamp": int(t * 1000), "input_length": length,
                   "output_length": rng.randint(16, 400), "hash_ids": ids}  # fmt: skip
            f.write(json.dumps(row) + "\n")
    start = datetime(2023, 11, 16, 18, 15, 46, tzinfo=UTC)
    with (OUT / "azure-sample.csv").open("w") as f:
        f.write("TIMESTAMP,ContextTokens,GeneratedTokens\n")
        for t in times:
            moment = start + timedelta(seconds=t)
            stamp = moment.strftime("%Y-%m-%d %H:%M:%S.%f") + "0"  # Azure writes 7 digits
            f.write(f"{stamp},{rng.randint(20, 4000)},{rng.randint(5, 600)}\n")
    with (OUT / "servingperf-sample.jsonl").open("w") as f:
        for t in times:
            row = {"t_s": round(t, 6), "input_tokens": rng.randint(32, 1024),
                   "output_tokens": rng.randint(8, 256)}  # fmt: skip
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()

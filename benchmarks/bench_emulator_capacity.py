"""Emulator capacity: how many streamed requests (and chunks) per second the emulator serves.

The emulator's ``instant`` profile (zero-cost steps), streamed completions of 16 tokens, driven by
wrk (64 connections, one thread, on core 0) so that the client is never the limit: with one
emulator process on core 1, then with ``processes=2`` (both cores, shared with wrk). The figure
to plan with is the one-process, one-core row: a benchmark whose load generator needs more than
that from one core must give the emulator more processes (``ServeOptions.processes``) or use a
cheaper server (benchmarks/sse_server.py).

    .venv/bin/python benchmarks/bench_emulator_capacity.py [--duration 10]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import PYTHON, free_port, load_average, pinned, print_table, wait_listening

TOKENS = 16
SERVE = (
    "import sys; from servingperf.emulator.server import ServeOptions, serve; "
    "serve(ServeOptions(profile='instant', load_time_s=0, port=int(sys.argv[1]),"
    " processes=int(sys.argv[2])))"
)


def run(processes: int, cpus: str, duration: float, work: Path) -> tuple[float, float]:
    port = free_port()
    server = subprocess.Popen(
        pinned([PYTHON, "-c", SERVE, str(port), str(processes)], cpus),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port)
        time.sleep(2.5)  # the other processes import and bind
        script = work / "post.lua"
        script.write_text(
            'wrk.method = "POST"\n'
            f'wrk.body = \'{{"model":"instant","prompt":"hello","max_tokens":{TOKENS},'
            f'"min_tokens":{TOKENS},"stream":true}}\'\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
        out = subprocess.run(
            pinned(
                [
                    "wrk",
                    "-t1",
                    "-c64",
                    f"-d{int(duration)}s",
                    "-s",
                    str(script),
                    f"http://127.0.0.1:{port}/v1/completions",
                ]
            ),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        server.terminate()
        server.wait(30)
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None or "Non-2xx" in out:
        raise RuntimeError(f"wrk failed against the emulator:\n{out}")
    rps = float(match.group(1))
    return rps, rps * TOKENS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for processes, cpus in ((1, "1"), (2, "0,1")):
            rps, chunks = run(processes, cpus, args.duration, Path(tmp))
            rows.append([processes, cpus, rps, chunks])
    print_table(
        f"Emulator capacity, instant profile, {TOKENS} streamed tokens, wrk -c64 on core 0"
        f" (load average: {load_average()})",
        ["processes", "emulator cores", "requests/s", "token chunks/s"],
        rows,
    )


if __name__ == "__main__":
    main()

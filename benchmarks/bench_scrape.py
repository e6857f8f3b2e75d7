"""Scraping cost at the seed's 204 instances, and whether scraping moves the load figures.

Set-up: 204 emulator processes (``python -m servingperf.emulator serve``, flan-t5-small, as the
local platform starts them) plus one more, the *loaded* instance. This process runs servingperf's
own :class:`~servingperf.telemetry.scraper.Scraper` and
:class:`~servingperf.results.metric_writer.MetricWriter` (the run's code, 1 s interval, 0.5 s
timeout) and servingperf's load engine (``load.engine.run_phase``, one worker: the load shares the
scraper's event loop, the worst case; with ``load.workers`` > 1 the load runs in other processes).

1. Cost: the 204 instances scraped for ``--cost-s`` seconds with no load; harness CPU = user +
   system time of this process (the loop and the writer's parsing thread) over the window, minus
   the same window's idle CPU measured before the scraper started, divided by the scrapes done.
2. Side by side: ``--rounds`` pairs of load phases (16 closed-loop users, 32 output tokens, on the
   loaded instance), scraping off then on, alternated in one run so that drift hits both alike;
   the figures of each phase come from its records (servingperf's summary of the window).

    .venv/bin/python benchmarks/bench_scrape.py [--instances 204] [--rounds 3] [--phase-s 10]
        [--max-scrapes-per-s 50]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from harness import PYTHON, load_average, print_table

from servingperf.analysis.summary import summarize_window
from servingperf.load.engine import Recipe, run_phase
from servingperf.load.sinks import ListSink, LoadCounters, NullProgress, PhaseOutputs
from servingperf.model.specs import (
    DatasetSource,
    DatasetSpec,
    LoadSpec,
    ProtocolKind,
    ScrapeSpec,
)
from servingperf.model.target import Target
from servingperf.results.exposition import FamilyFilter
from servingperf.results.metric_writer import MetricWriter
from servingperf.results.record_writer import records_to_table
from servingperf.results.rundir import PhaseWindow
from servingperf.telemetry.scraper import Scraper, ScrapeTarget

START_TIMEOUT_S = 300.0


def start_emulators(count: int, work: Path) -> list[tuple[subprocess.Popen[bytes], Path]]:
    servers = []
    for index in range(count):
        folder = work / f"emu-{index:03d}"
        folder.mkdir()
        command = [
            PYTHON, "-m", "servingperf.emulator", "serve", "--profile", "flan-t5-small",
            "--port", "0", "--port-file", str(folder / "port"), "--load-time", "0",
            "--model-id", "loaded" if index == count - 1 else f"m{index}", "--seed", str(index),
        ]  # fmt: skip
        log = (folder / "log").open("wb")
        servers.append(
            (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), folder / "port")
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    for process, port_file in servers:
        while not port_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"an emulator did not start: {port_file.parent / 'log'}")
            time.sleep(0.05)
    return servers


def url_of(port_file: Path) -> str:
    return f"http://127.0.0.1:{int(port_file.read_text())}"


async def load_phase(url: str, phase_s: float, phase: str, t0: float) -> dict[str, Any]:
    load = LoadSpec(users=16, duration_s=phase_s, ramp_up_s=1.0, drain_s=5.0, workers=1)
    dataset = DatasetSpec(source=DatasetSource.SYNTHETIC, prompts=32, output_tokens=32)
    target = Target(url=url, model="loaded", protocol=ProtocolKind.OPENAI_COMPLETIONS)
    args = {
        "instance": "loaded",
        "model_id": "loaded",
        "phase": phase,
        "dataset": dataset.model_dump(mode="json"),
        "load": load.model_dump(mode="json"),
        "base_dir": ".",
        "streams": None,
    }
    recipe = Recipe(
        target,
        "servingperf.protocols.registry:create_client",
        "servingperf.scenarios.requests:worker_request_factory",
        args,
    )
    sink = ListSink()
    with tempfile.TemporaryDirectory() as records_dir:
        timing = await run_phase(
            load,
            recipe,
            PhaseOutputs(sink, NullProgress(), LoadCounters(instance="loaded", phase=phase), t0),
            instance="loaded",
            phase=phase,
            records_dir=Path(records_dir),
            workers=1,
        )
    window = PhaseWindow(
        "loaded", phase, timing.start_s, timing.measure_start_s, timing.measure_end_s, timing.end_s
    )
    figures = summarize_window(records_to_table(sink.records), window, None)
    return figures


def pick(figures: dict[str, Any]) -> dict[str, float]:
    stats = figures["stats"]
    return {
        "req/s": figures["throughput"]["request_rps"],
        "tok/s": figures["throughput"]["output_tps"],
        "TTFT p50 ms": stats["ttft_s"]["p50"] * 1e3,
        "TTFT p99 ms": stats["ttft_s"]["p99"] * 1e3,
        "TPOT p50 ms": stats["tpot_s"]["p50"] * 1e3,
        "lag p99 ms": stats["client_lag_s"]["p99"] * 1e3,
    }


async def measure(args: argparse.Namespace, urls: list[str], loaded: str, work: Path) -> None:
    t0 = time.monotonic()
    # idle baseline: this process with nothing to do
    cpu0 = time.process_time()
    await asyncio.sleep(args.cost_s)
    idle_cpu_per_s = (time.process_time() - cpu0) / args.cost_s
    writer = MetricWriter(work / "metrics", FamilyFilter())
    budget = args.max_scrapes_per_s
    scraper = Scraper(writer, t0, interval_s=1.0, timeout_s=0.5, max_scrapes_per_s=budget)
    targets = [ScrapeTarget(f"i{i:03d}", f"{u}/metrics") for i, u in enumerate(urls)]
    scraper.start()
    await asyncio.gather(*(scraper.add(t) for t in targets))  # first scrapes: parse caches fill
    await asyncio.sleep(2.0)
    scrapes0 = sum(s.scrapes for s in scraper.stats.values())
    parse0 = writer.parse_cpu_s
    cpu0 = time.process_time()
    began = time.monotonic()
    await asyncio.sleep(args.cost_s)
    elapsed = time.monotonic() - began
    cpu = time.process_time() - cpu0 - idle_cpu_per_s * elapsed
    scrapes = sum(s.scrapes for s in scraper.stats.values()) - scrapes0
    parse = writer.parse_cpu_s - parse0
    gaps = sum(s.gaps for s in scraper.stats.values())
    # side by side: off, on, off, on...
    rows: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    await scraper.close()  # off first
    for round_index in range(args.rounds):
        for mode in ("off", "on"):
            if mode == "on":
                scraper = Scraper(
                    writer, t0, interval_s=1.0, timeout_s=0.5, max_scrapes_per_s=budget
                )
                scraper.start()
                await asyncio.gather(*(scraper.add(t) for t in targets))
            figures = await load_phase(loaded, args.phase_s, f"{mode}-{round_index}", t0)
            rows[mode].append(pick(figures))
            if mode == "on":
                gaps += sum(s.gaps for s in scraper.stats.values())
                await scraper.close()
    writer.close()
    disk = sum(p.stat().st_size for p in (work / "metrics").glob("scrape-*.parquet"))
    samples = writer.samples_written
    print_table(
        f"Scraping cost: {len(urls)} emulator instances, 1 s interval, budget {budget:g} scrapes/s"
        f" (load average {load_average()})",
        ["figure", "value"],
        [
            ["scrapes in the window", scrapes],
            ["scrapes per second", round(scrapes / elapsed, 1)],
            ["harness CPU per scrape (ms)", round(cpu / max(1, scrapes) * 1e3, 3)],
            ["of which parsing, writer thread (ms)", round(parse / max(1, scrapes) * 1e3, 3)],
            ["harness CPU, share of one core", f"{cpu / elapsed:.1%}"],
            ["samples per scrape", round(samples / max(1, writer.scrapes_ok), 1)],
            ["gaps (failed scrapes), whole benchmark", gaps],
            ["metrics on disk per instance-hour (MiB)",
             round(disk / max(1, writer.scrapes_ok) * 3600 / 2**20, 2)],
        ],
    )  # fmt: skip
    header = ["figure", "scraping off (median)", "scraping on (median)", "on / off"]
    table = []
    for key in rows["off"][0]:
        off = statistics.median(r[key] for r in rows["off"])
        on = statistics.median(r[key] for r in rows["on"])
        table.append([key, round(off, 3), round(on, 3), f"{on / off:.3f}" if off else "-"])
    print_table(
        f"Load figures, scraping {len(urls)} instances off vs on, {args.rounds} alternated"
        f" pairs of {args.phase_s:g} s phases in one run (16 users, one load worker)",
        header,
        table,
    )
    each = [["round", "mode", *rows["off"][0]]]
    for index in range(args.rounds):
        for mode in ("off", "on"):
            each.append([index, mode, *(round(v, 2) for v in rows[mode][index].values())])
    print_table("Every phase", each[0], each[1:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=204)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--phase-s", type=float, default=10.0)
    parser.add_argument("--cost-s", type=float, default=15.0)
    parser.add_argument(
        "--max-scrapes-per-s",
        type=float,
        default=ScrapeSpec().max_scrapes_per_s,
        help="periodic scrape budget (default: the scenario default, metrics.scrape)",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="servingperf-bench-scrape-"))
    servers: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        started = time.monotonic()
        servers = start_emulators(args.instances + 1, work)
        print(f"{len(servers)} emulators up in {time.monotonic() - started:.0f} s", flush=True)
        *scraped, (_, loaded_port) = servers
        loaded = url_of(loaded_port)
        asyncio.run(measure(args, [url_of(p) for _, p in scraped], loaded, work))
    finally:
        for process, _ in servers:
            process.terminate()
        for process, _ in servers:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

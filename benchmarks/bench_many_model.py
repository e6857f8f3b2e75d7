"""The seed's many-model scale test on this machine: 12 namespaces x 17 instances = 204 emulator
processes (flan-t5-small), each validated with 10 queries twice (20 in all), through the real CLI
(``python -m servingperf run``), report included. Prints a table: wall time, peak memory (sum of
the RSS of every process of the run, sampled from /proc, and the harness's own peak), CPU time,
ready / validated counts, the load-time distribution and the saturation verdict; then checks that
no server process is left.

Time scale. ``--time-scale`` multiplies the flan-t5-small profile's load-time distribution
(lognormal, median 40 s, sigma 0.25, clipped to 20-120 s) and the seed's 60 s namespace stagger.
The default 0.1 (median 4 s, 2-12 s, 6 s stagger) runs in about 3-4 minutes; ``--time-scale 1``
is the profile as is, about 25 minutes. The distribution's shape (sigma) is never changed.

Before the run, ``--measure-emulator`` (default on) measures one emulator alone: RSS once
listening, and the CPU time its start-up took.

    .venv/bin/python benchmarks/bench_many_model.py                 # 204 instances, scale 0.1
    .venv/bin/python benchmarks/bench_many_model.py --time-scale 1  # the profile's load times
    .venv/bin/python benchmarks/bench_many_model.py --namespaces 3 --instances 4   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from servingperf.analysis.loadtimes import summarize_deployments
from servingperf.emulator.profiles import PROFILES
from servingperf.platforms.reaper import STATE_ENV, find_servers
from servingperf.results.rundir import RunDir

PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")
SAMPLE_S = 0.5
PSS_EVERY = 10  # samples between PSS readings (smaps_rollup is costly with 200 processes)
MIB = 1024 * 1024


def scenario(args: argparse.Namespace) -> str:
    profile = PROFILES["flan-t5-small"]
    scale = args.time_scale
    return f"""\
name: bench-many-model
kind: many-model
labels: {{benchmark: many-model, time_scale: "{scale:g}"}}
platform:
  kind: local
  ready_timeout_s: {max(300.0, 3 * profile.load_time_max_s * scale):g}
  deploy_concurrency: {args.namespaces}
models:
  - name: flan-t5-small
    emulator:
      profile: flan-t5-small
      overrides:
        load_time_median_s: {profile.load_time_median_s * scale:g}
        load_time_sigma: {profile.load_time_sigma:g}
        load_time_min_s: {profile.load_time_min_s * scale:g}
        load_time_max_s: {profile.load_time_max_s * scale:g}
many_model:
  namespaces: {args.namespaces}
  instances_per_namespace: {args.instances}
  queries: {args.queries}
  validation_output_tokens: 16
  namespace_concurrency: {args.namespaces}
  namespace_stagger_s: {60.0 * scale:g}
dataset: {{source: bundled, prompts: 32, seed: 42}}
"""


def status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, ValueError, IndexError):
        return 0.0


@dataclass
class Sampler:
    """Samples the harness and its marked servers until stopped; keeps the peaks."""

    harness: int
    state: Path
    peak_rss_kib: int = 0
    peak_pss_kib: int = 0
    peak_servers: int = 0
    peak_harness_rss_kib: int = 0
    harness_hwm_kib: int = 0
    harness_cpu_s: float = 0.0
    server_cpu_s: dict[int, float] = field(default_factory=dict)
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.is_set():
            servers = [s.pid for s in find_servers(self.state)]
            harness_rss = status_kib(self.harness, "VmRSS")
            rss = harness_rss + sum(status_kib(p, "VmRSS") for p in servers)
            self.peak_rss_kib = max(self.peak_rss_kib, rss)
            self.peak_harness_rss_kib = max(self.peak_harness_rss_kib, harness_rss)
            self.harness_hwm_kib = max(self.harness_hwm_kib, status_kib(self.harness, "VmHWM"))
            self.harness_cpu_s = max(self.harness_cpu_s, cpu_s(self.harness))
            self.peak_servers = max(self.peak_servers, len(servers))
            for pid in servers:
                self.server_cpu_s[pid] = max(self.server_cpu_s.get(pid, 0.0), cpu_s(pid))
            if self.samples % PSS_EVERY == 0 and servers:
                pss = pss_kib(self.harness) + sum(pss_kib(p) for p in servers)
                self.peak_pss_kib = max(self.peak_pss_kib, pss)
            self.samples += 1
            self._stop.wait(SAMPLE_S)

    def stop(self) -> None:
        self._stop.set()


def measure_emulator(work: Path) -> dict[str, float]:
    """One emulator alone, started as the local platform starts it (``python -m
    servingperf.emulator serve``, without the CLI's imports): RSS once listening, and the CPU
    time of its start-up."""
    port_file = work / "port"
    started = time.monotonic()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "servingperf.emulator",
            "serve",
            "--profile",
            "flan-t5-small",
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--load-time",
            "0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = started + 60
        while not port_file.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        listening_s = time.monotonic() - started
        time.sleep(1.0)
        return {
            "listening_s": listening_s,
            "rss_mib": status_kib(process.pid, "VmRSS") / 1024,
            "pss_mib": pss_kib(process.pid) / 1024,
            "vsz_mib": status_kib(process.pid, "VmSize") / 1024,
            "startup_cpu_s": cpu_s(process.pid),
        }
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespaces", type=int, default=12)
    parser.add_argument("--instances", type=int, default=17, help="instances per namespace")
    parser.add_argument("--queries", type=int, default=10, help="validation queries per round")
    parser.add_argument("--time-scale", type=float, default=0.1)
    parser.add_argument("--no-report", action="store_true", help="skip the HTML report")
    parser.add_argument("--measure-emulator", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--keep", type=Path, help="keep the run directory here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-many-model-"))
    state = (work / "state").resolve()
    run_dir = args.keep.resolve() if args.keep else work / "run"
    emulator = measure_emulator(work) if args.measure_emulator else None
    (work / "many.yaml").write_text(scenario(args))
    command = [
        sys.executable,
        "-m",
        "servingperf",
        "run",
        str(work / "many.yaml"),
        "--out",
        str(run_dir),
    ]
    if args.no_report:
        command.append("--no-report")
    started = time.monotonic()
    with (work / "harness.log").open("wb") as log:
        harness = subprocess.Popen(  # cwd: the run's default store lands in the work directory
            command, cwd=work, env={**os.environ, STATE_ENV: str(state)}, stdout=log, stderr=log
        )
    sampler = Sampler(harness.pid, state)
    thread = threading.Thread(target=sampler.run, daemon=True)
    thread.start()
    _, status, usage = os.wait4(harness.pid, 0)
    wall = time.monotonic() - started
    sampler.stop()
    thread.join()
    harness.returncode = os.waitstatus_to_exitcode(status)
    left = find_servers(state)

    run = RunDir(run_dir)
    info = run.read_info()
    deployments = run.read_deployments()
    summary = summarize_deployments(deployments, info.phases, run.read_records())
    rows = deployments.to_pylist()
    expected = 2 * args.queries
    fully_validated = sum(
        1 for r in rows if r["validations_ok"] == expected and r["validations_failed"] == 0
    )
    loads = summary["load_time_s"] or {}
    saturation = summary["saturation"]
    report = run_dir / "report.html"

    table: list[tuple[str, str]] = [
        (
            "instances (namespaces x per namespace)",
            f"{args.namespaces} x {args.instances} = {args.namespaces * args.instances}",
        ),
        ("time scale of load times and stagger", f"{args.time_scale:g}"),
        ("harness exit code / run status", f"{harness.returncode} / {info.status}"),
        ("wall time (s)", f"{wall:.1f}"),
        (
            "deployment duration, first created to last ready (s)",
            f"{summary['duration_s'] or 0:.1f}",
        ),
        ("ready", f"{summary['counts']['ready']} (failed {summary['counts']['failed']})"),
        (f"validated with {expected} ok queries each", f"{fully_validated}"),
        (
            "validation queries ok / failed",
            f"{summary['validation']['queries_ok']} / {summary['validation']['queries_failed']}",
        ),
        ("servers running at once (peak)", f"{sampler.peak_servers}"),
        (
            "peak memory, sum of RSS of harness + servers (MiB)",
            f"{sampler.peak_rss_kib / 1024:.0f}",
        ),
        ("peak memory, sum of PSS (MiB, sampled every 5 s)", f"{sampler.peak_pss_kib / 1024:.0f}"),
        ("harness peak RSS, VmHWM (MiB)", f"{sampler.harness_hwm_kib / 1024:.0f}"),
        ("harness ru_maxrss from wait4 (MiB)", f"{usage.ru_maxrss / 1024:.0f}"),
        ("harness CPU user + sys, last sample (s)", f"{sampler.harness_cpu_s:.1f}"),
        ("servers CPU, sum of last samples (s)", f"{sum(sampler.server_cpu_s.values()):.1f}"),
        ("harness + servers CPU, wait4 (s)", f"{usage.ru_utime + usage.ru_stime:.1f}"),
        (
            "load time min / Q1 / median / Q3 / P90 / max (s)",
            " / ".join(
                f"{loads.get(k, float('nan')):.1f}"
                for k in ("min", "q1", "median", "q3", "p90", "max")
            ),
        ),
        ("factor max / min", f"{loads.get('max_min_factor') or float('nan'):.2f}"),
        ("saturation verdict", f"{saturation['verdict']}"),
        ("Theil-Sen increase over the run (s) [95% CI]", _trend(saturation)),
        ("most instances loading at once", f"{saturation['max_loading_at_once']}"),
        (
            "report",
            f"{report} ({report.stat().st_size / 1024:.0f} KiB)"
            if report.exists()
            else "not drawn",
        ),
        ("server processes left", f"{len(left)}"),
    ]
    if emulator is not None:
        table[:0] = [
            (
                "one emulator: RSS / PSS / VSZ once listening (MiB)",
                f"{emulator['rss_mib']:.1f} / {emulator['pss_mib']:.1f} / {emulator['vsz_mib']:.0f}",
            ),
            (
                "one emulator: start-up CPU (s) / time to listen (s)",
                f"{emulator['startup_cpu_s']:.2f} / {emulator['listening_s']:.2f}",
            ),
        ]
    width = max(len(k) for k, _ in table)
    print(f"{'measure'.ljust(width)}  value")
    for key, value in table:
        print(f"{key.ljust(width)}  {value}")
    print("sentences:")
    for sentence in summary["sentences"]:
        print(f"  {sentence}")
    (work / "bench.json").write_text(
        json.dumps({"table": dict(table), "summary": summary}, indent=1, default=str)
    )
    print(f"work directory: {work}")
    ok = (
        harness.returncode == 0
        and not left
        and summary["counts"]["ready"] == args.namespaces * args.instances
        and fully_validated == args.namespaces * args.instances
    )
    return 0 if ok else 1


def _trend(saturation: dict[str, object]) -> str:
    trend = saturation.get("trend")
    if not isinstance(trend, dict):
        return "n/a"
    return (
        f"{trend['increase_s']:.2f} [{trend['increase_low_s']:.2f}, {trend['increase_high_s']:.2f}]"
    )


if __name__ == "__main__":
    sys.exit(main())

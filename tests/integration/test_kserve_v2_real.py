"""Our KServe v2 REST and gRPC clients against a real third-party server: the Python model server
of the ``kserve`` package (0.21, in its own venv made by scripts/test.sh), serving a small text
model defined in tests/integration/kserve_real/model_server.py, bound to 127.0.0.1.

Checks: probe (health and model readiness) passes; unary generation returns the server's token
counts; TTFT is absent for these unary calls; a wrong model name is a clear failure.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from servingperf.errors import TargetError
from servingperf.model.records import Exchange, GenerationRequest, RequestStatus
from servingperf.model.specs import ProtocolKind
from servingperf.model.target import Target
from servingperf.protocols.registry import create_client

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
def kserve_server():  # type: ignore[no-untyped-def]
    python = _kserve_python()
    http_port, grpc_port = _free_port(), _free_port()
    process = subprocess.Popen(
        [python, str(SERVER), str(http_port), str(grpc_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"kserve model server exited: {process.stderr.read()[-2000:]}")
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
        if process.stderr is not None:
            process.stderr.close()


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

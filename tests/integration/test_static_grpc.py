"""The static platform over gRPC: ``endpoint.grpc_address`` per model, plaintext or TLS.

Caikit (unary), TGIS (server-streaming) and KServe v2 gRPC scenarios run through ``run_scenario``
against a gRPC server already running on loopback (the emulator's front ends, in this process;
the real KServe model server's is in ``test_kserve_v2_real.py``). TLS: ``grpcs://`` with a CA
file. A gRPC model without a gRPC address, or with one that is not ``host:port``, is one error
line naming the field, exit code 2.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from servingperf.cli import app
from servingperf.config import parse_scenario
from servingperf.emulator.engine import Engine
from servingperf.emulator.groundtruth import GroundTruthLog
from servingperf.emulator.grpc_context import ServingContext
from servingperf.emulator.grpc_server import start_grpc_server
from servingperf.emulator.profiles import resolve_profile
from servingperf.load.sinks import NullProgress
from servingperf.scenarios.runner import RunOptions, run_scenario
from tests.integration.test_grpc_tls import LOOPBACK_NAMES, self_signed


@pytest.fixture
async def grpc_port() -> AsyncIterator[int]:
    engine = Engine(resolve_profile("instant", {"decode_base_s": 0.002}))
    server, port = await start_grpc_server(ServingContext({"m": engine}, GroundTruthLog()))
    try:
        yield port
    finally:
        await server.stop(0.5)
        await engine.aclose()


def static_scenario(protocol: str, endpoint: str, stream: bool) -> str:
    return f"""
name: static-grpc
platform: {{kind: static}}
models:
  - {{name: m, model_id: m, protocol: {protocol}, endpoint: {endpoint}}}
load: {{users: 2, duration_s: 1, ramp_up_s: 0, stream: {str(stream).lower()}, workers: 1}}
dataset: {{source: synthetic, synthetic_input_tokens: 8, prompts: 4, output_tokens: 6}}
"""


async def run_ok(text: str, tmp_path: Path) -> list[dict[str, object]]:
    spec = parse_scenario(text, "static-grpc.yaml")
    options = RunOptions(base_dir=tmp_path, runs_dir=tmp_path, out=tmp_path / "run", report=False)
    outcome = await run_scenario(spec, options, NullProgress(), asyncio.Event())
    rows: list[dict[str, object]] = outcome.run_dir.read_records().to_pylist()
    assert outcome.info.status == "complete"
    deployments = outcome.run_dir.read_deployments().to_pylist()
    assert [d["status"] for d in deployments] == ["ready"]
    return rows


@pytest.mark.parametrize(
    ("protocol", "stream"),
    [("caikit-grpc", False), ("caikit-grpc", True), ("tgis-grpc", True), ("kserve-v2-grpc", False)],
)
async def test_static_grpc_protocols_reach_a_running_server(
    grpc_port: int, tmp_path: Path, protocol: str, stream: bool
) -> None:
    endpoint = f'{{grpc_address: "127.0.0.1:{grpc_port}"}}'
    rows = await run_ok(static_scenario(protocol, endpoint, stream), tmp_path)
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) >= 4
    assert all(r["output_tokens"] == 6 for r in ok)
    assert all((r["t_first_token_s"] is not None) is stream for r in ok)


async def test_static_grpc_over_tls_with_a_ca_file(tmp_path: Path) -> None:
    cert, key = self_signed(LOOPBACK_NAMES)
    (tmp_path / "ca.pem").write_bytes(cert)
    engine = Engine(resolve_profile("instant", {"decode_base_s": 0.002}))
    server, port = await start_grpc_server(
        ServingContext({"m": engine}, GroundTruthLog()), tls=(cert, key)
    )
    try:
        endpoint = f'{{grpc_address: "grpcs://127.0.0.1:{port}", ca_file: ca.pem}}'
        rows = await run_ok(static_scenario("tgis-grpc", endpoint, True), tmp_path)
    finally:
        await server.stop(0.5)
        await engine.aclose()
    assert sum(1 for r in rows if r["status"] == "ok") >= 4


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        (
            '{url: "http://127.0.0.1:8000"}',
            "s.yaml:6: models[0].endpoint.grpc_address: protocol 'caikit-grpc' is gRPC: give"
            " the server's gRPC address",
        ),
        (
            '{grpc_address: "http://127.0.0.1:8033"}',
            "s.yaml:6: models[0].endpoint.grpc_address: 'http://127.0.0.1:8033' is not a gRPC"
            " address",
        ),
        ("{token_env: T}", "s.yaml:6: models[0].endpoint.url: give 'url' (HTTP protocols) or"),
    ],
)
def test_a_grpc_model_without_a_usable_address_is_one_line_exit_2(
    tmp_path: Path, endpoint: str, expected: str
) -> None:
    (tmp_path / "s.yaml").write_text(
        "name: s\nplatform: {kind: static}\nmodels:\n"
        f"  - name: m\n    protocol: caikit-grpc\n    endpoint: {endpoint}\n"
    )
    result = CliRunner().invoke(app, ["run", str(tmp_path / "s.yaml")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert expected in " ".join(lines[0].split()), lines[0]

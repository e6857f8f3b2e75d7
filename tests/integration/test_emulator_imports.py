"""What an emulator process loads: an HTTP-only server (the local platform starts one per model
instance, hundreds at once) must not import grpc, protobuf, pydantic or the Typer CLI; each is
loaded only by the configuration that uses it (docs/emulator.md, Memory). Checked on modules
(``sys.modules`` of a child process) and on the shared objects a real process maps."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from servingperf.model.specs import EmulatorSpec, ModelSpec
from servingperf.platforms.base import InstanceRequest
from servingperf.platforms.local import LocalPlatform

# Top-level packages an HTTP-only emulator has no use for.
HEAVY = (
    "grpc",
    "google.protobuf",
    "pydantic",
    "pydantic_core",
    "typer",
    "rich",
    "numpy",
    "pyarrow",
)
# Their compiled extensions, as they appear in /proc/PID/maps once imported.
HEAVY_LIBRARIES = ("cygrpc", "_pydantic_core", "_upb", "_message.", "numpy", "pyarrow")

_CHILD_TIMEOUT_S = 60


def loaded_after(code: str) -> list[str]:
    """The HEAVY packages present in ``sys.modules`` after a child ran ``code``."""
    check = (
        f"\nimport json, sys\nheavy = {HEAVY!r}\n"
        "print(json.dumps(sorted(h for h in heavy if h in sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code + check],
        capture_output=True,
        text=True,
        timeout=_CHILD_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    found: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


def test_the_lean_entry_point_imports_nothing_heavy() -> None:
    """``python -m servingperf.emulator`` (what the local platform runs) imports only the HTTP
    server: not grpc, protobuf, pydantic, Typer or Rich."""
    assert loaded_after("import servingperf.emulator.command_line") == []


# A child that starts a server in its event loop, sends one OpenAI and one KServe v2 REST request,
# then closes it: the modules loaded include those its first requests needed.
_SERVE_AND_ASK = """
import asyncio, json, sys
import aiohttp
from servingperf.emulator.server import ServeOptions, start_server

async def main():
    options = ServeOptions(profile="instant", load_time_s=0, port=0, {extra})
    server = await start_server(options)
    try:
        timeout = aiohttp.ClientTimeout(total=20)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            body = {{"model": "instant", "prompt": "hi", "max_tokens": 2}}
            async with session.post(server.url + "/v1/completions", json=body) as response:
                assert response.status == 200, response.status
            v2 = {{"inputs": [{{"name": "text_input", "datatype": "BYTES", "shape": [1],
                                "data": ["hi"]}}]}}
            async with session.post(server.url + "/v2/models/instant/infer", json=v2) as response:
                assert response.status == 200, response.status
    finally:
        await server.close()

asyncio.run(main())
"""


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("", []),
        ("grpc_port=0", ["google.protobuf", "grpc"]),
        ("faults=__import__('servingperf.emulator.faults').emulator.faults"
         ".fault_spec_from_pairs(['stall_p=0'])", ["pydantic", "pydantic_core"]),
    ],
    ids=["http-and-kserve-v2-rest", "grpc", "faults"],
)  # fmt: skip
def test_each_configuration_loads_what_it_uses(extra: str, expected: list[str]) -> None:
    """HTTP (OpenAI and KServe v2 REST) after one request of each: nothing heavy; a gRPC port
    brings grpc and protobuf, injected faults bring pydantic (the spec that validates them)."""
    assert loaded_after(_SERVE_AND_ASK.format(extra=extra)) == expected


def _wait_for(path: Path, process: subprocess.Popen[bytes], timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_text()
        assert process.poll() is None, f"the emulator exited early with {process.returncode}"
        time.sleep(0.05)
    raise AssertionError(f"{path} did not appear within {timeout_s} s")


def test_a_local_platform_server_maps_no_heavy_library(tmp_path: Path) -> None:
    """The very command the local platform runs for an HTTP instance: once it has answered a
    request, none of grpc's, protobuf's or pydantic's compiled extensions is mapped."""
    local = LocalPlatform(tmp_path / "work", time.monotonic(), state_dir=tmp_path / "state")
    spec = ModelSpec(name="m1", emulator=EmulatorSpec(profile="instant", load_time_s=0))
    argv = local.command(InstanceRequest(name="m1", namespace="ns-01", model=spec), tmp_path)
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        port = int(_wait_for(tmp_path / "port", process, _CHILD_TIMEOUT_S))
        ask = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/completions",
            data=b'{"model": "instant", "prompt": "hi", "max_tokens": 2}',
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(ask, timeout=20) as response:
            assert response.status == 200
        maps = Path(f"/proc/{process.pid}/maps").read_text()
        assert "servingperf" in Path(f"/proc/{process.pid}/cmdline").read_text()
        assert "aiohttp" in maps  # the check sees extension modules
        assert [lib for lib in HEAVY_LIBRARIES if lib in maps] == []
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=_CHILD_TIMEOUT_S)
    assert process.returncode == 0, stderr.decode()


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--profile", "nope"], "flan-t5-small"), (["--profile", "instant", "--set", "x=y"], "--set")],
)
def test_lean_entry_point_bad_input_exits_two(args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "servingperf.emulator", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=_CHILD_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert "Traceback" not in result.stderr

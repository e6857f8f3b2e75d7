"""The static platform records every endpoint it is given, like the platforms that deploy, so a
static run directory has a ``deployments.parquet`` too: no creation time (nothing was created),
ready when taken into use, failed when the probe fails, never deleted. Servers: an in-process
emulator on loopback, and a loopback port nobody listens on."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from servingperf.config import parse_scenario
from servingperf.emulator.server import ServeOptions, start_server
from servingperf.errors import DeployError
from servingperf.load.sinks import NullProgress
from servingperf.model.specs import EmulatorSpec, EndpointSpec, ModelSpec
from servingperf.platforms.base import InstanceRequest
from servingperf.platforms.static import StaticPlatform
from servingperf.results.rundir import RunDir
from servingperf.scenarios.runner import RunOptions, run_scenario


@pytest.fixture
async def server_url() -> AsyncIterator[str]:
    running = await start_server(
        ServeOptions(
            profile="flan-t5-small",
            model_ids=("a",),
            overrides={"decode_base_s": 0.005, "decode_per_seq_s": 0.0},
            load_time_s=0,
        )
    )
    try:
        yield running.url
    finally:
        await running.close()


def _closed_port() -> int:
    """A loopback port that was just free: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_an_endpoint_is_recorded_ready_at_once_and_left_as_found() -> None:
    platform = StaticPlatform(t0=0.0)
    model = ModelSpec(name="a", endpoint=EndpointSpec(url="http://127.0.0.1:9/v1"))
    instance = await platform.deploy(InstanceRequest(name="a", namespace="ns", model=model))
    await platform.wait_ready(instance, 1.0)
    await platform.delete(instance)
    await platform.release()  # a kept run: nothing of its own to end
    await platform.close()
    assert platform.instances == [instance]
    assert instance.model_id is None  # the scenario's id is sent
    record = instance.record
    assert (record.platform, record.clock_source, record.status) == ("static", "harness", "ready")
    assert (record.created_at, record.t_created_s, record.load_time_s) == (None, None, None)
    assert record.ready_at is not None
    assert record.t_ready_s is not None
    assert record.t_deleted_s is None
    assert record.endpoint == "http://127.0.0.1:9/v1"


async def test_a_model_without_endpoint_is_refused_and_not_recorded() -> None:
    platform = StaticPlatform(t0=0.0)
    model = ModelSpec(name="a", emulator=EmulatorSpec(profile="instant"))
    with pytest.raises(DeployError, match="needs an 'endpoint'"):
        await platform.deploy(InstanceRequest(name="a", namespace="ns", model=model))
    assert platform.instances == []


async def test_a_static_run_writes_deployments_with_the_probe_failure(
    server_url: str, tmp_path: Path
) -> None:
    dead = f"http://alice:hunter2@127.0.0.1:{_closed_port()}"
    text = f"""\
name: static-run
platform: {{kind: static}}
models:
  - {{name: a, model_id: a, endpoint: {{url: "{server_url}"}}}}
  - {{name: gone, model_id: a, endpoint: {{url: "{dead}"}}}}
load: {{users: 1, duration_s: 0.5, ramp_up_s: 0, workers: 1}}
dataset: {{source: synthetic, synthetic_input_tokens: 8, prompts: 2, output_tokens: 4}}
"""
    spec = parse_scenario(text, "scenario.yaml")
    out = tmp_path / "run"
    options = RunOptions(base_dir=tmp_path, runs_dir=tmp_path, out=out, report=False)
    with pytest.raises(DeployError, match="1 of 2 models failed"):
        await run_scenario(spec, options, NullProgress(), asyncio.Event())

    deployments = {d["instance"]: d for d in RunDir(out).read_deployments().to_pylist()}
    assert set(deployments) == {"a", "gone"}
    ok, gone = deployments["a"], deployments["gone"]
    for d in (ok, gone):
        assert d["platform"] == "static"
        assert (d["created_at"], d["t_created_s"], d["t_deleted_s"]) == (None, None, None)
        assert d["ready_at"] is not None
    assert (ok["status"], ok["failure_reason"], ok["endpoint"]) == ("ready", None, server_url)
    assert gone["status"] == "failed"
    assert gone["failure_reason"]
    assert "hunter2" not in gone["endpoint"]
    assert "hunter2" not in gone["failure_reason"]
    assert RunDir(out).read_records().num_rows > 0  # the reachable one was loaded

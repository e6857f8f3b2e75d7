"""The local platform starting a serving engine from a command (``models[].server``), with real
processes: the emulator's own entry point stands in for an engine here (the real vLLM case is
``test_vllm_platform.py``), and ``sh`` for engines that fork, crash or never come up.

Checks: the placeholders are filled in (the engine listens where the platform probes, serves the
scenario's model id, writes into its instance folder), readiness is the given ``ready_path``,
the environment is passed, a failed or slow start fails the instance with the log's last lines,
and deleting the instance stops its whole process group, forked children included.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from servingperf.config import parse_scenario
from servingperf.errors import ConfigError, DeployError
from servingperf.model.server_spec import ServerSpec
from servingperf.model.specs import ModelSpec, ProtocolKind
from servingperf.model.target import Target
from servingperf.platforms.base import InstanceRequest
from servingperf.platforms.local import LocalPlatform
from servingperf.platforms.processes import group_members
from servingperf.platforms.reaper import find_servers
from servingperf.protocols.registry import create_client

pytestmark = pytest.mark.slow

EMULATOR = [sys.executable, "-m", "servingperf.emulator", "serve", "--profile", "instant"]


def platform(tmp_path: Path) -> LocalPlatform:
    return LocalPlatform(tmp_path / "instances", time.monotonic(), state_dir=tmp_path / "state")


def engine(
    command: list[str], env: dict[str, str] | None = None, ready_path: str = "/health"
) -> InstanceRequest:
    spec = ModelSpec(
        name="engine",
        model_id="served-name",
        server=ServerSpec(command=command, env=env or {}, ready_path=ready_path),
    )
    return InstanceRequest(name="engine", namespace="ns", model=spec)


async def test_an_engine_command_is_started_probed_and_stopped_with_its_group(
    tmp_path: Path,
) -> None:
    local = platform(tmp_path)
    # A shell that forks a child (as an engine forks its workers), then becomes the server.
    command = [
        "sh",
        "-c",
        'sleep 600 & echo "child $! of {model_id} in {instance_dir}" > "{instance_dir}/child";'
        ' echo "env $ENGINE_FLAG"; exec "$0" "$@"',
        *EMULATOR,
        "--host",
        "{host}",
        "--port",
        "{port}",
        "--model-id",
        "{model_id}",
    ]
    instance = await local.deploy(
        engine(command, env={"ENGINE_FLAG": "on-{port}"}, ready_path="/v1/models")
    )
    try:
        await local.wait_ready(instance, 60)
        assert instance.url is not None and instance.url.startswith("http://127.0.0.1:")
        port = instance.url.rsplit(":", 1)[1]
        folder = tmp_path / "instances" / "ns" / "engine"
        child_line = (folder / "child").read_text().split()
        assert child_line[3:] == ["served-name", "in", str(folder)]
        assert f"env on-{port}" in (folder / "server.log").read_text()
        client = create_client(
            Target(url=instance.url, model="served-name", protocol=ProtocolKind.OPENAI_COMPLETIONS)
        )
        try:
            await client.probe()  # the engine serves the scenario's model id
        finally:
            await client.aclose()
        leader = instance.record
        assert leader.status == "ready" and leader.endpoint == instance.url
        pgid = next(s.pid for s in find_servers((tmp_path / "state").resolve()))
        assert int(child_line[1]) in group_members(pgid)
    finally:
        await local.close()
    assert group_members(pgid) == []  # the forked child went with the group
    assert find_servers((tmp_path / "state").resolve()) == []
    assert instance.record.status == "deleted"


async def test_an_engine_that_exits_while_starting_fails_with_its_log(tmp_path: Path) -> None:
    local = platform(tmp_path)
    instance = await local.deploy(
        engine(["sh", "-c", "echo loading on {port}; echo 'fatal: no model' >&2; exit 4"])
    )
    try:
        with pytest.raises(DeployError) as info:
            await local.wait_ready(instance, 30)
    finally:
        await local.close()
    message = str(info.value)
    assert message.startswith("engine: server exited with code 4 while starting (loading on ")
    assert message.endswith(" | fatal: no model)")
    assert instance.record.status == "failed"


async def test_an_engine_not_ready_in_time_fails_with_its_last_log_lines(tmp_path: Path) -> None:
    local = platform(tmp_path)
    lines = "; ".join(f"echo step {i}" for i in range(8))
    instance = await local.deploy(
        engine(["sh", "-c", f"{lines}; echo on {{port}}; exec sleep 600"])
    )
    try:
        with pytest.raises(DeployError) as info:
            await local.wait_ready(instance, 1.5)
        pgid = next(s.pid for s in find_servers((tmp_path / "state").resolve()))
    finally:
        await local.close()
    message = str(info.value)
    prefix = (
        "engine: not ready after 1.5 s (last log lines: step 4 | step 5 | step 6 | step 7 | on "
    )
    assert message.startswith(prefix), message
    assert message.removeprefix(prefix).removesuffix(")").isdigit(), message
    assert group_members(pgid) == []


async def test_a_missing_program_is_a_deploy_error(tmp_path: Path) -> None:
    local = platform(tmp_path)
    try:
        with pytest.raises(DeployError, match=r"engine: cannot start the server: .*no-such-engine"):
            await local.deploy(engine(["/nonexistent/no-such-engine", "--port", "{port}"]))
    finally:
        await local.close()


BASE = """\
name: s
platform: {kind: local}
models:
  - name: m
    protocol: PROTOCOL
    server:
      command: COMMAND
"""


@pytest.mark.parametrize(
    ("protocol", "command", "expected"),
    [
        (
            "openai-completions",
            "[vllm, serve, --port, '{prt}']",
            "s.yaml:7: models[0].server.command[3]: unknown placeholder {prt}; use {host}",
        ),
        (
            "openai-completions",
            "[vllm, serve, '{port']",
            "s.yaml:7: models[0].server.command[2]: malformed placeholder: expected '}' before"
            " end of string (write {{ and }} for braces)",
        ),
        (
            "openai-completions",
            "[vllm, serve]",
            "s.yaml:7: models[0].server.command: the command must use {port}",
        ),
        (
            "caikit-grpc",
            "[runtime, '{port}']",
            "s.yaml:7: models[0].server.command: protocol 'caikit-grpc' is gRPC: the command must"
            " use {grpc_port}",
        ),
        ("openai-chat", "[]", "s.yaml:7: models[0].server.command: List should have at least 1"),
    ],
)
def test_bad_server_commands_name_the_field(protocol: str, command: str, expected: str) -> None:
    text = BASE.replace("PROTOCOL", protocol).replace("COMMAND", command)
    with pytest.raises(ConfigError) as info:
        parse_scenario(text, "s.yaml")
    assert expected in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


def test_a_server_and_an_emulator_together_are_refused() -> None:
    text = BASE.replace("PROTOCOL", "openai-chat").replace("COMMAND", "[x, '{port}']")
    text += "    emulator: {profile: instant}\n"
    with pytest.raises(ConfigError, match="models\\[0\\]: give one of 'emulator'"):
        parse_scenario(text, "s.yaml")


def test_an_env_value_with_a_bad_placeholder_names_its_key() -> None:
    text = BASE.replace("PROTOCOL", "openai-chat").replace("COMMAND", "[x, '{port}']")
    text += "      env: {CACHE: '{home}'}\n"
    with pytest.raises(ConfigError, match=r"models\[0\]\.server\.env\.CACHE: unknown placeholder"):
        parse_scenario(text, "s.yaml")

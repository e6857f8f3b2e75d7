"""The emulator command line (``python -m servingperf.emulator serve``, which ``servingperf emulator
serve`` hands its arguments to): it reads every option and every command the local platform writes."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import pytest

from servingperf.cli import app
from servingperf.emulator.command_line import build_parser, parse_options
from servingperf.emulator.faults import fault_spec_from_pairs
from servingperf.errors import ConfigError
from servingperf.model.specs import EmulatorSpec, FaultSpec, ModelSpec, ProtocolKind
from servingperf.platforms.base import InstanceRequest
from servingperf.platforms.local import LocalPlatform


def test_every_option_is_read() -> None:
    options = parse_options(
        [
            "serve", "--profile", "instant", "--port", "0", "--host", "::1",
            "--model-id", "a", "--model-id", "b", "--set", "decode_base_s=0.5",
            "--seed", "7", "--load-time", "1.5", "--ground-truth", "gt.jsonl",
            "--port-file", "port", "--grpc-port", "0", "--grpc-port-file", "grpc_port",
            "--fault", "stall_p=0.25", "--fault", "error_status.503=0.1",
        ]
    )  # fmt: skip
    assert options.profile == "instant"
    assert (options.port, options.host) == (0, "::1")
    assert options.model_ids == ("a", "b")
    assert options.overrides == {"decode_base_s": 0.5}
    assert (options.seed, options.load_time_s) == (7, 1.5)
    assert options.ground_truth_path == Path("gt.jsonl")
    assert options.port_file == Path("port")
    assert (options.grpc_port, options.grpc_port_file) == (0, Path("grpc_port"))
    assert options.faults == FaultSpec(stall_p=0.25, error_status={503: 0.1})
    assert (options.processes, options.reuse_port) == (1, False)


def test_defaults_are_an_http_only_server_without_faults() -> None:
    options = parse_options(["serve", "--profile", "instant"])
    assert (options.host, options.port, options.seed) == ("127.0.0.1", 8000, 0)
    assert options.model_ids == () and options.overrides == {}
    assert options.load_time_s is None and options.ground_truth_path is None
    assert options.grpc_port is None and options.faults is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--set", "decode_base_s=fast"], "--set: values must be numbers"),
        (["--set", "=1"], "expected KEY=VALUE"),
        (["--fault", "stall_p=2"], "--fault stall_p"),
        (["--fault", "nonsense"], "expected KEY=VALUE"),
    ],
)
def test_bad_values_are_config_errors(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_options(["serve", "--profile", "instant", *argv])


def test_usage_errors_exit_two() -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_options(["serve", "--port", "0"])  # --profile is required
    assert exit_info.value.code == 2


def test_the_cli_command_hands_its_arguments_to_the_one_declaration(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``servingperf emulator serve`` has no options of its own: argparse's parser answers."""
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["emulator", "serve", "--help"])
    assert result.exit_code == 0
    assert "usage: servingperf emulator serve" in result.output
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            serve = action.choices["serve"]
            for option in serve._actions:
                for flag in option.option_strings:
                    assert flag in result.output
    bad = CliRunner().invoke(app, ["emulator", "serve", "--port", "0"])
    assert bad.exit_code == 2  # --profile is required, as in the lean command


def _request(**emulator: Any) -> InstanceRequest:
    protocol = emulator.pop("protocol", ProtocolKind.OPENAI_COMPLETIONS)
    model = ModelSpec(
        name="m1", protocol=protocol, emulator=EmulatorSpec(profile="instant", **emulator)
    )
    return InstanceRequest(name="m1", namespace="ns-01", model=model, seed=3)


@pytest.mark.parametrize(
    "request_",
    [
        _request(),
        _request(load_time_s=0.5, overrides={"decode_base_s": 0.25}),
        _request(faults={"stall_p": 0.2, "error_status": {503: 0.05}, "start": "never-ready"}),
        _request(protocol=ProtocolKind.TGIS_GRPC),
    ],
    ids=["plain", "overrides", "faults", "grpc"],
)
def test_the_local_platform_command_reads_back(tmp_path: Path, request_: InstanceRequest) -> None:
    """Every option the local platform writes is read back as the instance's settings."""
    local = LocalPlatform(tmp_path / "work", time.monotonic(), state_dir=tmp_path / "state")
    argv = local.command(request_, tmp_path)
    assert argv[1:4] == ["-m", "servingperf.emulator", "serve"]
    options = parse_options(argv[3:])
    emulator = request_.model.emulator
    assert emulator is not None
    assert options.profile == emulator.profile
    assert options.model_ids == (request_.model.request_model,)
    assert options.overrides == emulator.overrides
    assert options.load_time_s == emulator.load_time_s
    assert options.seed == request_.seed
    assert options.port == 0 and options.port_file == tmp_path / "port"
    assert options.faults == emulator.faults
    is_grpc = request_.model.protocol.value.endswith("-grpc")
    assert (options.grpc_port is not None) is is_grpc
    assert fault_spec_from_pairs([]) is None

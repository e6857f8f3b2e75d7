"""The emulator's command line: ``python -m servingperf.emulator serve [options]``.

The one declaration of the emulator's options: ``servingperf emulator serve`` hands its arguments
here, so both spellings take the same options. It parses them with argparse, so the process the
local platform starts loads neither Typer, Rich nor the rest of the CLI. The local platform starts
one emulator process per model instance (hundreds in a many-model scenario) with this command:
what a process imports it keeps in memory for its whole life (docs/emulator.md, Memory). Errors
are ``error: MESSAGE`` on stderr with the documented exit code (2 for bad options, as argparse's
own usage errors).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from servingperf.emulator.faults import fault_spec_from_pairs
from servingperf.emulator.server import ServeOptions, serve
from servingperf.errors import ConfigError, ExitCode, ServingPerfError

PROGRAM = "python -m servingperf.emulator"


def build_parser(prog: str = PROGRAM) -> argparse.ArgumentParser:
    """The parser of ``serve``."""
    parser = argparse.ArgumentParser(prog=prog, description="The embedded model-server emulator.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser(
        "serve", help="serve an emulated model (OpenAI-compatible HTTP) until SIGTERM or Ctrl-C"
    )
    add = serve_parser.add_argument
    add("--profile", required=True, help="emulator profile, e.g. flan-t5-small")
    add("--port", type=int, default=8000, help="TCP port; 0 picks a free one")
    add("--host", default="127.0.0.1", help="address to bind")
    add("--model-id", action="append", default=[], help="model id to serve (repeatable)")
    add(
        "--adapter-id",
        action="append",
        default=[],
        help="a served model id that is a LoRA adapter (repeatable; slots: --set max_loras=N)",
    )
    add(
        "--set",
        action="append",
        default=[],
        dest="set_",
        metavar="KEY=VALUE",
        help="override a profile parameter (repeatable)",
    )
    add("--seed", type=int, default=0, help="seeds output lengths and the load time")
    add("--load-time", type=float, default=None, help="seconds before ready (default: profile)")
    add("--ground-truth", type=Path, default=None, help="server-side timings per request (JSONL)")
    add("--port-file", type=Path, default=None, help="write the bound port here once listening")
    add(
        "--grpc-port",
        type=int,
        default=None,
        help="also serve caikit, TGIS and KServe v2 over gRPC here (0 = any port)",
    )
    add("--grpc-port-file", type=Path, default=None, help="write the bound gRPC port here")
    add(
        "--processes",
        type=_at_least_one,
        default=1,
        help="serve HTTP from this many processes sharing the port (SO_REUSEPORT), each with its"
        " own engine: to outrun a load generator, not to model one device",
    )
    add(
        "--fault",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="inject a fault (repeatable), e.g. stall_p=0.1, error_status.503=0.05;"
        " keys: docs/failure-behaviour.md",
    )
    return parser


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _overrides(pairs: Sequence[str]) -> dict[str, float]:
    overrides: dict[str, float] = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        try:
            overrides[key.strip()] = float(value.strip())
        except ValueError as exc:
            raise ConfigError(f"--set: values must be numbers ({exc})") from None
    return overrides


def parse_options(argv: Sequence[str], prog: str = PROGRAM) -> ServeOptions:
    """The :class:`ServeOptions` of a ``serve`` command line (without the program name).

    Raises ``ConfigError`` for a bad ``--set`` or ``--fault`` value; argparse itself exits with
    status 2 on a usage error, as the Typer CLI does.
    """
    args = build_parser(prog).parse_args(list(argv))
    return ServeOptions(
        profile=args.profile,
        host=args.host,
        port=args.port,
        model_ids=tuple(args.model_id),
        adapter_ids=tuple(args.adapter_id),
        overrides=_overrides(args.set_),
        seed=args.seed,
        load_time_s=args.load_time,
        ground_truth_path=args.ground_truth,
        port_file=args.port_file,
        grpc_port=args.grpc_port,
        grpc_port_file=args.grpc_port_file,
        faults=fault_spec_from_pairs(args.fault),
        processes=args.processes,
    )


def main(argv: Sequence[str] | None = None, prog: str = PROGRAM) -> int:
    """Run ``serve`` until SIGTERM or SIGINT; the process exit code (0, or an error's code;
    argparse exits with 2 itself on a usage error, and with 0 after ``--help``)."""
    try:
        serve(parse_options(sys.argv[1:] if argv is None else argv, prog))
    except ServingPerfError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return int(ExitCode.INTERRUPTED)
    return int(ExitCode.OK)

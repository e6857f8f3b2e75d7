"""What every command shares: the consoles, error reporting with exit codes, the async runner, and
the option declarations several commands take (``Annotated`` aliases, so that ``run``, ``ci`` and
the store commands spell each option, its flag and its help once)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from servingperf.errors import ConfigError, ExitCode, ServingPerfError

console = Console(stderr=True)
# In a CI log there is no terminal width: use a wide one rather than Rich's 80 columns.
out = Console(width=None if Console().is_terminal else 160)

T = TypeVar("T")

DEFAULT_DATA_DIR = Path("servingperf-data")
DEFAULT_RUNS_DIR = DEFAULT_DATA_DIR / "runs"
DEFAULT_SITE_DIR = DEFAULT_DATA_DIR / "site"

# Options shared by several commands (the default value stays at each use: `= None`, ...).
StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="results store: a SQLite file or a postgresql:// URL"
        " (default: $SERVINGPERF_STORE or servingperf-data/results.db)",
    ),
]
RunsDirOption = Annotated[Path, typer.Option(help="parent of run directories")]
LabelOption = Annotated[
    list[str] | None,
    typer.Option("--label", "-l", help="KEY=VALUE label of this run, repeatable"),
]
DurationOption = Annotated[
    float | None, typer.Option("--duration", help="override load.duration_s (seconds)")
]
UsersOption = Annotated[int | None, typer.Option("--users", help="override load.users")]
RampUpOption = Annotated[
    float | None, typer.Option("--ramp-up", help="override load.ramp_up_s (seconds)")
]
ThresholdOption = Annotated[
    float | None, typer.Option(help="relative change that counts (0.05 = 5%)")
]
AcknowledgementsOption = Annotated[
    Path | None, typer.Option(help="YAML file of acknowledged changes")
]
JunitOption = Annotated[Path | None, typer.Option(help="write JUnit XML here")]
MarkdownOption = Annotated[Path | None, typer.Option(help="write a Markdown summary here")]
AllowInvalidOption = Annotated[
    bool,
    typer.Option(
        "--allow-invalid", help="judge runs whose validity verdict is invalid (else exit 4)"
    ),
]
ComparabilityOption = Annotated[
    list[str] | None,
    typer.Option(
        "--comparability",
        help="FIELD=refuse|warn|ignore for fingerprint fields (globs: 'hardware.*'), repeatable;"
        " default: every field refuses but engine.*.version (ignored) and servingperf.version"
        " (warns)",
    ),
]
AllowIncomparableOption = Annotated[
    bool,
    typer.Option(
        "--allow-incomparable",
        help="judge sides whose fingerprints differ, with a warning (else exit 5)",
    ),
]


def trust_of(allow_invalid: bool, comparability: list[str] | None, allow_incomparable: bool) -> Any:
    """The gate's trust settings from the three options above (ConfigError for a bad pair)."""
    from servingperf.analysis.fingerprint import Policy
    from servingperf.continuous.gating import Trust

    policy = Policy.default().with_rules(parse_pairs(comparability, "--comparability"))
    return Trust(policy.relaxed() if allow_incomparable else policy, allow_invalid)


def overrides(duration: float | None, users: int | None, ramp_up: float | None) -> dict[str, Any]:
    """The scenario fields that ``--duration``, ``--users`` and ``--ramp-up`` override."""
    return {"load.duration_s": duration, "load.users": users, "load.ramp_up_s": ramp_up}


def parse_pairs(values: list[str] | None, what: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} {item!r}: expected KEY=VALUE")
        pairs[key.strip()] = value.strip()
    return pairs


def run_async(coro: Coroutine[Any, Any, T], stop: asyncio.Event | None = None) -> T:
    """Run a coroutine on uvloop; first Ctrl-C / SIGTERM sets ``stop`` (a graceful stop), the
    second exits at once (records flushed so far stay readable; servers die with their parent)."""

    async def main() -> T:
        loop = asyncio.get_running_loop()
        if stop is not None:

            def on_signal(signum: int) -> None:
                if stop.is_set():
                    console.print("[red]second interrupt: exiting now[/red]")
                    os._exit(ExitCode.INTERRUPTED)
                console.print(
                    f"[yellow]{signal.Signals(signum).name}: stopping, flushing records and"
                    " removing deployed models (again to exit at once)[/yellow]"
                )
                stop.set()

            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, on_signal, signum)
        return await coro

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return asyncio.run(main())
    return uvloop.run(main())


def fail(exc: ServingPerfError) -> typer.Exit:
    # escape: a message quotes user input ("[a-z0-9]", "[/]"), which is not Rich markup
    console.print(
        f"[red]error:[/red] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True
    )
    return typer.Exit(int(exc.exit_code))

"""What every command shares: the consoles, error reporting with exit codes, the async runner."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from servingperf.errors import ConfigError, ExitCode, ServingPerfError

console = Console(stderr=True)
# In a CI log there is no terminal width: use a wide one rather than Rich's 80 columns.
out = Console(width=None if Console().is_terminal else 160)

T = TypeVar("T")

DEFAULT_DATA_DIR = Path("servingperf-data")


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

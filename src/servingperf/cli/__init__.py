"""The ``servingperf`` command: a thin Typer app that parses, delegates and maps errors to the
documented exit codes (0 ok; 1 regression or SLO breach; 2 bad input; 3 target or deployment
failure; 130 interrupted; anything else is a bug, shown with its traceback).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from servingperf.cli.common import (
    DEFAULT_RUNS_DIR,
    DurationOption,
    LabelOption,
    RampUpOption,
    RunsDirOption,
    StoreOption,
    UsersOption,
    console,
    fail,
    out,
    overrides,
    parse_pairs,
)
from servingperf.cli.running import print_summary, record_run, run_scenario_file
from servingperf.errors import ConfigError, ExitCode, ServingPerfError

app = typer.Typer(
    name="servingperf",
    help="Continuous performance and scale validation of model-serving stacks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
emulator_app = typer.Typer(help="The embedded model-server emulator.", no_args_is_help=True)
app.add_typer(emulator_app, name="emulator")


@app.command()
def run(
    scenario: Annotated[Path, typer.Argument(help="scenario YAML file (see examples/)")],
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="run directory to create (default: under --runs-dir)"),
    ] = None,
    runs_dir: RunsDirOption = DEFAULT_RUNS_DIR,
    label: LabelOption = None,
    duration: DurationOption = None,
    users: UsersOption = None,
    ramp_up: RampUpOption = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="skip the HTML report")] = False,
    store: StoreOption = None,
    no_store: Annotated[bool, typer.Option("--no-store", help="do not record the run")] = False,
) -> None:
    """Run a scenario, write its run directory, record it in the store, print the summary."""
    try:
        outcome = run_scenario_file(
            scenario,
            out_dir,
            runs_dir,
            parse_pairs(label, "--label"),
            overrides(duration, users, ramp_up),
            report=not no_report,
        )
    except ServingPerfError as exc:
        raise fail(exc) from None
    print_summary(outcome.summary)
    out.print(f"run directory: {outcome.run_dir.path}")
    if not no_store:
        record_run(outcome.run_dir, store)
    if not no_report:
        out.print(f"report: {outcome.run_dir.path / 'report.html'}")
    if outcome.kept is not None:
        _print_kept(outcome)
    if outcome.info.status == "incomplete":
        raise typer.Exit(int(ExitCode.INTERRUPTED))


def _print_kept(outcome: Any) -> None:
    """keep_deployed: say what is still deployed and how to remove it."""
    kept = [i for i in outcome.kept.instances if i.record.t_deleted_s is None]
    names = ", ".join(f"{i.request.namespace}/{i.request.name}" for i in kept[:10])
    more = f" and {len(kept) - 10} more" if len(kept) > 10 else ""
    out.print(
        f"kept deployed ({outcome.kept.name}): {len(kept)} instance(s) {names}{more}", markup=False
    )
    if outcome.kept.name == "kserve":
        out.print(f"remove them with: servingperf cleanup --kserve --run-id {outcome.info.run_id}")
    elif outcome.kept.name == "local":
        out.print("local servers stop when this command exits (they never outlive the harness)")


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="where the demo's runs go")] = Path(
        "demo-out"
    ),
    examples: Annotated[Path, typer.Option(help="folder of the demo scenarios")] = Path(
        "examples/demo"
    ),
) -> None:
    """Run the demo against the embedded emulator: the three scenario flavours, then a release
    history with a regression gate; writes every report and an index page under --out."""
    from servingperf.cli.demo import run_demo

    try:
        run_demo(examples, out_dir)
    except ServingPerfError as exc:
        raise fail(exc) from None


@app.command()
def summarize(
    run_dir: Annotated[Path, typer.Argument(help="a run directory")],
    as_peer: Annotated[
        str | None,
        typer.Option(
            "--as",
            help="recompute the headline figures as a peer tool defines them:"
            " vllm-bench, guidellm, inference-perf or aiperf (summary.json is left as it is)",
        ),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="with --as: also write the view as JSON here")
    ] = None,
) -> None:
    """Recompute summary.json from the run's records and print it (or, with --as, a peer's view)."""
    from servingperf.results.rundir import RunDir, write_json_atomic
    from servingperf.scenarios.outputs import peer_view, write_summary

    if as_peer is not None:
        from servingperf.cli.peer_tables import peer_tables

        try:
            view = peer_view(RunDir(run_dir), as_peer)
        except ServingPerfError as exc:
            raise fail(exc) from None
        for table in peer_tables(view):
            out.print(table)
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(json_out, view.to_json())
        return
    if json_out is not None:
        raise fail(ConfigError("--json: only with --as PEER")) from None
    try:
        summary = write_summary(RunDir(run_dir))
    except ServingPerfError as exc:
        raise fail(exc) from None
    print_summary(summary)
    _note_status(summary)


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="a run directory")]) -> None:
    """Redraw a run's summary and HTML report (with PNG charts) from its records."""
    from servingperf.results.rundir import RunDir
    from servingperf.scenarios.outputs import write_report, write_summary

    try:
        summary = write_summary(RunDir(run_dir))
        write_report(RunDir(run_dir))
    except ServingPerfError as exc:
        raise fail(exc) from None
    out.print(f"report: {run_dir / 'report.html'}")
    _note_status(summary)


def _note_status(summary: dict[str, Any]) -> None:
    """Say so when the figures come from a run that did not complete (interrupted, failed,
    or never closed: see servingperf.scenarios.outputs)."""
    status = summary.get("status")
    if status != "complete":
        reason = summary.get("status_reason") or "no reason recorded"
        console.print(
            f"note: this run is {status}: {reason}", markup=False, highlight=False, soft_wrap=True
        )


@emulator_app.command(
    "serve",
    add_help_option=False,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def emulator_serve(ctx: typer.Context) -> None:
    """Serve an emulated model (OpenAI-compatible HTTP, optionally gRPC) until SIGTERM or Ctrl-C;
    options: servingperf emulator serve --help."""
    from servingperf.emulator.command_line import main as emulator_main

    code = emulator_main(["serve", *ctx.args], prog="servingperf emulator")
    if code:
        raise typer.Exit(code)


def _register_continuous() -> None:
    from servingperf.cli import ci, cleanup, continuous, exports

    for command in (
        exports.export,
        cleanup.cleanup,
        ci.ci,
        ci.site,
        continuous.ingest,
        continuous.history,
        continuous.compare,
        continuous.gate,
        continuous.changepoints,
    ):
        app.command()(command)


_register_continuous()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(int(ExitCode.INTERRUPTED))

"""The ``servingperf`` command: a thin Typer app that parses, delegates and maps errors to the
documented exit codes (0 ok; 1 regression or SLO breach; 2 bad input; 3 target or deployment
failure; 130 interrupted; anything else is a bug, shown with its traceback).
"""

from __future__ import annotations

import asyncio
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
    run_async,
)
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
        outcome = _run_scenario_file(
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


def print_summary(summary: dict[str, Any]) -> None:
    """The summary table, then a sweep's stages and verdict when the run was a sweep."""
    from servingperf.cli.tables import summary_table, sweep_tables

    out.print(summary_table(summary))
    for table in sweep_tables(summary):
        out.print(table)


def record_run(run_dir: Any, store: str | None) -> None:
    from servingperf.continuous.ingest import ingest, store_location
    from servingperf.results.store import open_store

    try:
        with open_store(store_location(store)) as opened:
            ingest(opened, run_dir)
            out.print(f"recorded in the store: {opened.location}")
    except ServingPerfError as exc:
        raise fail(exc) from None


def _run_scenario_file(
    scenario: Path,
    out_dir: Path | None,
    runs_dir: Path,
    labels: dict[str, str],
    overrides: dict[str, Any],
    report: bool = True,
) -> Any:
    from servingperf.config import load_scenario

    spec = load_scenario(scenario, {k: v for k, v in overrides.items() if v is not None})
    if labels:  # command-line labels add to (and win over) the file's labels
        spec = spec.model_copy(update={"labels": {**spec.labels, **labels}})
    return run_spec(spec, scenario.parent, runs_dir, out_dir, report)


def run_spec(
    spec: Any, base_dir: Path, runs_dir: Path, out_dir: Path | None = None, report: bool = True
) -> Any:
    """Run a validated scenario with live progress; Ctrl-C stops it gracefully."""
    from servingperf.cli.progress import RichProgress
    from servingperf.scenarios.runner import RunOptions, run_scenario

    stop = asyncio.Event()
    options = RunOptions(base_dir=base_dir, runs_dir=runs_dir, out=out_dir, report=report)

    async def run_and_release() -> Any:
        outcome = await run_scenario(spec, options, RichProgress(console), stop)
        if outcome.kept is not None:  # keep_deployed: close our sessions, leave the instances
            await outcome.kept.release()
        return outcome

    return run_async(run_and_release(), stop)


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
def summarize(run_dir: Annotated[Path, typer.Argument(help="a run directory")]) -> None:
    """Recompute summary.json from the run's records and print it."""
    from servingperf.results.rundir import RunDir
    from servingperf.scenarios.outputs import write_summary

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


@emulator_app.command("serve")
def emulator_serve(
    profile: Annotated[str, typer.Option(help="emulator profile, e.g. flan-t5-small")],
    port: Annotated[int, typer.Option(help="TCP port; 0 picks a free one")] = 8000,
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    model_id: Annotated[
        list[str] | None, typer.Option("--model-id", help="model id to serve (repeatable)")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override a profile parameter, KEY=VALUE")
    ] = None,
    seed: Annotated[int, typer.Option(help="seeds output lengths and the load time")] = 0,
    load_time: Annotated[
        float | None, typer.Option("--load-time", help="seconds before ready (default: profile)")
    ] = None,
    ground_truth: Annotated[
        Path | None, typer.Option(help="write server-side timings per request to this JSONL file")
    ] = None,
    port_file: Annotated[
        Path | None, typer.Option(help="write the bound port here once listening")
    ] = None,
    grpc_port: Annotated[
        int | None,
        typer.Option(help="also serve caikit, TGIS and KServe v2 over gRPC here (0 = any port)"),
    ] = None,
    grpc_port_file: Annotated[
        Path | None, typer.Option(help="write the bound gRPC port here once listening")
    ] = None,
    processes: Annotated[
        int,
        typer.Option(
            min=1,
            help="serve HTTP from this many processes sharing the port (SO_REUSEPORT), each with"
            " its own engine: to outrun a load generator, not to model one device",
        ),
    ] = 1,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            "--fault",
            help="inject a fault, KEY=VALUE (repeatable), e.g. stall_p=0.1, error_status.503=0.05;"
            " keys: docs/failure-behaviour.md",
        ),
    ] = None,
) -> None:
    """Serve an emulated model (OpenAI-compatible HTTP) until SIGTERM or Ctrl-C."""
    from servingperf.emulator.faults import fault_spec_from_pairs
    from servingperf.emulator.server import ServeOptions, serve

    try:
        overrides = {k: float(v) for k, v in parse_pairs(set_, "--set").items()}
    except ValueError as exc:
        raise fail(ConfigError(f"--set: values must be numbers ({exc})")) from None
    try:
        serve(
            ServeOptions(
                profile=profile,
                host=host,
                port=port,
                model_ids=tuple(model_id or ()),
                overrides=overrides,
                seed=seed,
                load_time_s=load_time,
                ground_truth_path=ground_truth,
                port_file=port_file,
                grpc_port=grpc_port,
                grpc_port_file=grpc_port_file,
                faults=fault_spec_from_pairs(fault or ()),
                processes=processes,
            )
        )
    except ServingPerfError as exc:
        raise fail(exc) from None


def _register_continuous() -> None:
    from servingperf.cli import ci, cleanup, continuous

    for command in (
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

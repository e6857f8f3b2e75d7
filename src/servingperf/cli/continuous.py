"""Commands of the continuous part: ingest, history, compare, gate, changepoints."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from servingperf.cli.common import (
    AcknowledgementsOption,
    AllowIncomparableOption,
    AllowInvalidOption,
    ComparabilityOption,
    JunitOption,
    MarkdownOption,
    StoreOption,
    ThresholdOption,
    fail,
    out,
    parse_pairs,
    trust_of,
)
from servingperf.errors import ConfigError, ExitCode, ServingPerfError


def _open(store: str | None):  # type: ignore[no-untyped-def]
    from servingperf.continuous.ingest import store_location
    from servingperf.results.store import open_store

    return open_store(store_location(store))


def ingest(
    run_dirs: Annotated[list[Path], typer.Argument(help="run directories to record")],
    store: StoreOption = None,
) -> None:
    """Record run directories in the results store (idempotent)."""
    from servingperf.continuous.ingest import ingest as do_ingest
    from servingperf.results.rundir import RunDir

    try:
        with _open(store) as opened:
            for run_dir in run_dirs:
                run = do_ingest(opened, RunDir(run_dir))
                out.print(f"recorded {run.run_id} ({run.status}) in {opened.location}")
    except ServingPerfError as exc:
        raise fail(exc) from None


def history(
    store: StoreOption = None,
    scenario: Annotated[str | None, typer.Option(help="only this scenario")] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="KEY=VALUE filter")
    ] = None,
    releases: Annotated[bool, typer.Option("--releases", help="list releases instead")] = False,
    limit: Annotated[int, typer.Option(help="at most this many runs")] = 50,
) -> None:
    """List stored runs (newest first), or the releases they belong to."""
    try:
        with _open(store) as opened:
            filters = parse_pairs(label, "--label")
            if releases:
                table = Table(title=f"releases in {opened.location}")
                for column in ("release", "runs", "first run", "last run"):
                    table.add_column(column)
                for item in opened.releases(scenario=scenario, filters=filters):
                    table.add_row(
                        item.value,
                        str(item.runs),
                        item.first_started_at.isoformat(),
                        item.last_started_at.isoformat(),
                    )
            else:
                table = Table(title=f"runs in {opened.location}")
                for column in ("run", "scenario", "kind", "started (UTC)", "status", "labels"):
                    table.add_column(column, overflow="fold")
                for run in opened.runs(filters, scenario=scenario, limit=limit):
                    table.add_row(
                        run.run_id,
                        run.scenario,
                        run.kind,
                        run.started_at.isoformat(timespec="seconds"),
                        run.status,
                        ", ".join(f"{k}={v}" for k, v in sorted(run.labels.items())),
                    )
    except ServingPerfError as exc:
        raise fail(exc) from None
    out.print(table)


def compare(
    a: Annotated[str, typer.Argument(help="run id or KEY=VALUE (e.g. release=2.5.0)")],
    b: Annotated[str, typer.Argument(help="run id or KEY=VALUE")],
    store: StoreOption = None,
    scenario: Annotated[str | None, typer.Option(help="only runs of this scenario")] = None,
    kpi: Annotated[list[str] | None, typer.Option(help="KPI names (default: main ones)")] = None,
    comparability: ComparabilityOption = None,
    allow_incomparable: AllowIncomparableOption = False,
) -> None:
    """KPI by KPI, B against A (means over each side's runs); no verdicts (see `gate`). The
    fingerprint differences are listed first; exit 5 when one the policy refuses is there."""
    from servingperf.analysis.fingerprint import compare_fingerprints
    from servingperf.continuous.selection import parse_selection, resolve

    names = kpi or [
        "ttft_s.p50",
        "ttft_s.p90",
        "tpot_s.p50",
        "tpot_s.p90",
        "ntpot_s.mean",
        "e2e_s.mean",
        "e2e_s.p90",
        "output_throughput_tps",
        "request_throughput_rps",
        "error_rate",
    ]
    try:
        trust = trust_of(False, comparability, allow_incomparable)
        with _open(store) as opened:
            sides = []
            resolved = []
            for text in (a, b):
                runs = resolve(opened, parse_selection(text), scenario)
                resolved.append([(r.run_id, r.fingerprint) for r in runs])
                rows = opened.kpis([r.run_id for r in runs], names)
                values: dict[tuple[str, str], list[float]] = {}
                units: dict[str, str] = {}
                for row in rows:
                    if not math.isnan(row.value):
                        values.setdefault((row.instance + "/" + row.phase, row.name), []).append(
                            row.value
                        )
                    units[row.name] = row.unit
                sides.append(({k: sum(v) / len(v) for k, v in values.items()}, len(runs), units))
    except ServingPerfError as exc:
        raise fail(exc) from None
    (left, n_a, units), (right, n_b, _) = sides
    comparable = compare_fingerprints(resolved[0], resolved[1], trust.comparability)
    for note in comparable.notes():
        out.print(f"[yellow]{escape(note)}[/yellow]")
    table = Table(title=f"{b} ({n_b} run(s)) against {a} ({n_a} run(s))")
    for column in ("instance/phase", "KPI", "unit", "A", "B", "change"):
        table.add_column(column, justify="left" if column in ("instance/phase", "KPI") else "right")
    for key in sorted(left.keys() | right.keys()):
        va, vb = left.get(key), right.get(key)
        change = f"{vb / va - 1:+.1%}" if va and vb is not None else "–"
        table.add_row(
            key[0],
            key[1],
            units.get(key[1], ""),
            f"{va:.4g}" if va is not None else "–",
            f"{vb:.4g}" if vb is not None else "–",
            change,
        )
    out.print(table)
    if not comparable.comparable:
        out.print(
            "[red]not comparable[/red]: the fingerprints differ in fields the policy refuses"
            " (--comparability FIELD=warn or --allow-incomparable to accept)"
        )
        raise typer.Exit(int(ExitCode.INCOMPARABLE))


def gate(
    reference: Annotated[
        str, typer.Option(help="reference side: KEY=VALUE (release=2.5.0) or run id")
    ],
    candidate: Annotated[
        str | None, typer.Option(help="candidate side (default: the newest other complete run)")
    ] = None,
    store: StoreOption = None,
    scenario: Annotated[str | None, typer.Option(help="only runs of this scenario")] = None,
    threshold: ThresholdOption = None,
    acknowledgements: AcknowledgementsOption = None,
    junit: JunitOption = None,
    markdown: MarkdownOption = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write JSON here")] = None,
    allow_invalid: AllowInvalidOption = False,
    comparability: ComparabilityOption = None,
    allow_incomparable: AllowIncomparableOption = False,
) -> None:
    """Judge a candidate against a reference, KPI by KPI; exit 1 on an unacknowledged regression,
    4 when a run is invalid, 5 when the sides are not comparable (their fingerprints differ)."""
    from servingperf.analysis.gate import GateSpec
    from servingperf.continuous.acknowledgements import read_acknowledgements
    from servingperf.continuous.gating import gate_runs
    from servingperf.continuous.outputs import report_junit, report_markdown, write_json
    from servingperf.continuous.selection import parse_selection

    try:
        spec = GateSpec() if threshold is None else GateSpec(threshold=threshold)
        acks = read_acknowledgements(acknowledgements)
        trust = trust_of(allow_invalid, comparability, allow_incomparable)
        with _open(store) as opened:
            report = gate_runs(
                opened,
                parse_selection(reference),
                parse_selection(candidate) if candidate else None,
                scenario,
                spec,
                acks,
                trust=trust,
            )
    except ServingPerfError as exc:
        raise fail(exc) from None
    except ValueError as exc:  # pydantic validation of --threshold
        raise fail(ConfigError(f"--threshold: {exc}")) from None
    text = report_markdown(report)
    for path, content in (
        (junit, report_junit(report)),
        (markdown, text),
        (json_out, write_json(report)),
    ):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
    from rich.markdown import Markdown

    out.print(Markdown(text))
    if report.exit_code is not ExitCode.OK:
        raise typer.Exit(int(report.exit_code))


def changepoints(
    store: StoreOption = None,
    scenario: Annotated[str | None, typer.Option(help="only runs of this scenario")] = None,
    kpi: Annotated[list[str] | None, typer.Option(help="KPI names")] = None,
    label: Annotated[str, typer.Option(help="the label that orders releases")] = "release",
) -> None:
    """Change points over each KPI's release history (E-divisive with a permutation test)."""
    from servingperf.continuous.history import release_history_changes

    names = kpi or [
        "ttft_s.p50",
        "tpot_s.p50",
        "ntpot_s.mean",
        "e2e_s.mean",
        "output_throughput_tps",
    ]
    try:
        with _open(store) as opened:
            results = release_history_changes(opened, names, label=label, scenario=scenario)
    except ServingPerfError as exc:
        raise fail(exc) from None
    table = Table(title=f"change points over releases ({label})")
    for column in (
        "instance/phase",
        "KPI",
        "releases",
        "change at",
        "before",
        "after",
        "change",
        "p",
    ):
        table.add_column(column)
    for item in results:
        if not item.changes:
            table.add_row(item.key, item.kpi, str(len(item.releases)), "none", "", "", "", "")
        for change in item.changes:
            table.add_row(
                item.key,
                item.kpi,
                str(len(item.releases)),
                str(change.label),
                f"{change.mean_before:.4g}",
                f"{change.mean_after:.4g}",
                f"{change.magnitude:+.1%} ({change.direction})",
                f"{change.p_value:.3f}",
            )
    out.print(table)

"""``servingperf ci``: the whole release gate in one command, for a CI job.

It runs the scenario (as ``servingperf run``), records the run in the store, gates it (the
candidate is this run) against the reference (as ``servingperf gate``), writes the run report with
the verdicts section, refreshes the results site (``index.html`` across runs and releases), writes
the JUnit XML, Markdown and JSON a CI system reads, and exits with the gate's code.

Exit codes: 0 no regression, or no reference yet (below); 1 an unacknowledged regression; 2 bad
input (scenario, flags, store, a reference run whose directory is gone); 3 the target or its
deployment failed; 4 this run or a reference run is invalid (its client was the limit, or its
clock misbehaved: not judged); 5 this run is not comparable with the reference (fingerprints
differ); 130 interrupted (the run is recorded, not gated).

*No reference yet.* When the reference is a label selection (``release=2.5.0``) and the store has
no complete run of the scenario carrying it, other than this run, the run is recorded, the site
refreshed, the outputs say "no reference" (JUnit: one skipped test case) and the exit code is 0:
the first run of a new project, or of the reference release itself, establishes the reference
instead of failing. ``--require-reference`` turns this into exit 2, for a project whose reference
must exist. A run of the reference release itself (``--label release=2.5.0 --reference
release=2.5.0``) is gated against the other runs of that release. A reference given as a run id
must exist.

The JSON output is the *gate document* (:func:`servingperf.continuous.site.gate_document`), also
kept as ``gate.json`` in the run directory and in the site's ``gates/`` folder.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from xml.etree import ElementTree as ET

import typer

from servingperf.cli.common import (
    DEFAULT_RUNS_DIR,
    DEFAULT_SITE_DIR,
    AcknowledgementsOption,
    AllowIncomparableOption,
    AllowInvalidOption,
    ComparabilityOption,
    DurationOption,
    JunitOption,
    LabelOption,
    MarkdownOption,
    RampUpOption,
    RunsDirOption,
    StoreOption,
    ThresholdOption,
    UsersOption,
    console,
    fail,
    out,
    overrides,
    parse_pairs,
    trust_of,
)
from servingperf.errors import ConfigError, ExitCode, ServingPerfError

if TYPE_CHECKING:  # the CLI imports its layers lazily, to start fast
    from servingperf.analysis.gate import Acknowledgement, GateSpec
    from servingperf.continuous.gating import GateReport
    from servingperf.continuous.selection import Selection
    from servingperf.results.store import Store, StoredRun
    from servingperf.scenarios.runner import RunOutcome


def ci(
    scenario: Annotated[Path, typer.Argument(help="scenario YAML file (see examples/)")],
    reference: Annotated[
        str,
        typer.Option(help="reference side: KEY=VALUE[,KEY=VALUE] (release=2.5.0) or a run id"),
    ],
    label: LabelOption = None,
    store: StoreOption = None,
    site: Annotated[
        Path, typer.Option(help="results site folder (index.html) to refresh")
    ] = DEFAULT_SITE_DIR,
    runs_dir: RunsDirOption = DEFAULT_RUNS_DIR,
    junit: JunitOption = None,
    markdown: MarkdownOption = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="write the gate document (JSON) here")
    ] = None,
    acknowledgements: AcknowledgementsOption = None,
    threshold: ThresholdOption = None,
    require_reference: Annotated[
        bool,
        typer.Option(
            "--require-reference", help="exit 2 instead of 0 when the reference has no run yet"
        ),
    ] = False,
    duration: DurationOption = None,
    users: UsersOption = None,
    ramp_up: RampUpOption = None,
    site_png: Annotated[
        bool, typer.Option("--site-png/--no-site-png", help="write the site's charts as PNG")
    ] = True,
    allow_invalid: AllowInvalidOption = False,
    comparability: ComparabilityOption = None,
    allow_incomparable: AllowIncomparableOption = False,
) -> None:
    """Run, record, gate against the reference, report, refresh the site; exit with the gate's
    code (0 ok or no reference yet, 1 regression, 2 bad input, 3 target failure, 4 an invalid
    run, 5 sides not comparable)."""
    from servingperf.cli.running import run_scenario_file
    from servingperf.continuous.acknowledgements import read_acknowledgements
    from servingperf.continuous.selection import parse_selection

    outputs = _Outputs(junit, markdown, json_out)
    try:
        labels = parse_pairs(label, "--label")
        selection = parse_selection(reference)
        spec = _gate_spec(threshold)
        acks = read_acknowledgements(acknowledgements)
        trust = trust_of(allow_invalid, comparability, allow_incomparable)
    except ServingPerfError as exc:
        raise fail(exc) from None
    try:
        outcome = run_scenario_file(
            scenario,
            None,
            runs_dir,
            labels,
            overrides(duration, users, ramp_up),
            report=False,
        )
    except ServingPerfError as exc:
        outputs.write_failure(str(scenario), reference, f"the run failed: {exc}")
        raise fail(exc) from None
    out.print(f"run directory: {outcome.run_dir.path}")
    try:
        code = _record_gate_publish(
            outcome, selection, spec, acks, store, site, outputs, require_reference, site_png, trust
        )
    except ServingPerfError as exc:
        raise fail(exc) from None
    if code is not ExitCode.OK:
        raise typer.Exit(int(code))


def _record_gate_publish(
    outcome: RunOutcome,
    selection: Selection,
    spec: GateSpec,
    acks: tuple[Acknowledgement, ...],
    store: str | None,
    site: Path,
    outputs: _Outputs,
    require_reference: bool,
    site_png: bool,
    trust: Any = None,
) -> ExitCode:
    """Everything after the run; a gate that cannot be computed still leaves the run recorded,
    its report and the site written, and its error in the outputs, then raises it."""
    from servingperf.continuous.ingest import ingest, store_location
    from servingperf.continuous.site import write_gate_document, write_json_file, write_site
    from servingperf.report.build import GATE_FILE, REPORT_FILE
    from servingperf.results.store import open_store
    from servingperf.scenarios.outputs import write_report

    run_dir = outcome.run_dir
    with open_store(store_location(store)) as opened:
        run = ingest(opened, run_dir)
        out.print(f"recorded in the store: {opened.location}")
        if outcome.info.status != "complete":
            write_report(run_dir)
            write_site(opened, site, png=site_png)
            out.print(f"[yellow]the run is {outcome.info.status}: not gated[/yellow]")
            return ExitCode.INTERRUPTED
        failure: ServingPerfError | None = None
        try:
            document, report = gate_candidate(
                opened, selection, run, spec, acks, require_reference, trust
            )
        except ServingPerfError as exc:
            failure = exc
            document, report = _document(None, run, selection, "error", f"no gate: {exc}"), None
        write_json_file(run_dir.path / GATE_FILE, document)
        write_gate_document(site, document)
        outputs.write(document, report)  # before the pages: CI gets its verdict whatever follows
        write_report(run_dir)
        paths = write_site(opened, site, png=site_png)
    _print(document, report)
    out.print(f"report: {run_dir.path / REPORT_FILE}")
    out.print(f"site: {paths.index}")
    if failure is not None:
        raise failure
    code = report.exit_code if report is not None else ExitCode.OK
    return ExitCode(code)


def gate_candidate(
    store: Store,
    selection: Selection,
    run: StoredRun,
    spec: GateSpec,
    acks: tuple[Acknowledgement, ...],
    require_reference: bool,
    trust: Any = None,
) -> tuple[dict[str, Any], GateReport | None]:
    """The gate document of this run against the reference, and the gate report (None if none)."""
    from servingperf.continuous.gating import gate_runs
    from servingperf.continuous.selection import Selection

    if selection.run_id is None:
        others = [
            r
            for r in store.runs(selection.labels, scenario=run.scenario)
            if r.status == "complete" and r.run_id != run.run_id
        ]
        if not others:
            own = all(run.labels.get(k) == v for k, v in selection.labels.items())
            message = (
                f"no reference yet: the store {store.location} has no"
                f"{' other' if own else ''} complete run of scenario {run.scenario!r} with"
                f" {selection.text}, so this run was recorded but not gated"
                + (
                    "; it carries those labels itself and is now the reference"
                    if own
                    else f"; record a run labelled {selection.text} to gate against it"
                )
            )
            if require_reference:
                raise ConfigError(f"{message} (--require-reference)")
            return _document(None, run, selection, "no_reference", message), None
    candidate = Selection(text=run.run_id, run_id=run.run_id)
    report = gate_runs(
        store,
        selection,
        candidate,
        run.scenario,
        spec,
        acks,
        exclude_reference=[run.run_id],
        trust=trust,
    )
    return _document(report, run, selection, "gated", ""), report


def _document(
    report: GateReport | None, run: StoredRun, selection: Selection, status: str, message: str
) -> dict[str, Any]:
    from servingperf.continuous.site import gate_document

    return gate_document(
        report,
        scenario=run.scenario,
        candidate_run=run.run_id,
        reference=selection,
        gated_at=datetime.now(UTC),
        status=status,
        message=message,
    )


def _gate_spec(threshold: float | None) -> GateSpec:
    from pydantic import ValidationError

    from servingperf.analysis.gate import GateSpec

    try:
        return GateSpec() if threshold is None else GateSpec(threshold=threshold)
    except ValidationError as exc:
        raise ConfigError(f"--threshold {threshold}: {exc.errors()[0]['msg']}") from exc


def _print(document: dict[str, Any], report: GateReport | None) -> None:
    from rich.markdown import Markdown

    from servingperf.continuous.outputs import report_markdown

    text = report_markdown(report) if report is not None else _plain_markdown(document)
    out.print(Markdown(text))


def _plain_markdown(document: dict[str, Any]) -> str:
    """The Markdown summary of a document without verdicts (no reference, or no gate)."""
    head = "⚠️ no reference" if document["status"] == "no_reference" else "❌ not gated"
    return (
        f"## servingperf gate: {head}\n\n"
        f"Scenario **{document.get('scenario', '?')}**, candidate run"
        f" `{document.get('candidate_run') or '?'}`, reference **{document['reference']}**.\n\n"
        f"{document['message']}\n"
    )


def _plain_junit(document: dict[str, Any]) -> str:
    """JUnit of a document without verdicts: one test case, skipped (no reference) or errored."""
    failed = document["status"] != "no_reference"
    suite = ET.Element(
        "testsuite",
        name=f"servingperf gate {document.get('candidate_run') or '?'} vs {document['reference']}",
        tests="1",
        failures="0",
        errors="1" if failed else "0",
        skipped="0" if failed else "1",
    )
    case = ET.SubElement(suite, "testcase", classname="servingperf", name="gate")
    ET.SubElement(case, "error" if failed else "skipped", message=str(document["message"]))
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


class _Outputs:
    """The files a CI system reads: JUnit XML, Markdown, and the gate document as JSON."""

    def __init__(self, junit: Path | None, markdown: Path | None, json_out: Path | None) -> None:
        self._paths = (junit, markdown, json_out)

    def write(self, document: dict[str, Any], report: GateReport | None) -> None:
        from servingperf.continuous.outputs import report_junit, report_markdown

        junit, markdown, json_out = self._paths
        if report is not None:
            texts = (report_junit(report), report_markdown(report))
        else:
            texts = (_plain_junit(document), _plain_markdown(document))
        self._write(junit, texts[0])
        self._write(markdown, texts[1])
        self._write(json_out, json.dumps(document, indent=2) + "\n")

    def write_failure(self, scenario: str, reference: str, message: str) -> None:
        """Outputs of a run that failed before it could be recorded (best effort)."""
        document: dict[str, Any] = {
            "status": "error",
            "scenario": scenario,
            "candidate_run": None,
            "reference": reference,
            "message": message,
            "verdicts": [],
        }
        try:
            self.write(document, None)
        except ServingPerfError as exc:
            console.print(f"[red]could not write the CI outputs:[/red] {exc}")

    @staticmethod
    def _write(path: Path | None, text: str) -> None:
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write {path}: {exc}") from exc


def site(
    store: StoreOption = None,
    site_dir: Annotated[
        Path, typer.Option("--site", help="results site folder (index.html) to write")
    ] = DEFAULT_SITE_DIR,
    reference: Annotated[
        list[str] | None,
        typer.Option(
            help="SCENARIO=RELEASE: the reference release to highlight (default: the one of the"
            " scenario's latest gate), repeatable"
        ),
    ] = None,
    png: Annotated[bool, typer.Option("--png/--no-png", help="write the charts as PNG")] = True,
) -> None:
    """Redraw the results site (index.html across runs and releases) from the store alone."""
    from servingperf.continuous.ingest import store_location
    from servingperf.continuous.site import write_site
    from servingperf.results.store import open_store

    try:
        references = parse_pairs(reference, "--reference")
        with open_store(store_location(store)) as opened:
            paths = write_site(opened, site_dir, references=references, png=png)
    except ServingPerfError as exc:
        raise fail(exc) from None
    out.print(f"site: {paths.index} ({len(paths.pngs)} PNG charts)")

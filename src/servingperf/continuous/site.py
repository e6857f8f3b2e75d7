"""The results site: a folder with ``index.html`` across runs and releases, its charts as PNG, and
the gate documents ``servingperf ci`` kept, refreshed from the store after every gated run.

Layout::

    <site>/index.html            the index page (servingperf.report.index), one offline file
    <site>/charts/<name>.png     every chart of the index page
    <site>/gates/<when>-<run>.json  one gate document per gate run by `servingperf ci`

Terms. A *gate document* is the JSON record of one gate (:func:`gate_document`): its ``status``
(``gated``; ``no_reference`` when the reference release had no run yet; ``error`` when the gate
could not be computed), the scenario, the candidate run, the reference selection and, when gated,
the verdicts with their evidence (:func:`servingperf.continuous.outputs.report_json`). The same
document goes into the run directory as ``gate.json``, where the run report shows it. The index
reads the site's gate documents, newest first, so no verdict is recomputed to draw the page.

The *reference release* of a scenario is the one given to :func:`write_site`, else the release
its latest gate was run against. The charts across releases draw the last ``CHART_RELEASES``
releases and the reference; their per-request values are read from the run directories, which
the store points to (a run whose directory is gone is left out, and the page says so).
Run reports are linked by a path relative to the site, so a site uploaded together with the run
directories (one CI artifact) keeps its links.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from servingperf.analysis.changepoints import Direction
from servingperf.analysis.loadtimes import deployment_points
from servingperf.continuous.gating import GateReport
from servingperf.continuous.history import release_history_changes
from servingperf.continuous.outputs import report_json
from servingperf.continuous.samples import run_samples
from servingperf.continuous.selection import Selection
from servingperf.errors import RunDirError
from servingperf.report.build import CHARTS_DIR, REPORT_FILE
from servingperf.report.html import vega_javascript
from servingperf.report.index import (
    HISTORY_KPIS,
    INDEX_FILE,
    ChangeMark,
    IndexPage,
    ReleaseRow,
    RunRow,
    ScenarioSection,
    render_index,
)
from servingperf.report.png import DEFAULT_SCALE, write_pngs
from servingperf.report.release_charts import (
    FloatArray,
    ReleaseHistory,
    ReleaseRunFigure,
    ReleaseSamples,
    chart_releases,
    release_chart_specs,
)
from servingperf.results.rundir import RunDir
from servingperf.results.store import Store, StoredRun

GATES_DIR = "gates"
GATE_FORMAT_VERSION = 1
MAX_GATES = 20
MAX_RUNS = 200
CHART_RELEASES = 5
TABLE_RELEASES = 10
MAX_RUNS_PER_RELEASE = 50
LOAD_TIME_KINDS = frozenset({"many-model"})  # run kinds whose deployments are what they measure
GATE_STATUSES = ("gated", "no_reference", "error")


@dataclass(frozen=True, slots=True)
class SitePaths:
    """What :func:`write_site` wrote."""

    index: Path
    pngs: dict[str, Path]
    html_bytes: int


def gate_document(
    report: GateReport | None,
    *,
    scenario: str,
    candidate_run: str,
    reference: Selection,
    gated_at: datetime,
    status: str = "gated",
    message: str = "",
) -> dict[str, Any]:
    """The JSON record of one gate; ``report`` is None unless ``status`` is ``gated``."""
    if status not in GATE_STATUSES:
        raise ValueError(f"gate status {status!r}: use one of {', '.join(GATE_STATUSES)}")
    if (report is None) == (status == "gated"):
        raise ValueError("a gated document needs the gate report, and only it")
    document: dict[str, Any] = {
        "format_version": GATE_FORMAT_VERSION,
        "status": status,
        "scenario": scenario,
        "gated_at": gated_at.astimezone(UTC).isoformat(timespec="seconds"),
        "candidate_run": candidate_run,
        "reference": reference.text,
        "reference_labels": dict(reference.labels),
        "message": message,
    }
    if report is not None:
        document |= report_json(report)
    else:
        document |= {"exit_code": 0 if status == "no_reference" else None, "verdicts": []}
    return document


def write_json_file(path: Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` atomically (a reader never sees half a file); RunDirError on failure."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except (OSError, ValueError) as exc:
        raise RunDirError(f"cannot write {path}: {exc}") from exc


def write_gate_document(site_dir: Path, document: Mapping[str, Any]) -> Path:
    """Keep ``document`` in the site's ``gates/`` folder; the file name sorts by time."""
    stamp = re.sub(r"[^0-9]", "", str(document.get("gated_at", "")))[:14] or "0"
    run = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(document.get("candidate_run", "run")))[:80]
    path = site_dir / GATES_DIR / f"{stamp}-{run}.json"
    write_json_file(path, document)
    return path


def read_gate_documents(
    site_dir: Path, limit: int = MAX_GATES
) -> tuple[list[dict[str, Any]], list[str]]:
    """The site's gate documents, newest first (at most ``limit``), and notes on unreadable ones."""
    folder = site_dir / GATES_DIR
    if not folder.is_dir():
        return [], []
    documents: list[dict[str, Any]] = []
    notes: list[str] = []
    for path in sorted(folder.glob("*.json"), reverse=True):
        if len(documents) >= limit:
            break
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            notes.append(f"gate file {path.name} left out: unreadable ({exc})")
            continue
        if not isinstance(data, dict) or data.get("format_version") != GATE_FORMAT_VERSION:
            notes.append(f"gate file {path.name} left out: not a gate document of this version")
            continue
        documents.append(data)
    documents.sort(key=lambda d: str(d.get("gated_at", "")), reverse=True)
    return documents, notes


def scenario_slug(scenario: str) -> str:
    """An id- and file-name-safe name for a scenario, unique per scenario name."""
    readable = re.sub(r"[^a-z0-9]+", "-", scenario.lower()).strip("-")[:40] or "scenario"
    return f"{readable}-{hashlib.sha1(scenario.encode()).hexdigest()[:6]}"


def report_href(run: StoredRun, site_dir: Path) -> tuple[str | None, str]:
    """The run report's URL relative to the site (percent-encoded), or None and why not."""
    run_dir = Path(run.run_dir)
    report = run_dir / REPORT_FILE
    if not run_dir.is_dir():
        return None, "run directory gone"
    if not report.is_file():
        return None, "no report"
    try:
        relative = Path(os.path.relpath(report.resolve(), site_dir.resolve())).as_posix()
    except ValueError:  # another drive (Windows): no relative path exists
        return report.resolve().as_uri(), ""
    return quote(relative), ""


def _reference_of(
    scenario: str, gates: Sequence[Mapping[str, Any]], label: str, given: Mapping[str, str]
) -> str | None:
    if scenario in given:
        return given[scenario]
    for gate in gates:
        if gate.get("scenario") == scenario:
            labels = gate.get("reference_labels")
            if isinstance(labels, Mapping) and isinstance(labels.get(label), str):
                return str(labels[label])
            return None
    return None


def summary_key(instance: str, phase: str) -> str:
    """A KPI row's instance and phase as ``summary.json`` keys them (the gate's convention)."""
    return instance if phase in ("load", "") else f"{instance}/{phase}"


def _release_runs(store: Store, scenario: str, label: str, release: str) -> list[StoredRun]:
    runs = store.runs({label: release}, scenario=scenario)
    return [r for r in runs if r.status == "complete"]


def _chart_history(
    store: Store,
    scenario: str,
    label: str,
    releases: tuple[str, ...],
    reference: str | None,
    notes: list[str],
) -> ReleaseHistory:
    """Per-request values, per-run figures and load times of the charted releases."""
    samples: list[ReleaseSamples] = []
    figures: list[ReleaseRunFigure] = []
    load_times: dict[str, FloatArray] = {}
    for release in releases:
        runs = _release_runs(store, scenario, label, release)
        if len(runs) > MAX_RUNS_PER_RELEASE:
            notes.append(
                f"release {release}: the newest {MAX_RUNS_PER_RELEASE} of its {len(runs)} runs"
                " are drawn"
            )
            runs = runs[:MAX_RUNS_PER_RELEASE]
        pooled: dict[str, dict[str, list[FloatArray]]] = defaultdict(lambda: defaultdict(list))
        counted: dict[str, int] = defaultdict(int)
        loads: list[FloatArray] = []
        for run in runs:
            try:
                per_key = run_samples(run)
                deployments = (
                    RunDir(Path(run.run_dir)).read_deployments()
                    if run.kind in LOAD_TIME_KINDS
                    else None
                )
            except RunDirError as exc:
                notes.append(f"release {release}, run {run.run_id} left out of the charts: {exc}")
                continue
            for key, values in per_key.items():
                pooled[key]["tpot_s"].append(values["tpot_s"])
                pooled[key]["ntpot_s"].append(values["ntpot_s"])
                counted[key] += 1
            if deployments is not None and deployments.num_rows:
                points = deployment_points(deployments)
                loads.append(points.load_time_s[points.ready_mask])
        for key in sorted(pooled):
            samples.append(
                ReleaseSamples(
                    release,
                    key,
                    np.concatenate(pooled[key]["tpot_s"]),
                    np.concatenate(pooled[key]["ntpot_s"]),
                    counted[key],
                )
            )
        if loads:
            load_times[release] = np.concatenate(loads)
        by_run: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
        for row in store.kpis([r.run_id for r in runs], ["output_throughput_tps", "e2e_s.mean"]):
            by_run[(row.run_id, summary_key(row.instance, row.phase))][row.name] = row.value
        for (run_id, key), kpis in by_run.items():
            figures.append(
                ReleaseRunFigure(
                    release,
                    key,
                    run_id,
                    _finite(kpis.get("output_throughput_tps")),
                    _finite(kpis.get("e2e_s.mean")),
                )
            )
    return ReleaseHistory(scenario, releases, reference, tuple(samples), tuple(figures), load_times)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _scenario_section(
    store: Store,
    site_dir: Path,
    scenario: str,
    label: str,
    reference: str | None,
) -> tuple[ScenarioSection, dict[str, dict[str, Any]]]:
    slug = scenario_slug(scenario)
    notes: list[str] = []
    names = [r.value for r in store.releases(label, scenario=scenario)]
    histories = release_history_changes(
        store, [kpi for kpi, _, _ in HISTORY_KPIS], label=label, scenario=scenario
    )
    values: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    changes: dict[str, dict[tuple[str, str], ChangeMark]] = defaultdict(dict)
    for kpi_history in histories:
        key, kpi = kpi_history.key, kpi_history.kpi
        for release, value in zip(kpi_history.releases, kpi_history.values, strict=True):
            values[release][key][kpi] = value
        for change in kpi_history.changes:
            if change.label is not None:
                changes[change.label][(key, kpi)] = ChangeMark(
                    change.magnitude, change.direction is Direction.BAD, change.p_value
                )
    first = {r.value: r.first_started_at for r in store.releases(label, scenario=scenario)}
    shown = list(reversed(names[-TABLE_RELEASES:]))
    if reference is not None and reference in names and reference not in shown:
        shown.append(reference)
    rows = []
    models: dict[str, str] = {}
    for release in shown:
        runs = _release_runs(store, scenario, label, release)
        for row in store.kpis([run.run_id for run in runs], ["e2e_s.mean"]):
            models.setdefault(summary_key(row.instance, row.phase), row.model)
        rows.append(
            ReleaseRow(
                release=release,
                first_started_at=first[release],
                runs=tuple((run.run_id, report_href(run, site_dir)[0]) for run in runs),
                values=values.get(release, {}),
                changes=changes.get(release, {}),
            )
        )
    charted = chart_releases(names, reference, CHART_RELEASES)
    specs: dict[str, dict[str, Any]] = {}
    instances = sorted({key for per_release in values.values() for key in per_release})
    if charted:
        history = _chart_history(store, scenario, label, charted, reference, notes)
        instances = sorted(set(instances) | set(history.instances))
        specs = {f"{slug}--{name}": spec for name, spec in release_chart_specs(history).items()}
    if reference is not None and reference not in names:
        notes.append(f"the reference release {reference} has no run of this scenario yet")
    section = ScenarioSection(
        scenario=scenario,
        slug=slug,
        reference=reference,
        releases=tuple(rows),
        older_releases=max(0, len(names) - len(shown)),
        instances=tuple(instances),
        chart_names=tuple(specs),
        notes=tuple(notes),
        models=models,
    )
    return section, specs


def write_site(
    store: Store,
    site_dir: Path,
    *,
    references: Mapping[str, str] | None = None,
    label: str = "release",
    png: bool = True,
    png_scale: float = DEFAULT_SCALE,
    now: datetime | None = None,
) -> SitePaths:
    """Write (or refresh) the site's ``index.html`` and ``charts/*.png`` from the store.

    ``references``: scenario -> reference release, overriding the one of its latest gate.
    Raises ``RunDirError`` when the site cannot be written, ``StoreError`` when the store cannot
    be read; a run directory that is gone only leaves that run out (noted on the page).
    """
    try:
        site_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"cannot create the site folder {site_dir}: {exc}") from exc
    gates, gate_notes = read_gate_documents(site_dir)
    all_runs = store.runs()
    shown = all_runs[:MAX_RUNS]
    models: dict[str, set[str]] = defaultdict(set)
    for row in store.kpis([r.run_id for r in shown], ["e2e_s.mean"]):
        if row.model:
            models[row.run_id].add(row.model)
    gate_of: dict[str, dict[str, Any]] = {}
    for gate in reversed(gates):  # newest last, so it wins
        gate_of[str(gate.get("candidate_run"))] = gate
    links: dict[str, str] = {}
    rows = []
    for run in shown:
        href, why = report_href(run, site_dir)
        if href:
            links[run.run_id] = href
        rows.append(
            RunRow(
                run_id=run.run_id,
                scenario=run.scenario,
                kind=run.kind,
                started_at=run.started_at,
                status=run.status,
                labels=dict(run.labels),
                models=tuple(sorted(models.get(run.run_id, ()))),
                report_href=href,
                note=why,
                gate=gate_of.get(run.run_id),
            )
        )
    for gate in gates:  # gated runs older than the table still get their links
        for run_id in [gate.get("candidate_run"), *(gate.get("reference_runs") or [])]:
            if isinstance(run_id, str) and run_id not in links:
                stored = store.get_run(run_id)
                href = report_href(stored, site_dir)[0] if stored is not None else None
                if href:
                    links[run_id] = href
    sections = []
    specs: dict[str, dict[str, Any]] = {}
    for scenario in dict.fromkeys(run.scenario for run in all_runs):
        reference = _reference_of(scenario, gates, label, references or {})
        section, section_specs = _scenario_section(store, site_dir, scenario, label, reference)
        sections.append(section)
        specs |= section_specs
    page = IndexPage(
        generated_at=now or datetime.now(UTC),
        store=store.location,
        gates=tuple(gates),
        runs=tuple(rows),
        total_runs=len(all_runs),
        scenarios=tuple(sections),
        links=links,
        notes=tuple(gate_notes),
    )
    text = render_index(page, specs, vega_js=vega_javascript())
    index = site_dir / INDEX_FILE
    data = text.encode("utf-8")
    try:
        tmp = index.with_name(index.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, index)
    except OSError as exc:
        raise RunDirError(f"cannot write the index page {index}: {exc}") from exc
    pngs: dict[str, Path] = {}
    if png:
        charts = site_dir / CHARTS_DIR
        written = write_pngs(specs, charts, png_scale)
        pngs = {name: chart.path for name, chart in written.items()}
        for stale in charts.glob("*.png"):
            if stale not in pngs.values():
                stale.unlink(missing_ok=True)
    return SitePaths(index=index, pngs=pngs, html_bytes=len(data))

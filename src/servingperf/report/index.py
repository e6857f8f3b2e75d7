"""The index page across runs and releases: one self-contained, offline HTML file for a results site.

Terms. The page holds, in this order: the *latest gate* in full (its verdicts with evidence,
:mod:`servingperf.report.verdicts`) and a table of the *earlier gates*; the table of *runs*
(newest first, each linked to its ``report.html`` by a relative path); then one *scenario
section* per scenario: its *release history* (per instance, the mean of each KPI over a release's
complete runs, with the change points found over the whole history marked) and its *charts across
releases* (:mod:`servingperf.report.release_charts`). A *change mark* is a change point of a KPI's
release history at a release: the relative change of the segment means, whether it is good or bad
for that KPI, and the permutation test's p-value.

Like the run page (:mod:`servingperf.report.html`, whose styles, renderer and escaping this page
reuses), the Vega bundle is inlined once, chart data travels as escaped JSON, every user string
(scenario, model, label, release, run id) goes through :func:`html.escape`, and nothing is fetched.
:func:`render_index` is pure; :mod:`servingperf.continuous.site` gathers its data and writes it.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from servingperf.model.metrics import METRICS, kpi_name
from servingperf.report.html import (
    CHART_DATA_ID,
    CSS,
    RENDERER_JS,
    fmt_number,
    script_json,
)
from servingperf.report.verdicts import (
    VERDICTS_CSS,
    counts_text,
    gate_state,
    verdicts_section,
    when_text,
)

INDEX_FILE = "index.html"
# (KPI as stored, metric, statistic shown): the figures the seed compares from release to release,
# each headline figure's first headline statistic.
HISTORY_KPIS = tuple(
    (kpi_name(m, m.headline[0]), m.name, "" if m.headline[0] == "value" else m.headline[0])
    for m in METRICS.values()
    if m.headline and m.stored
)

INDEX_CSS = """
.gate-row td { vertical-align:top; }
tr.reference td { background:#fdf6df; }
.ref-badge { display:inline-block; padding:0 6px; border-radius:8px; font-size:11px;
  background:#f2c14e; color:#4a3600; margin-left:6px; }
.change { font-size:11px; margin-left:4px; white-space:nowrap; }
.change.bad { color:#a4262c; } .change.good { color:#17612a; }
td.run { white-space:nowrap; }
td.runs { text-align:left; white-space:normal; max-width:200px; }
table.history th { white-space:normal; vertical-align:bottom; max-width:130px; }
table.history td.text { max-width:280px; }
section.scenario { border-top:2px solid var(--line); margin-top:28px; }
ul.notes { color:var(--muted); }
"""


@dataclass(frozen=True, slots=True)
class RunRow:
    """One run of the runs table; ``report_href`` is relative to the index page (None: none)."""

    run_id: str
    scenario: str
    kind: str
    started_at: datetime
    status: str
    labels: Mapping[str, str]
    models: tuple[str, ...]
    report_href: str | None
    note: str = ""
    gate: Mapping[str, Any] | None = None  # the gate document where this run was the candidate


@dataclass(frozen=True, slots=True)
class ChangeMark:
    """A change point of one KPI's release history, at the release whose row shows it."""

    magnitude: float  # relative change of the segment means, after / before - 1
    bad: bool
    p_value: float


@dataclass(frozen=True, slots=True)
class ReleaseRow:
    """One release of a scenario's history table."""

    release: str
    first_started_at: datetime
    runs: tuple[tuple[str, str | None], ...]  # (run id, report href), newest first
    values: Mapping[str, Mapping[str, float]]  # instance key -> KPI -> mean over the runs
    changes: Mapping[tuple[str, str], ChangeMark] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScenarioSection:
    """A scenario's release history and its charts across releases."""

    scenario: str
    slug: str  # safe for ids and file names
    reference: str | None
    releases: tuple[ReleaseRow, ...]  # newest first
    older_releases: int  # releases of the history not shown in the table
    instances: tuple[str, ...]
    chart_names: tuple[str, ...]
    notes: tuple[str, ...] = ()
    models: Mapping[str, str] = field(default_factory=dict)  # instance key -> model


@dataclass(frozen=True, slots=True)
class IndexPage:
    """Everything the index page shows."""

    generated_at: datetime
    store: str
    gates: tuple[Mapping[str, Any], ...]  # newest first
    runs: tuple[RunRow, ...]  # newest first
    total_runs: int
    scenarios: tuple[ScenarioSection, ...]
    links: Mapping[str, str] = field(default_factory=dict)  # run id -> report href
    notes: tuple[str, ...] = ()  # about the site itself (e.g. an unreadable gate file)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _when(moment: datetime) -> str:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return _e(aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"))


def _labels(labels: Mapping[str, str]) -> str:
    return "".join(f'<span class="label">{_e(k)}={_e(v)}</span>' for k, v in sorted(labels.items()))


def _run_link(run_id: str, href: str | None) -> str:
    text = f"<code>{_e(run_id)}</code>"
    return f'<a href="{_e(href)}">{text}</a>' if href else text


def _gate_badge(gate: Mapping[str, Any] | None) -> str:
    if gate is None:
        return '<span class="muted">—</span>'
    css, headline = gate_state(gate)
    return f'<span class="gate {css}" style="font-size:12px;padding:1px 8px">{_e(headline)}</span>'


def _header(page: IndexPage) -> str:
    nav = [
        '<a href="#latest-gate">Latest gate</a>',
        '<a href="#runs">Runs</a>',
        *(
            f'<a href="#scenario-{section.slug}">Releases of {_e(section.scenario)}</a>'
            for section in page.scenarios
        ),
    ]
    return (
        "<header><h1>servingperf results</h1>"
        f'<p class="meta">{page.total_runs:,} runs · {len(page.scenarios)} scenario(s) · '
        f"store <code>{_e(page.store)}</code> · generated {_when(page.generated_at)}</p>"
        f"<nav>{''.join(nav)}</nav></header>"
    )


def _gates(page: IndexPage) -> str:
    if not page.gates:
        return (
            '<section id="latest-gate"><h2>Latest gate</h2><p class="muted">No gate yet: '
            "<code>servingperf ci</code> records one here each time it gates a run.</p></section>"
        )
    latest = verdicts_section(
        page.gates[0], section_id="latest-gate", title="Latest gate", links=page.links
    )
    if len(page.gates) == 1:
        return latest
    rows = []
    for gate in page.gates[1:]:
        candidate = str(gate.get("candidate_run") or "")
        verdicts = gate.get("verdicts")
        counts = (
            counts_text(verdicts)
            if isinstance(verdicts, Sequence) and not isinstance(verdicts, str)
            else "—"
        )
        rows.append(
            '<tr class="gate-row">'
            f"<td>{when_text(gate.get('gated_at') or '—')}</td>"
            f'<td class="text">{_e(gate.get("scenario") or "—")}</td>'
            f"<td>{_run_link(candidate, page.links.get(candidate)) if candidate else '—'}</td>"
            f'<td class="text">{_e(gate.get("reference") or "—")}</td>'
            f"<td>{_gate_badge(gate)}</td>"
            f'<td class="text">{counts}</td></tr>'
        )
    return (
        f'{latest}<section id="earlier-gates"><h2>Earlier gates</h2>'
        '<table class="gates"><thead><tr><th>Gated at</th><th class="text">Scenario</th>'
        '<th>Candidate run</th><th class="text">Reference</th>'
        f'<th>Outcome</th><th class="text">KPIs</th></tr></thead><tbody>{"".join(rows)}'
        "</tbody></table></section>"
    )


def _runs(page: IndexPage) -> str:
    rows = []
    for run in page.runs:
        link = (
            _run_link(run.run_id, run.report_href)
            if run.report_href
            else f'<code>{_e(run.run_id)}</code> <span class="muted">({_e(run.note or "no report")})</span>'
        )
        badge = "badge ok" if run.status == "complete" else "badge"
        rows.append(
            f'<tr data-run="{_e(run.run_id)}"><td>{_when(run.started_at)}</td>'
            f'<td class="text">{_e(run.scenario)}</td><td class="text">{_e(run.kind)}</td>'
            f'<td class="text">{", ".join(_e(m) for m in run.models) or "—"}</td>'
            f'<td class="text">{_labels(run.labels)}</td>'
            f'<td><span class="{badge}">{_e(run.status)}</span></td>'
            f"<td>{_gate_badge(run.gate)}</td>"
            f'<td class="text run">{link}</td></tr>'
        )
    shown = len(page.runs)
    more = (
        f'<p class="meta">The newest {shown:,} of {page.total_runs:,} runs; '
        "<code>servingperf history</code> lists them all.</p>"
        if page.total_runs > shown
        else ""
    )
    body = (
        '<table class="runs"><thead><tr><th>Started</th><th class="text">Scenario</th>'
        '<th class="text">Kind</th><th class="text">Models</th><th class="text">Labels</th>'
        '<th>Status</th><th>Gate</th><th class="text">Run (its report)</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        if rows
        else '<p class="muted">No run in the store yet.</p>'
    )
    return f'<section id="runs"><h2>Runs</h2>{more}{body}</section>'


def _kpi_head(metric: str, statistic: str) -> str:
    definition = METRICS[metric]
    stat = f" {_e(statistic)}" if statistic else ""
    return (
        f'<th><abbr title="{_e(definition.definition)}">{_e(definition.title)}</abbr>{stat}'
        f'<br><span class="muted">{_e(definition.unit)}</span></th>'
    )


def _change(mark: ChangeMark | None) -> str:
    if mark is None:
        return ""
    css = "bad" if mark.bad else "good"
    arrow = "▲" if mark.magnitude > 0 else "▼"
    size = f"{mark.magnitude:+.0%}" if math.isfinite(mark.magnitude) else "from 0"
    return (
        f'<span class="change {css}" title="change point: segment means {_e(size)},'
        f' p={mark.p_value:.3g}, {css} for this KPI">{arrow}{_e(size)}</span>'
    )


def _run_links(runs: Sequence[tuple[str, str | None]]) -> str:
    """The release's runs as short numbered links (newest first); the run id is the tooltip."""
    links = []
    for number, (run_id, href) in enumerate(runs, start=1):
        if href:
            links.append(f'<a href="{_e(href)}" title="{_e(run_id)}">{number}</a>')
        else:
            links.append(f'<span class="muted" title="{_e(run_id)}: no report">{number}</span>')
    return " ".join(links)


def _history_table(section: ScenarioSection, instance: str) -> str:
    head = "".join(_kpi_head(metric, stat) for _, metric, stat in HISTORY_KPIS)
    rows = []
    for release in section.releases:
        values = release.values.get(instance, {})
        cells = "".join(
            f"<td>{fmt_number(values.get(kpi))}{_change(release.changes.get((instance, kpi)))}</td>"
            for kpi, _, _ in HISTORY_KPIS
        )
        is_ref = release.release == section.reference
        badge = '<span class="ref-badge">reference</span>' if is_ref else ""
        rows.append(
            f'<tr class="{"reference" if is_ref else ""}" data-release="{_e(release.release)}">'
            f'<td class="text" title="first run {_when(release.first_started_at)}">'
            f"<b>{_e(release.release)}</b>{badge}</td>"
            f'<td class="runs">{_run_links(release.runs)}</td>{cells}</tr>'
        )
    model = section.models.get(instance)
    title = f"{_e(instance)} <small>model {_e(model)}</small>" if model else _e(instance)
    return (
        f"<h3>{title}</h3>"
        '<table class="history"><thead><tr><th class="text">Release</th>'
        f'<th class="text">Run reports</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _notes(notes: Sequence[str]) -> str:
    if not notes:
        return ""
    return '<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>"


def _scenario(section: ScenarioSection) -> str:
    reference = (
        f"reference release <b>{_e(section.reference)}</b>"
        if section.reference
        else "no reference release yet"
    )
    older = (
        f" {section.older_releases:,} older release(s) not shown (their values count for the"
        " change points)."
        if section.older_releases
        else ""
    )
    tables = (
        "".join(_history_table(section, instance) for instance in section.instances)
        if section.releases
        else '<p class="muted">No run of this scenario carries a release label.</p>'
    )
    figures = "".join(
        f'<figure class="chart" data-chart="{_e(name)}"><div id="chart-{_e(name)}"></div>'
        "<noscript>The interactive charts need JavaScript; the PNG files beside this page show "
        "them too.</noscript></figure>"
        for name in section.chart_names
    )
    notes = _notes(section.notes)
    return (
        f'<section class="scenario" id="scenario-{section.slug}">'
        f"<h2>Releases of {_e(section.scenario)}</h2>"
        f'<p class="meta">{reference}. Each figure is the mean over the release\'s complete runs;'
        " ▲/▼ marks a change point of the release history (E-divisive with a permutation test),"
        f" red when it is bad for that KPI.{older}</p>{tables}"
        f'<h3>Against the last releases</h3><div class="charts">{figures}</div>{notes}</section>'
    )


def render_index(page: IndexPage, specs: Mapping[str, Any], *, vega_js: str) -> str:
    """The whole index page as one string; pure. ``specs``: every chart of every scenario section,
    by the names the sections list; ``vega_js``: :func:`servingperf.report.html.vega_javascript`."""
    renderer = RENDERER_JS % {"data_id": CHART_DATA_ID}
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>servingperf results</title>"
        f"<style>{CSS}{VERDICTS_CSS}{INDEX_CSS}</style></head><body>"
        f"{_header(page)}<main>{_gates(page)}{_notes(page.notes)}{_runs(page)}"
        f"{''.join(_scenario(section) for section in page.scenarios)}</main>"
        f'<script type="application/json" id="{CHART_DATA_ID}">{script_json(dict(specs))}</script>'
        f'<script type="module">\n{vega_js}\n{renderer}</script>'
        "</body></html>\n"
    )

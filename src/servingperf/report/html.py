"""The run report page: one self-contained, offline HTML file per run.

Terms. The *page* holds, in this order: a header (scenario, run id, status, time span, labels), the
overview (one line per instance), a sweep's verdict and stages (sweep runs only), the charts, the
key figures of every instance (KPI tables with units, each figure's definition on hover and in the
glossary), the failures, the glossary, the run configuration and the environment.
When the run was gated (``servingperf ci``), a *verdicts* section comes first
(:mod:`servingperf.report.verdicts`).
The *chart data* is one JSON object {chart name: Vega-Lite spec} inside a
``<script type="application/json">`` block; the *renderer* is one ``<script type="module">`` that
holds the Vega / Vega-Lite / vega-embed bundle (from vl-convert, inlined once per page) followed by
a few lines that draw every chart and then set ``document.body.dataset.chartsRendered`` (and
``chartsFailed``) so that a headless browser can tell when the page is done.

Safety. Every string that comes from the user or the target (model and instance names, labels,
configuration, prompts, error messages) reaches the page through :func:`html.escape` or through
JSON whose ``<``, ``>`` and ``&`` are written as ``\\u003c``-style escapes, so no such string can
close a tag or open a script. Nothing on the page refers to another file or to the network.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import vl_convert

from servingperf.analysis.summary import summary_value
from servingperf.model.metrics import METRICS, distributions, headline, rates
from servingperf.report.breakdowns import breakdown_tables
from servingperf.report.errordigest import FailureSample
from servingperf.report.verdicts import VERDICTS_CSS, verdicts_section

STATS_ORDER = tuple(m.name for m in distributions())
STAT_COLUMNS = ("n", "mean", "p50", "p90", "p99", "max")
CHART_DATA_ID = "servingperf-charts"
_OK_STATUSES = frozenset({"ok", "complete", "completed", "passed", "success"})

CSS = """
:root { --fg:#1d2430; --muted:#5b6575; --line:#d9dee7; --bg:#f6f7f9; --accent:#2f5d9b; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--fg); }
header { background:var(--bg); border-bottom:1px solid var(--line); padding:16px 28px; }
main { padding:8px 28px 40px; max-width:1400px; }
h1 { font-size:22px; margin:0 0 4px; } h2 { font-size:18px; margin:28px 0 8px; }
h3 { font-size:15px; margin:18px 0 6px; } h3 small { color:var(--muted); font-weight:normal; }
nav a { margin-right:14px; color:var(--accent); text-decoration:none; }
.meta { color:var(--muted); margin:2px 0; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px;
  background:#fdecc8; color:#7a4b00; } .badge.ok { background:#d8f0dc; color:#17612a; }
.label { display:inline-block; background:#e7ecf4; border-radius:4px; padding:0 6px; margin:2px 4px 0 0;
  font-family:ui-monospace,Menlo,Consolas,monospace; font-size:12px; }
table { border-collapse:collapse; margin:6px 0 10px; }
th, td { border-bottom:1px solid var(--line); padding:3px 10px; text-align:right; white-space:nowrap; }
th:first-child, td:first-child { text-align:left; } th { background:var(--bg); font-weight:600; }
table.overview th { white-space:normal; vertical-align:bottom; max-width:120px; }
th.text { text-align:left; }
td.text { text-align:left; white-space:normal; max-width:640px; word-break:break-word; }
abbr[title] { text-decoration:underline dotted; cursor:help; }
.kpis { display:flex; flex-wrap:wrap; gap:8px 36px; align-items:flex-start; }
.charts { display:flex; flex-wrap:wrap; gap:18px; }
figure.chart { margin:0; padding:10px; border:1px solid var(--line); border-radius:6px; max-width:100%;
  overflow-x:auto; }
figure.chart .failed { color:#a4262c; }
dl.glossary dt { font-weight:600; margin-top:6px; } dl.glossary dd { margin:0 0 0 18px; color:var(--muted); }
pre { background:var(--bg); border:1px solid var(--line); padding:10px; overflow:auto; max-height:480px;
  font-size:12px; }
.muted { color:var(--muted); }
.warn { color:#7a4b00; background:#fdecc8; padding:4px 8px; border-radius:4px; }
"""

RENDERER_JS = """
const servingperfCharts = JSON.parse(document.getElementById("%(data_id)s").textContent);
const servingperfOptions = {
  renderer: "svg",
  actions: {export: true, source: false, compiled: false, editor: false},
};
function servingperfCountMarks(mark) {
  let n = 0;
  for (const item of (mark.items || [])) {
    if (mark.marktype === "group") {
      for (const child of (item.items || [])) n += servingperfCountMarks(child);
    } else if (mark.role === "mark") {
      n += 1;
    }
  }
  return n;
}
const servingperfOutcomes = await Promise.allSettled(
  Object.entries(servingperfCharts).map(async ([name, spec]) => {
    const element = document.getElementById("chart-" + name);
    try {
      const result = await window.vegaEmbed(element, spec, servingperfOptions);
      element.dataset.marks = String(servingperfCountMarks(result.view.scenegraph().root));
    } catch (error) {
      element.textContent = "This chart could not be drawn: " + error;
      element.classList.add("failed");
      throw error;
    }
  }),
);
let servingperfFailed = 0;
for (const outcome of servingperfOutcomes) {
  if (outcome.status === "rejected") {
    servingperfFailed += 1;
    console.error("servingperf: a chart failed to render", outcome.reason);
  }
}
document.body.dataset.chartsFailed = String(servingperfFailed);
document.body.dataset.chartsRendered = String(servingperfOutcomes.length - servingperfFailed);
"""


def vega_javascript() -> str:
    """The Vega + Vega-Lite + vega-embed bundle, safe to inline in a ``<script>`` element.

    vl-convert bundles it offline (about 0.9 MB); its default snippet sets ``window.vegaEmbed``.
    The default snippet sets ``window.vegaEmbed`` (documented by vl-convert), which the renderer
    uses. ``</script`` and ``<!--`` cannot occur in the bundle's current version, but are defused anyway:
    ``<\\/`` means ``</`` in every JavaScript string, template and regular expression.
    """
    # The stub marks ``snippet`` required; at runtime it is optional, and only the default
    # snippet's bundle is cached by vl-convert (an explicit snippet costs a 1 s rebuild per call).
    bundle: str = vl_convert.javascript_bundle()  # type: ignore[call-arg]
    return bundle.replace("</script", "<\\/script").replace("<!--", "<\\!--")


def script_json(value: Any) -> str:
    """JSON for a ``<script type="application/json">`` block: no ``<``, ``>`` or ``&`` left raw.

    Outside strings JSON never contains these characters, and inside strings the ``\\u00XX``
    escapes decode to the same text, so ``JSON.parse`` returns the value unchanged.
    """
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def fmt_number(value: object) -> str:
    """A figure for a table cell: thousands separators, 4 significant digits, em dash if absent."""
    if value is None or isinstance(value, bool):
        return "—" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—"
        if abs(value) >= 10_000:
            return f"{value:,.0f}"
        return f"{value:.4g}"
    return _e(value)


def _figure_name(metric: str) -> str:
    definition = METRICS[metric]
    return f'<abbr title="{_e(definition.definition)}">{_e(definition.title)}</abbr>'


def _moment(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _time_span(started: object, ended: object) -> str:
    """'started 2024-01-17 16:35:00 UTC · ended ... · 61 s', from run.json's ISO datetimes."""
    start, end = _moment(started), _moment(ended)

    def show(raw: object, moment: datetime | None) -> str:
        if moment is None:
            return _e(raw) if raw else "—"
        return _e(moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))

    text = f"started {show(started, start)} · ended {show(ended, end)}"
    if start is not None and end is not None:
        text += f" · {fmt_number((end - start).total_seconds())} s"
    return text


def _header(
    run_info: Mapping[str, Any],
    summary: Mapping[str, Any],
    *,
    verdicts: bool = False,
    sweep: bool = False,
) -> str:
    scenario = run_info.get("scenario") or summary.get("scenario") or "run"
    run_id = run_info.get("run_id") or summary.get("run_id") or "?"
    kind = run_info.get("kind") or summary.get("kind") or ""
    status = str(run_info.get("status") or "unknown")
    badge = "badge ok" if status.lower() in _OK_STATUSES else "badge"
    labels: Mapping[str, Any] = run_info.get("labels") or summary.get("labels") or {}
    label_html = "".join(
        f'<span class="label">{_e(k)}={_e(v)}</span>' for k, v in sorted(labels.items())
    )
    return (
        f"<header><h1>{_e(scenario)}</h1>"
        f'<p class="meta">run <code>{_e(run_id)}</code> · {_e(kind)} · '
        f'<span class="{badge}">{_e(status)}</span></p>'
        f'<p class="meta">{_time_span(run_info.get("started_at"), run_info.get("ended_at"))}</p>'
        + (f'<p class="meta">labels: {label_html}</p>' if label_html else "")
        + "<nav>"
        + ('<a href="#verdicts">Verdicts</a>' if verdicts else "")
        + '<a href="#overview">Overview</a>'
        + ('<a href="#sweep">Sweep</a>' if sweep else "")
        + '<a href="#charts">Charts</a>'
        '<a href="#kpis">Key figures</a>'
        '<a href="#failures">Failures</a><a href="#glossary">Glossary</a>'
        '<a href="#config">Configuration</a><a href="#environment">Environment</a></nav>'
        "</header>"
    )


def _stats_table(stats: Mapping[str, Any]) -> str:
    head = "".join(f"<th>{c}</th>" for c in STAT_COLUMNS)
    rows = []
    for metric in STATS_ORDER:
        if metric not in stats:
            continue
        row = stats[metric]
        cells = (
            "".join(f"<td>{fmt_number(row.get(c))}</td>" for c in STAT_COLUMNS)
            if row
            else f'<td colspan="{len(STAT_COLUMNS)}" class="muted">no data</td>'
        )
        rows.append(
            f'<tr data-metric="{_e(metric)}"><td>{_figure_name(metric)}</td>'
            f"<td>{_e(METRICS[metric].unit)}</td>{cells}</tr>"
        )
    return (
        '<table class="stats"><thead><tr><th>Figure</th><th>Unit</th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _rates_table(instance: Mapping[str, Any]) -> str:
    rows = [
        f'<tr data-metric="{_e(m.name)}"><td>{_figure_name(m.name)}</td>'
        f"<td>{fmt_number(summary_value(instance, m, 'value'))}</td><td>{_e(m.unit)}</td></tr>"
        for m in rates()
    ]
    return (
        '<table class="rates"><thead><tr><th>Figure</th><th>Value</th><th>Unit</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _counts_table(counts: Mapping[str, Any]) -> str:
    keys = ("issued", "ok", "error", "cut", "measured")
    head = "".join(f"<th>{k}</th>" for k in keys)
    cells = "".join(f"<td>{fmt_number(counts.get(k))}</td>" for k in keys)
    by_kind: Mapping[str, Any] = counts.get("errors_by_kind") or {}
    kinds = "".join(
        f"<tr><td>{_e(kind)}</td><td>{fmt_number(n)}</td></tr>"
        for kind, n in sorted(by_kind.items(), key=lambda kv: (-int(kv[1]), str(kv[0])))
    )
    kind_table = (
        '<table class="errors-by-kind"><thead><tr><th>Error kind</th><th>Requests</th></tr>'
        f"</thead><tbody>{kinds}</tbody></table>"
        if kinds
        else '<p class="muted">No failed request.</p>'
    )
    return (
        f'<table class="counts"><thead><tr><th class="muted">requests</th>{head}</tr></thead>'
        f'<tbody><tr><td class="muted">count</td>{cells}</tr></tbody></table>{kind_table}'
    )


def _overview(instances: Mapping[str, Any]) -> str:
    """One line per instance with the figures the seed compares from release to release."""
    columns = headline()
    head = "".join(
        f"<th>{_figure_name(m.name)}{' ' + stat if m.distribution else ''}"
        f'<br><span class="muted">{_e(m.unit)}</span></th>'
        for m, stat in columns
    )
    rows = []
    for name, inst in instances.items():
        cells = [f"<td>{fmt_number(summary_value(inst, m, stat))}</td>" for m, stat in columns]
        measured = (inst.get("counts") or {}).get("measured")
        rows.append(
            f'<tr><td><a href="#instance-{_e(name)}">{_e(name)}</a></td>'
            f'<td class="text">{_e(inst.get("model"))}</td>'
            f"<td>{fmt_number(measured)}</td>{''.join(cells)}</tr>"
        )
    return (
        '<table class="overview"><thead><tr><th>Instance</th><th class="text">Model</th>'
        f'<th>measured<br><span class="muted">requests</span></th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _yes_no(value: object) -> str:
    return "—" if value is None else ("yes" if value else "no")


def _sweep_section(sweeps: Mapping[str, Any]) -> str:
    """A sweep's verdict line and stages per instance (``summary.json["sweep"]``)."""
    parts = []
    for name, sweep in sweeps.items():
        rows = "".join(
            f"<tr><td>{_e(stage.get('phase'))}</td>"
            f"<td>{_e(stage.get('kind'))}"
            + (f", {fmt_number(stage.get('users'))} users" if stage.get("users") else "")
            + f"</td><td>{fmt_number(stage.get('offered_rps'))}</td>"
            f"<td>{fmt_number(stage.get('completed_rps'))}</td>"
            f"<td>{fmt_number(_percent(stage.get('slo_attainment')))}</td>"
            f"<td>{_yes_no(stage.get('saturated'))}</td><td>{_yes_no(stage.get('passed'))}</td></tr>"
            for stage in sweep.get("stages") or []
        )
        parts.append(
            f'<h3>{_e(name)}</h3><p class="sweep-verdict"><strong>{_e(sweep.get("verdict"))}'
            "</strong></p>"
            '<table class="sweep-stages"><thead><tr><th>Stage</th><th class="text">Load</th>'
            "<th>Offered<br>req/s</th><th>Completed<br>req/s</th><th>SLO attainment<br>%</th>"
            f"<th>Saturated</th><th>Passed</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    return (
        '<section id="sweep"><h2>Sweep</h2><p class="meta">A stage passes when it completes at'
        " least (1 − saturation tolerance) × its offered rate and, with SLOs, enough of its"
        " requests meet them; the knee is the highest offered rate not saturated.</p>"
        f"{''.join(parts)}</section>"
    )


def _percent(value: object) -> float | None:
    return 100.0 * value if isinstance(value, int | float) else None


def _instance_section(name: str, instance: Mapping[str, Any]) -> str:
    window: Mapping[str, Any] = instance.get("window") or {}
    window_text = (
        f"measurement window {fmt_number(window.get('start_s'))} s to "
        f"{fmt_number(window.get('end_s'))} s after the run start "
        f"({fmt_number(window.get('length_s'))} s)"
        if window
        else "no measurement window"
    )
    return (
        f'<section class="instance" id="instance-{_e(name)}"><h3>{_e(name)} '
        f"<small>model {_e(instance.get('model'))} · phase {_e(instance.get('phase'))}</small></h3>"
        f'<p class="meta">{window_text}</p>'
        f'<div class="kpis"><div>{_stats_table(instance.get("stats") or {})}</div>'
        f"<div>{_rates_table(instance)}{_counts_table(instance.get('counts') or {})}"
        f"{_token_counts(instance)}</div></div>{breakdown_tables(instance, fmt_number)}"
        "</section>"
    )


def _token_counts(instance: Mapping[str, Any]) -> str:
    """Where N came from and how often the usage count disagreed with the streamed count (the
    share of measured requests affected, and the tokens each count gave those requests)."""
    tokens: Mapping[str, Any] = instance.get("token_counts") or {}
    if not tokens:
        return ""  # a summary written before token counts were kept
    measured = (instance.get("counts") or {}).get("measured") or 0
    mismatched = int(tokens.get("mismatched") or 0)
    share = fmt_number(_percent(mismatched / measured)) if measured else "—"
    n_from = ", ".join(
        f"{_e(source)} {fmt_number(n)}" for source, n in (tokens.get("n_from") or {}).items()
    )
    if mismatched:
        stream, usage = (
            tokens.get("mismatched_stream_tokens"),
            tokens.get("mismatched_usage_tokens"),
        )
        verdict = (
            f'<p class="warn">{fmt_number(mismatched)} of {fmt_number(measured)} measured'
            f" requests ({share}%) have a usage count that differs from the streamed count:"
            f" {fmt_number(usage)} tokens by usage against {fmt_number(stream)} streamed.</p>"
        )
    else:
        verdict = ""
    return (
        '<table class="token-counts"><thead><tr><th class="text">Token counts</th><th>Requests'
        "</th></tr></thead><tbody>"
        f'<tr><td class="text">N from (usage, stream)</td><td>{n_from or "—"}</td></tr>'
        f'<tr><td class="text">streamed and usage counts compared</td>'
        f"<td>{fmt_number(tokens.get('compared'))}</td></tr>"
        f'<tr data-metric="token_mismatch_rate"><td class="text">they differ</td>'
        f"<td>{fmt_number(mismatched)} ({share}%)</td></tr>"
        f"</tbody></table>{verdict}"
    )


def _charts_section(specs: Mapping[str, Any]) -> str:
    figures = "".join(
        f'<figure class="chart" data-chart="{_e(name)}"><div id="chart-{_e(name)}"></div>'
        "<noscript>The interactive charts need JavaScript; the PNG files beside this page show "
        "them too.</noscript></figure>"
        for name in specs
    )
    return f'<section id="charts"><h2>Charts</h2><div class="charts">{figures}</div></section>'


def _failures_section(failures: Iterable[FailureSample]) -> str:
    rows = "".join(
        f'<tr><td>{_e(f.instance)}</td><td class="text">{_e(f.kind)}</td>'
        f"<td>{fmt_number(f.count)}</td>"
        f'<td class="text">{_e(f.message) if f.message else "<i>no message</i>"}</td></tr>'
        for f in failures
    )
    body = (
        '<table class="failures"><thead><tr><th>Instance</th><th class="text">Kind</th>'
        f'<th>Requests</th><th class="text">Message</th></tr></thead><tbody>{rows}</tbody></table>'
        if rows
        else '<p class="muted">No failed request.</p>'
    )
    return (
        '<section id="failures"><h2>Failures</h2>'
        '<p class="meta">Distinct failure messages, most frequent first; requests cut at the end '
        f"of a phase are not failures.</p>{body}</section>"
    )


def _glossary() -> str:
    items = "".join(
        f'<dt id="metric-{_e(m.name)}">{_e(m.title)} <span class="muted">({_e(m.unit)}, '
        f"{_e(m.better.value)} is better; <code>{_e(m.name)}</code>)</span></dt>"
        f"<dd>{_e(m.definition)}</dd>"
        for m in METRICS.values()
    )
    return (
        '<section id="glossary"><h2>Glossary</h2>'
        '<p class="meta">Percentiles interpolate linearly over all per-request values; latency '
        "figures exclude failed requests.</p>"
        f'<dl class="glossary">{items}</dl></section>'
    )


def _config_sections(run_info: Mapping[str, Any]) -> str:
    config = json.dumps(run_info.get("config") or {}, indent=2, default=str, ensure_ascii=False)
    environment: Mapping[str, Any] = run_info.get("environment") or {}
    env_rows = "".join(
        f'<tr><td>{_e(k)}</td><td class="text">'
        f"{_e(v if isinstance(v, str) else json.dumps(v, default=str))}</td></tr>"
        for k, v in environment.items()
    )
    return (
        f'<section id="config"><h2>Configuration</h2><pre>{_e(config)}</pre></section>'
        f'<section id="environment"><h2>Environment</h2><table><tbody>{env_rows}</tbody>'
        "</table></section>"
    )


def _server_section(server: Mapping[str, Any]) -> str:
    """The client-versus-server agreement table per window, the scrape and query tallies, and
    the warnings (analysis.server_metrics defines every rule shown)."""
    agreement: Mapping[str, Any] = server.get("agreement") or {}
    parts = []
    verdict = agreement.get("verdict")
    if verdict:
        tolerance = agreement.get("tolerance") or {}
        parts.append(
            f'<p>Client and server: <b class="verdict-{_e(verdict)}">{_e(verdict)}</b>'
            ' <span class="muted">(counts exact, or within the cut requests; means within'
            f" max({fmt_number(tolerance.get('abs_s'))} s,"
            f" {fmt_number((tolerance.get('rel') or 0) * 100)} % of the server's))</span></p>"
        )
    for window in agreement.get("windows") or []:
        rows = "".join(
            f'<tr><td class="text">{_e(r.get("figure"))}</td><td>{fmt_number(r.get("client"))}</td>'
            f"<td>{fmt_number(r.get('server'))}</td>"
            f'<td class="text">{_e(r.get("rule") or "")}</td>'
            f'<td class="text verdict-{_e(r.get("verdict"))}">{_e(r.get("verdict"))}</td></tr>'
            for r in window.get("rows") or []
        )
        reason = f" ({_e(window['reason'])})" if window.get("reason") else ""
        parts.append(
            f"<h3>{_e(window.get('instance'))} / {_e(window.get('phase'))}: "
            f"{_e(window.get('verdict'))}{reason}</h3>"
            '<table class="agreement"><thead><tr><th class="text">Figure</th><th>Client</th>'
            '<th>Server</th><th class="text">Rule</th><th class="text">Verdict</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>"
        )
    scrape: Mapping[str, Any] = server.get("scrape") or {}
    if scrape:
        parts.append(
            f'<p class="meta">Scraped {fmt_number(scrape.get("targets"))} instance(s) every'
            f" {fmt_number(scrape.get('interval_s'))} s: {fmt_number(scrape.get('scrapes'))}"
            f" scrapes, {fmt_number(scrape.get('gaps'))} gaps (failed scrapes).</p>"
        )
    prometheus: Mapping[str, Any] = server.get("prometheus") or {}
    if prometheus:
        parts.append(
            f'<p class="meta">Prometheus {_e(prometheus.get("url"))}:'
            f" {fmt_number(prometheus.get('queries'))} range queries,"
            f" {fmt_number(prometheus.get('failed'))} failed,"
            f" {fmt_number(prometheus.get('series'))} series.</p>"
        )
    warnings = server.get("warnings") or []
    if warnings:
        items = "".join(f"<li>{_e(w)}</li>" for w in warnings)
        parts.append(f'<ul class="warnings">{items}</ul>')
    return (
        '<section id="server-metrics"><h2>Server metrics</h2>'
        '<p class="meta">Scraped from each instance\'s metrics endpoint (vLLM names), queried'
        " from Prometheus, and received as spans; the charts above draw them.</p>"
        f"{''.join(parts)}</section>"
    )


def render_html(
    run_info: Mapping[str, Any],
    summary: Mapping[str, Any],
    specs: Mapping[str, Any],
    failures: Iterable[FailureSample],
    *,
    vega_js: str,
    gate: Mapping[str, Any] | None = None,
) -> str:
    """The whole page as one string; pure. ``vega_js`` is :func:`vega_javascript`'s bundle;
    ``gate`` a gate document (:mod:`servingperf.report.verdicts`) shown first when given."""
    instances: Mapping[str, Any] = summary.get("instances") or {}
    sweeps: Mapping[str, Any] = summary.get("sweep") or {}
    server: Mapping[str, Any] = summary.get("server_metrics") or {}
    kpis = "".join(_instance_section(str(name), inst) for name, inst in instances.items())
    title = f"servingperf · {run_info.get('scenario') or summary.get('scenario') or 'run'}"
    renderer = RENDERER_JS % {"data_id": CHART_DATA_ID}
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)} · {_e(run_info.get('run_id') or summary.get('run_id') or '')}</title>"
        f"<style>{CSS}{VERDICTS_CSS if gate is not None else ''}</style></head><body>"
        f"{_header(run_info, summary, verdicts=gate is not None, sweep=bool(sweeps))}<main>"
        f"{verdicts_section(gate) if gate is not None else ''}"
        f'<section id="overview"><h2>Overview</h2>{_overview(instances)}</section>'
        f"{_sweep_section(sweeps) if sweeps else ''}"
        f"{_charts_section(specs)}"
        f"{_server_section(server) if server else ''}"
        f'<section id="kpis"><h2>Key figures per instance</h2>{kpis}</section>'
        f"{_failures_section(failures)}{_glossary()}"
        f"{_config_sections(run_info)}</main>"
        f'<script type="application/json" id="{CHART_DATA_ID}">{script_json(dict(specs))}</script>'
        f'<script type="module">\n{vega_js}\n{renderer}</script>'
        "</body></html>\n"
    )

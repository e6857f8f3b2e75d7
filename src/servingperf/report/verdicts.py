"""Gate verdicts as HTML: the outcome of a gate and, KPI by KPI, the evidence behind each verdict.

Terms. A *gate document* is the JSON object ``servingperf ci`` keeps for each gate it ran (in the
run directory as ``gate.json`` and in the site's ``gates/`` folder; produced by
:mod:`servingperf.continuous.site`). Its keys: ``status`` (``gated``, ``no_reference``, or
``error``), ``scenario``, ``gated_at``, ``candidate_run``, ``message`` (why there is no verdict),
and, when gated, the keys of :func:`servingperf.continuous.outputs.report_json` (``reference``,
``candidate``, their run ids, ``exit_code``, ``verdicts``, ``notes``). The *outcome* of a KPI is
its verdict as people read it: ``regressed``, ``improved`` (flagged for a look too),
``acknowledged`` (a known regression that no longer fails the gate), ``inconclusive`` or
``unchanged``; the *evidence* is the reference and candidate statistic, the relative change, the
confidence interval of that change, its p-value, the sample counts, the threshold and the reason.

This module reads the document as a plain mapping (the report layer does not import the
continuous layer that writes it), tolerates missing keys (shown as a dash) and escapes every
string, since KPI instances, labels and release names come from users.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from servingperf.model.metrics import METRICS

OUTCOME_ORDER = {
    "regressed": 0,
    "improved": 1,
    "acknowledged": 2,
    "inconclusive": 3,
    "unchanged": 4,
}
OUTCOME_TEXT = {
    "regressed": "regressed",
    "improved": "improved: look",
    "acknowledged": "acknowledged",
    "inconclusive": "inconclusive",
    "unchanged": "unchanged",
}

VERDICTS_CSS = """
.verdict { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px;
  white-space:nowrap; background:#e7ecf4; color:#1d2430; }
.verdict.regressed, .gate.regression { background:#f9d7d9; color:#8a1c24; }
.verdict.improved { background:#d6e9fb; color:#0f4c81; }
.verdict.acknowledged { background:#fdecc8; color:#7a4b00; }
.verdict.unchanged, .gate.pass { background:#d8f0dc; color:#17612a; }
.gate { display:inline-block; padding:4px 12px; border-radius:6px; font-weight:600; font-size:15px;
  background:#e7ecf4; }
.gate.no-reference, .gate.error { background:#fdecc8; color:#7a4b00; }
.table-scroll { max-width:100%; overflow-x:auto; }
table.verdicts th { white-space:normal; vertical-align:bottom; }
table.verdicts td.evidence { text-align:left; white-space:normal; min-width:200px; max-width:300px;
  color:var(--muted); font-size:12px; }
table.verdicts th.kpi, table.verdicts td.kpi { text-align:left; }
table.verdicts td.instance { white-space:nowrap; }
table.verdicts tr.regressed td { background:#fdf1f2; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _figure(value: object, unit: object = "") -> str:
    number = _number(value)
    if number is None:
        return "—"
    text = f"{number:,.0f}" if abs(number) >= 10_000 else f"{number:.4g}"
    return _e(f"{text} {unit}".strip())


def _percent(value: object) -> str:
    number = _number(value)
    return "—" if number is None else f"{number:+.1%}"


def _interval(ratio: object) -> str:
    """The confidence interval of the ratio candidate/reference, shown as a relative change."""
    if not isinstance(ratio, Sequence) or isinstance(ratio, str) or len(ratio) != 2:
        return "—"
    low, high = _number(ratio[0]), _number(ratio[1])
    if low is None or high is None:
        return "—"
    return f"[{low - 1:+.1%}, {high - 1:+.1%}]"


def _kpi_name(kpi: object, statistic: object) -> str:
    definition = METRICS.get(str(kpi))
    name = (
        f"<code>{_e(kpi)}</code>"
        if definition is None
        else f'<abbr title="{_e(definition.definition)}">{_e(definition.title)}</abbr>'
    )
    return f'{name} <span class="muted">{_e(statistic)}</span>' if statistic else name


def when_text(value: object) -> str:
    """An ISO 8601 moment as 'YYYY-MM-DD HH:MM:SS UTC' (escaped); other values as they are."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return _e(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return _e(moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))


def outcome_badge(outcome: object) -> str:
    """A coloured badge for a KPI outcome (unknown outcomes are shown as they are, escaped)."""
    name = str(outcome)
    css = name if name in OUTCOME_TEXT else ""
    return f'<span class="verdict {css}">{_e(OUTCOME_TEXT.get(name, name))}</span>'


def outcome_counts(verdicts: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """How many KPIs got each outcome, in :data:`OUTCOME_ORDER` (absent outcomes left out)."""
    counts: dict[str, int] = {}
    for verdict in verdicts:
        outcome = str(verdict.get("outcome"))
        counts[outcome] = counts.get(outcome, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (OUTCOME_ORDER.get(kv[0], 9), kv[0])))


def gate_state(gate: Mapping[str, Any]) -> tuple[str, str]:
    """(CSS class, headline) of a gate document: regression, pass, no reference, or error."""
    status = str(gate.get("status") or "gated")
    if status == "no_reference":
        return "no-reference", "no reference: not gated"
    if status != "gated":
        return "error", "gate not run"
    verdicts = _verdict_list(gate)
    failing = sum(1 for v in verdicts if v.get("outcome") == "regressed")
    if failing or gate.get("exit_code") == 1:
        return "regression", f"regression: {failing} KPI(s) regressed"
    return "pass", "no regression"


def _verdict_list(gate: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    raw = gate.get("verdicts")
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        return []
    return [v for v in raw if isinstance(v, Mapping)]


def counts_text(verdicts: Sequence[Mapping[str, Any]]) -> str:
    """'1 regressed, 2 improved, 5 unchanged' (escaped)."""
    parts = [f"{n} {outcome}" for outcome, n in outcome_counts(verdicts).items()]
    return _e(", ".join(parts)) if parts else "no KPI compared"


def verdicts_table(verdicts: Sequence[Mapping[str, Any]]) -> str:
    """One row per KPI, regressions first, then improvements (they deserve a look too)."""
    ordered = sorted(
        verdicts,
        key=lambda v: (
            OUTCOME_ORDER.get(str(v.get("outcome")), 9),
            str(v.get("instance")),
            str(v.get("kpi")),
        ),
    )
    rows = []
    for v in ordered:
        unit = v.get("unit") or ""
        evidence = _e(v.get("reason") or "")  # names the threshold in force
        if v.get("acknowledged_because"):
            evidence += f"<br>acknowledged: {_e(v['acknowledged_because'])}"
        p_value = _number(v.get("p_value"))
        outcome = str(v.get("outcome"))
        rows.append(
            f'<tr class="{_e(outcome) if outcome in OUTCOME_TEXT else ""}"'
            f' data-kpi="{_e(v.get("kpi"))}" data-outcome="{_e(outcome)}">'
            f"<td>{outcome_badge(outcome)}</td>"
            f'<td class="text instance">{_e(v.get("instance") or "")}</td>'
            f'<td class="kpi">{_kpi_name(v.get("kpi"), v.get("statistic"))}</td>'
            f"<td>{_figure(v.get('reference'), unit)}</td>"
            f"<td>{_figure(v.get('candidate'), unit)}</td>"
            f"<td>{_percent(v.get('relative_change'))}</td>"
            f"<td>{_interval(v.get('ci_ratio'))}</td>"
            f"<td>{'—' if p_value is None else f'{p_value:.3g}'}</td>"
            f"<td>{_figure(v.get('n_reference'))} / {_figure(v.get('n_candidate'))}</td>"
            f'<td class="evidence">{evidence}</td></tr>'
        )
    if not rows:
        return '<p class="muted">No KPI was compared.</p>'
    confidence = _number(ordered[0].get("confidence"))
    ci_title = (
        f"{confidence:.0%} CI of the change" if confidence is not None else "CI of the change"
    )
    return (
        '<div class="table-scroll"><table class="verdicts"><thead><tr><th>Outcome</th>'
        '<th class="text">Instance</th><th class="kpi">KPI and statistic</th><th>Reference</th>'
        f"<th>Candidate</th><th>Change</th><th>{_e(ci_title)}</th><th>p</th>"
        '<th>n (ref / cand)</th><th class="text">Evidence</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _run_list(run_ids: object, links: Mapping[str, str]) -> str:
    if not isinstance(run_ids, Sequence) or isinstance(run_ids, str):
        return "—"
    items = []
    for run_id in run_ids:
        href = links.get(str(run_id))
        text = f"<code>{_e(run_id)}</code>"
        items.append(f'<a href="{_e(href)}">{text}</a>' if href else text)
    return ", ".join(items) if items else "—"


def verdicts_section(
    gate: Mapping[str, Any],
    *,
    section_id: str = "verdicts",
    title: str = "Gate verdicts",
    links: Mapping[str, str] | None = None,
) -> str:
    """The gate's headline, what was compared with what, the per-KPI evidence and the notes.

    ``links`` maps run ids to hrefs (relative paths to run reports) where the page has them.
    """
    links = links or {}
    css, headline = gate_state(gate)
    verdicts = _verdict_list(gate)
    status = str(gate.get("status") or "gated")
    when = f" · gated {when_text(gate['gated_at'])}" if gate.get("gated_at") else ""
    scenario = f"scenario <b>{_e(gate['scenario'])}</b> · " if gate.get("scenario") else ""
    parts = [
        f'<section id="{_e(section_id)}" class="gate-result" data-gate-status="{_e(status)}">'
        f"<h2>{_e(title)}</h2>"
        f'<p><span class="gate {css}">{_e(headline)}</span></p>'
    ]
    if status == "gated":
        candidate_runs = gate.get("candidate_runs")
        candidate = _run_list(candidate_runs, links)
        if [gate.get("candidate")] != candidate_runs:  # a label selection: name it too
            candidate = f"<b>{_e(gate.get('candidate') or '—')}</b> ({candidate})"
        parts.append(
            f'<p class="meta">{scenario}candidate {candidate} against reference '
            f"<b>{_e(gate.get('reference') or '—')}</b> "
            f"({_run_list(gate.get('reference_runs'), links)}){when}</p>"
            f'<p class="meta">{counts_text(verdicts)}. A change counts when it exceeds the '
            "threshold and its confidence interval excludes no change; the statistic compared is "
            "the median of per-request values for latencies and the mean of sub-window rates for "
            "throughput.</p>" + verdicts_table(verdicts)
        )
    else:
        candidate_run = gate.get("candidate_run")
        parts.append(
            f'<p class="meta">{scenario}candidate run '
            f"{_run_list([candidate_run] if candidate_run else [], links)}"
            f" · reference <b>{_e(gate.get('reference') or '—')}</b>{when}</p>"
            f'<p class="message">{_e(gate.get("message") or "")}</p>'
        )
    notes = gate.get("notes")
    if isinstance(notes, Sequence) and not isinstance(notes, str) and notes:
        parts.append(
            '<ul class="notes">' + "".join(f"<li>{_e(note)}</li>" for note in notes) + "</ul>"
        )
    parts.append("</section>")
    return "".join(parts)

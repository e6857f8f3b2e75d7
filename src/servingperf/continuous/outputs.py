"""What CI reads from a gate: a Markdown summary, JUnit XML (one test case per KPI), JSON.

JUnit mapping: ``regressed`` -> failure; ``inconclusive`` -> skipped (with the reason);
``acknowledged``, ``improved``, ``unchanged`` -> passed (the outcome and evidence in system-out).

Every output says which variance the intervals hold (:func:`run_variance_note`): with one run per
side they hold within-run variance only, and a reader must know that a "significant" change may
then be run-to-run noise. JSON: ``within_run_only`` and ``run_variance_note`` at the top, and per
verdict ``run_variance`` with ``runs_reference``/``runs_candidate``; Markdown: a line under the
heading; JUnit: suite properties ``within_run_only`` and ``run_variance``, the note in the suite's
system-out, and the run counts in every test case's evidence.
"""

from __future__ import annotations

import json
import math
from typing import Any
from xml.etree import ElementTree as ET

from servingperf.analysis.gate import KpiVerdict, RunVariance
from servingperf.continuous.gating import GateReport
from servingperf.model.metrics import METRICS

_ICONS = {
    "regressed": "❌ regressed",
    "improved": "🟢 improved",
    "unchanged": "✅ unchanged",
    "inconclusive": "❔ inconclusive",
    "acknowledged": "⚠️ acknowledged",
}


def _num(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = f"{value:.4g}"
    return f"{text} {unit}".strip()


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:+.1%}"


def _ci(v: KpiVerdict) -> str:
    if v.ci_low is None or v.ci_high is None:
        return "–"
    return f"[{v.ci_low - 1:+.1%}, {v.ci_high - 1:+.1%}]"


def _side_runs(report: GateReport) -> str:
    return f"{len(report.reference_runs)} reference, {len(report.candidate_runs)} candidate run(s)"


def run_variance_note(report: GateReport) -> str:
    """One sentence saying which variance the gate's intervals hold (see the module docstring)."""
    kinds = {v.run_variance for v in report.verdicts if v.ci_low is not None} or {
        v.run_variance for v in report.verdicts
    }
    if report.within_run_only:
        return (
            f"Within-run variance only ({_side_runs(report)}): with one run per side the"
            " confidence intervals see request-to-request noise but not run-to-run variance"
            " (machine load, a noisy neighbour), so a change flagged as significant may be"
            " run-to-run noise. Record several runs per release to gate on them."
        )
    if kinds == {RunVariance.BETWEEN_RUNS}:
        return (
            f"Runs resampled ({_side_runs(report)}): the confidence intervals hold run-to-run"
            " variance as well as request-to-request variance."
        )
    if RunVariance.ONE_SIDE in kinds:
        return (
            f"Runs resampled on one side only ({_side_runs(report)}): the single run's own"
            " run-to-run variance could not be estimated for some KPIs (a run's statistic <= 0)."
        )
    return (
        f"Runs resampled ({_side_runs(report)}): the side with one run takes the run-to-run"
        " spread of the other side's runs, assuming run-to-run noise is the machine's, not the"
        " release's."
    )


def verdict_json(v: KpiVerdict) -> dict[str, Any]:
    return {
        "kpi": v.kpi,
        "instance": v.instance,
        "statistic": v.statistic.value,
        "unit": v.unit,
        "better": v.better.value,
        "outcome": v.outcome,
        "verdict": v.verdict.value,
        "reference": v.reference_value,
        "candidate": v.candidate_value,
        "relative_change": v.relative_change,
        "ci_ratio": [v.ci_low, v.ci_high],
        "confidence": v.confidence,
        "p_value": v.p_value,
        "threshold": v.threshold,
        "n_reference": v.n_reference,
        "n_candidate": v.n_candidate,
        "runs_reference": v.runs_reference,
        "runs_candidate": v.runs_candidate,
        "run_variance": v.run_variance.value,
        "reason": v.reason,
        "acknowledged_because": v.acknowledgement.reason if v.acknowledgement else None,
    }


def report_json(report: GateReport) -> dict[str, Any]:
    return {
        "reference": report.reference.text,
        "candidate": report.candidate.text,
        "reference_runs": [r.run_id for r in report.reference_runs],
        "candidate_runs": [r.run_id for r in report.candidate_runs],
        "exit_code": int(report.exit_code),
        "refused": report.refusal,
        "invalid_runs": report.invalid_runs,
        "comparability": [
            {
                "field": d.field,
                "reference": list(d.reference),
                "candidate": list(d.candidate),
                "action": d.action.value,
            }
            for d in report.comparability.differences
        ],
        "failing": sum(v.failing for v in report.verdicts),
        "within_run_only": report.within_run_only,
        "run_variance_note": run_variance_note(report),
        "verdicts": [verdict_json(v) for v in report.verdicts],
        "notes": report.notes,
    }


def _titled(kpi: str) -> str:
    """A KPI name with its figure's title (``ttfo_s (Time to first content token)``), so that a
    reader tells look-alike figures apart."""
    definition = METRICS.get(kpi)
    return kpi if definition is None else f"{kpi} ({definition.title})"


def report_markdown(report: GateReport) -> str:
    failing = [v for v in report.verdicts if v.failing]
    head = "❌ regression" if failing else "✅ no regression"
    if report.refusal is not None:
        lines = [
            f"## servingperf gate: ⛔ not judged (exit {int(report.exit_code)})",
            "",
            f"Candidate **{report.candidate.text}** ({len(report.candidate_runs)} run(s)) against"
            f" reference **{report.reference.text}** ({len(report.reference_runs)} run(s)):"
            f" {report.refusal}.",
            "",
            "Use `--allow-invalid` to judge invalid runs, `--comparability FIELD=warn` or"
            " `--allow-incomparable` to judge runs whose fingerprints differ.",
        ]
        if report.notes:
            lines += ["", "Notes:", *[f"- {note}" for note in report.notes]]
        return "\n".join(lines) + "\n"
    lines = [
        f"## servingperf gate: {head}",
        "",
        f"Candidate **{report.candidate.text}** ({len(report.candidate_runs)} run(s)) against"
        f" reference **{report.reference.text}** ({len(report.reference_runs)} run(s)).",
        "A change counts when it exceeds the threshold and its confidence interval excludes 0.",
        "",
        ("⚠️ " if report.within_run_only else "") + run_variance_note(report),
        "",
        "| instance | KPI | statistic | reference | candidate | change | CI of change | outcome |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    order = {"regressed": 0, "inconclusive": 2, "improved": 1, "acknowledged": 1, "unchanged": 3}
    for v in sorted(report.verdicts, key=lambda v: (order.get(v.outcome, 9), v.instance, v.kpi)):
        lines.append(
            f"| {v.instance} | {_titled(v.kpi)} | {v.statistic.value}"
            f" | {_num(v.reference_value, v.unit)}"
            f" | {_num(v.candidate_value, v.unit)} | {_pct(v.relative_change)} | {_ci(v)}"
            f" | {_ICONS.get(v.outcome, v.outcome)} |"
        )
    if report.notes:
        lines += ["", "Notes:", *[f"- {note}" for note in report.notes]]
    return "\n".join(lines) + "\n"


def report_junit(report: GateReport) -> str:
    suite = ET.Element(
        "testsuite",
        name=f"servingperf gate {report.candidate.text} vs {report.reference.text}",
        tests=str(len(report.verdicts)),
        failures=str(sum(v.failing for v in report.verdicts)),
        skipped=str(sum(v.outcome == "inconclusive" for v in report.verdicts)),
    )
    properties = ET.SubElement(suite, "properties")
    if report.refusal is not None:
        suite.set("tests", "1")
        suite.set("errors", "1")
        case = ET.SubElement(suite, "testcase", classname="servingperf.trust", name="judgeable")
        ET.SubElement(case, "error", message=report.refusal, type="refused")
    kinds = sorted({v.run_variance.value for v in report.verdicts})
    for name, value in (
        ("within_run_only", str(report.within_run_only).lower()),
        ("run_variance", ",".join(kinds)),
        ("reference_runs", str(len(report.reference_runs))),
        ("candidate_runs", str(len(report.candidate_runs))),
    ):
        ET.SubElement(properties, "property", name=name, value=value)
    for v in report.verdicts:
        case = ET.SubElement(
            suite, "testcase", classname=f"servingperf.{v.instance}", name=f"{v.kpi}.{v.statistic}"
        )
        evidence = (
            f"{_titled(v.kpi)}: {v.outcome}: reference {_num(v.reference_value, v.unit)}, candidate"
            f" {_num(v.candidate_value, v.unit)}, change {_pct(v.relative_change)},"
            f" CI {_ci(v)}, threshold {v.threshold:.0%},"
            f" runs {v.runs_reference} reference / {v.runs_candidate} candidate"
            f" ({v.run_variance.value}); {v.reason}"
        )
        if v.failing:
            ET.SubElement(case, "failure", message=evidence, type="regression")
        elif v.outcome == "inconclusive":
            ET.SubElement(case, "skipped", message=evidence)
        else:
            ET.SubElement(case, "system-out").text = evidence
    ET.SubElement(suite, "system-out").text = run_variance_note(report)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def write_json(report: GateReport) -> str:
    return json.dumps(report_json(report), indent=2) + "\n"

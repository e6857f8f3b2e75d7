"""The index page and the verdicts section: escaping of hostile strings everywhere, no external
resource, latest gate first, regressions first, relative links, and the run page's hooks
(verdicts from a gate document or the run's ``gate.json``, extra chart specs)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from servingperf.analysis.gate import Acknowledgement, acknowledge, compare_kpi
from servingperf.continuous.gating import GateReport
from servingperf.continuous.selection import Selection, parse_selection
from servingperf.continuous.site import gate_document
from servingperf.model.metrics import METRICS
from servingperf.report.build import GATE_FILE, build_report
from servingperf.report.charts import chart_specs
from servingperf.report.errordigest import failure_samples
from servingperf.report.html import CHART_DATA_ID, render_html
from servingperf.report.index import (
    ChangeMark,
    IndexPage,
    ReleaseRow,
    RunRow,
    ScenarioSection,
    render_index,
)
from servingperf.report.verdicts import gate_state, verdicts_section
from servingperf.results.store import StoredRun
from tests.fakes.runs import synthetic_run
from tests.unit.test_report_html import Elements

HOSTILE = "<script>alert(1)</script>"
FAKE_JS = "/* vega bundle stand-in */ window.vegaEmbed = async () => ({});"
T0 = datetime(2024, 1, 17, 16, 35, tzinfo=UTC)


def _run(run_id: str, release: str) -> StoredRun:
    return StoredRun(
        run_id=run_id,
        scenario=HOSTILE,
        kind="single-model",
        started_at=T0,
        status="complete",
        run_dir=f"/runs/{run_id}",
        platform="local",
        hardware="x86_64/2cpu/8GiB",
        labels={"release": release},
    )


def _gate(*, regressed: bool = True, acknowledged: bool = False) -> dict[str, Any]:
    """A real gate document: verdicts computed by the gate on seeded samples."""
    rng = np.random.default_rng(1)
    slower = 1.3 if regressed else 1.0
    reference = rng.lognormal(np.log(0.01), 0.1, 400)
    verdicts = [
        compare_kpi(METRICS["tpot_s"], reference, reference * slower, instance=HOSTILE),
        compare_kpi(
            METRICS["output_throughput_tps"],
            rng.normal(1000, 5, 10),
            rng.normal(1200, 5, 10),
            instance=HOSTILE,
        ),
        compare_kpi(METRICS["ttft_s"], reference[:10], reference[:10], instance=HOSTILE),
        compare_kpi(METRICS["e2e_s"], reference, reference, instance=HOSTILE),
    ]
    if acknowledged:
        verdicts = acknowledge(verdicts, [Acknowledgement(kpi="tpot_s", reason=HOSTILE)], {})
    report = GateReport(
        reference=parse_selection(f"release={HOSTILE}"),
        candidate=Selection(text="cand-run", run_id="cand-run"),
        reference_runs=[_run("ref-run", HOSTILE)],
        candidate_runs=[_run("cand-run", "2.7.0")],
        verdicts=verdicts,
        notes=[f"{HOSTILE}: only in the reference"],
    )
    return gate_document(
        report,
        scenario=HOSTILE,
        candidate_run="cand-run",
        reference=report.reference,
        gated_at=T0,
    )


def _page(gates: tuple[dict[str, Any], ...] = ()) -> IndexPage:
    runs = (
        RunRow(
            "cand-run",
            HOSTILE,
            "single-model",
            T0 + timedelta(hours=1),
            "complete",
            {"release": "2.7.0", "note": HOSTILE},
            (HOSTILE,),
            "../runs/cand%20run/report.html",
            gate=gates[0] if gates else None,
        ),
        RunRow(
            "ref-run",
            HOSTILE,
            "single-model",
            T0,
            "complete",
            {"release": HOSTILE},
            ("flan-t5-small",),
            None,
            note="run directory gone",
        ),
    )
    section = ScenarioSection(
        scenario=HOSTILE,
        slug="script-alert-1-script-abcdef",
        reference=HOSTILE,
        releases=(
            ReleaseRow(
                "2.7.0",
                T0 + timedelta(hours=1),
                (("cand-run", "../runs/cand%20run/report.html"),),
                {HOSTILE: {"tpot_s.p50": 0.013, "error_rate": 0.0}},
                {(HOSTILE, "tpot_s.p50"): ChangeMark(0.3, True, 0.002)},
            ),
            ReleaseRow(HOSTILE, T0, (("ref-run", None),), {HOSTILE: {"tpot_s.p50": 0.01}}),
        ),
        older_releases=3,
        instances=(HOSTILE,),
        chart_names=("script-alert-1-script-abcdef--release_throughput",),
        notes=(f"run {HOSTILE} left out",),
        models={HOSTILE: HOSTILE},
    )
    return IndexPage(
        generated_at=T0 + timedelta(hours=2),
        store=HOSTILE,
        gates=gates,
        runs=runs,
        total_runs=250,
        scenarios=(section,),
        links={"cand-run": "../runs/cand%20run/report.html"},
        notes=(f"gate file {HOSTILE}.json left out",),
    )


def _specs() -> dict[str, Any]:
    return {
        "script-alert-1-script-abcdef--release_throughput": {
            "title": HOSTILE,
            "data": {"values": [{"release": HOSTILE}]},
            "mark": "bar",
        }
    }


def _assert_safe(page: str) -> Elements:
    """Exactly the two scripts of the page, the hostile string never raw, nothing external."""
    parser = Elements()
    parser.feed(page)
    scripts = [attrs for tag, attrs in parser.tags if tag == "script"]
    assert scripts == [{"type": "application/json", "id": CHART_DATA_ID}, {"type": "module"}]
    assert HOSTILE not in page.replace(FAKE_JS, "")
    for tag, attrs in parser.tags:
        for name in ("src", "href", "action", "srcset"):
            value = attrs.get(name) or ""
            assert not re.match(r"^\s*(https?:|//|javascript:)", value, re.I), (tag, attrs)
        assert tag not in ("link", "iframe", "img", "object", "embed"), tag
    return parser


def test_index_escapes_every_user_string() -> None:
    page = render_index(_page((_gate(),)), _specs(), vega_js=FAKE_JS)
    _assert_safe(page)
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    # scenario, model, label, release, instance, store, gate instance, notes: all as text
    assert page.count(escaped) >= 10
    data = page.split(f'id="{CHART_DATA_ID}">', 1)[1].split("</script>", 1)[0]
    assert json.loads(data)["script-alert-1-script-abcdef--release_throughput"]["title"] == HOSTILE


def test_index_shows_the_latest_gate_first_then_runs_then_releases() -> None:
    older = _gate(regressed=False)
    older["gated_at"] = "2024-01-16T10:00:00+00:00"
    older["candidate_run"] = "older-run"
    page = render_index(_page((_gate(), older)), _specs(), vega_js=FAKE_JS)
    positions = [
        page.index('id="latest-gate"'),
        page.index('id="earlier-gates"'),
        page.index('id="runs"'),
        page.index('id="scenario-script-alert-1-script-abcdef"'),
    ]
    assert positions == sorted(positions)
    latest = page[positions[0] : positions[1]]
    assert "regression: 1 KPI(s) regressed" in latest
    earlier = page[positions[1] : positions[2]]
    assert "2024-01-16 10:00:00 UTC" in earlier
    assert "no regression" in earlier


def test_index_without_gates_says_how_to_get_one() -> None:
    page = render_index(_page(), _specs(), vega_js=FAKE_JS)
    assert "No gate yet" in page
    assert 'id="earlier-gates"' not in page


def test_runs_table_links_reports_and_says_why_not() -> None:
    page = render_index(_page((_gate(),)), _specs(), vega_js=FAKE_JS)
    runs = page.split('id="runs"', 1)[1].split("</section>", 1)[0]
    assert '<a href="../runs/cand%20run/report.html"><code>cand-run</code></a>' in runs
    assert "(run directory gone)" in runs
    assert "The newest 2 of 250 runs" in runs
    assert "regression: 1 KPI(s) regressed" in runs  # the gate of the candidate run


def test_release_history_marks_the_reference_and_change_points() -> None:
    page = render_index(_page(), _specs(), vega_js=FAKE_JS)
    section = page.split('id="scenario-script-alert-1-script-abcdef"', 1)[1]
    assert section.count('class="reference"') == 1
    assert 'class="ref-badge">reference<' in section
    assert 'class="change bad"' in section
    assert "▲+30%" in section
    assert "p=0.002" in section
    assert "3 older release(s) not shown" in section
    assert 'data-chart="script-alert-1-script-abcdef--release_throughput"' in section
    assert '<a href="../runs/cand%20run/report.html" title="cand-run">1</a>' in section


def test_verdicts_put_regressions_first_and_flag_improvements() -> None:
    html = verdicts_section(_gate())
    outcomes = re.findall(r'data-outcome="([a-z]+)"', html)
    assert outcomes[0] == "regressed"
    assert outcomes == sorted(
        outcomes, key=["regressed", "improved", "acknowledged", "inconclusive", "unchanged"].index
    )
    assert "improved: look" in html
    assert "too few samples" in html  # the inconclusive one says why
    assert "[+" in html
    assert "%]" in html


def test_acknowledged_regression_passes_and_says_why() -> None:
    gate = _gate(acknowledged=True)
    assert gate_state(gate) == ("pass", "no regression")
    html = verdicts_section(gate)
    assert "acknowledged: &lt;script&gt;" in html
    assert 'data-outcome="acknowledged"' in html


def test_no_reference_and_error_documents() -> None:
    reference = parse_selection("release=2.5.0")
    document = gate_document(
        None,
        scenario="s",
        candidate_run="run-1",
        reference=reference,
        gated_at=T0,
        status="no_reference",
        message=f"no reference yet {HOSTILE}",
    )
    assert gate_state(document) == ("no-reference", "no reference: not gated")
    html = verdicts_section(document, links={"run-1": "x/report.html"})
    assert "no reference yet &lt;script&gt;" in html
    assert '<a href="x/report.html"><code>run-1</code></a>' in html
    with pytest.raises(ValueError, match="gated document"):
        gate_document(None, scenario="s", candidate_run="r", reference=reference, gated_at=T0)


def test_run_page_shows_the_verdicts_first_when_gated() -> None:
    run_info, summary, records = synthetic_run(models=(HOSTILE,), requests_per_instance=60)
    specs = chart_specs(summary, records)
    plain = render_html(run_info, summary, specs, failure_samples(records), vega_js=FAKE_JS)
    assert 'id="verdicts"' not in plain
    gated = render_html(
        run_info, summary, specs, failure_samples(records), vega_js=FAKE_JS, gate=_gate()
    )
    _assert_safe(gated)
    assert gated.index('id="verdicts"') < gated.index('id="overview"')
    assert '<a href="#verdicts">Verdicts</a>' in gated


def test_build_report_reads_gate_json_and_draws_extra_specs(tmp_path: Path) -> None:
    run_info, summary, records = synthetic_run(requests_per_instance=40)
    (tmp_path / GATE_FILE).write_text(json.dumps(_gate()))
    extra = {"deploy_progress": {"data": {"values": [{"x": 1}]}, "mark": "point"}}
    paths = build_report(tmp_path, run_info, summary, records, png=False, extra_specs=extra)
    page = paths.html.read_text()
    assert 'id="verdicts"' in page
    assert 'data-chart="deploy_progress"' in page
    data = page.split(f'id="{CHART_DATA_ID}">', 1)[1].split("</script>", 1)[0]
    assert list(json.loads(data))[-1] == "deploy_progress"

    given = build_report(
        tmp_path, run_info, summary, records, png=False, gate=_gate(regressed=False)
    )
    assert "regression: 1 KPI" not in given.html.read_text()  # the given gate wins over the file

    with pytest.raises(ValueError, match="timeline"):
        build_report(tmp_path, run_info, summary, records, png=False, extra_specs={"timeline": {}})


def test_a_broken_gate_json_is_a_run_dir_error(tmp_path: Path) -> None:
    from servingperf.errors import RunDirError

    run_info, summary, records = synthetic_run(requests_per_instance=10)
    (tmp_path / GATE_FILE).write_text("[1, 2")
    with pytest.raises(RunDirError, match="gate"):
        build_report(tmp_path, run_info, summary, records, png=False)

"""The sweep's report parts on synthetic sweeps: the chart (stages, knee, SLO-meeting rate,
capacity, verdict lines) compiles with Vega-Lite, the page section and the CLI table show it."""

from __future__ import annotations

from typing import Any

import pytest
import vl_convert
from rich.console import Console

from servingperf.cli.tables import sweep_tables
from servingperf.report.charts import chart_specs
from servingperf.report.html import render_html
from servingperf.report.sweep_charts import KNEE, SLO_RATE, UNSATURATED_RATE, sweep_chart
from tests.fakes.runs import synthetic_run
from tests.fakes.sweeps import synthetic_sweep

HOSTILE = "<script>alert(1)</script>"


def _rows(spec: dict[str, Any], row: str, instance: str) -> list[dict[str, Any]]:
    return [r for r in spec["data"]["values"] if r["row"] == row and r["instance"] == instance]


def test_the_chart_marks_the_stages_the_knee_and_the_slo_rate() -> None:
    sweep = synthetic_sweep({"a": (100.0, 37.0), HOSTILE: (10.0, None)})
    spec = sweep_chart({"sweep": sweep})
    assert spec is not None
    stages = _rows(spec, "stage", "a")
    open_loop = sweep["a"]["stages"][1:]
    assert [s["x"] for s in stages] == [
        pytest.approx(st["offered_rps"], rel=1e-5) for st in open_loop
    ]
    assert [s["y"] for s in stages] == [
        pytest.approx(st["completed_rps"], rel=1e-5) for st in open_loop
    ]
    assert {s["legend"] for s in stages} == {"stage passed", "stage failed the SLOs"}
    rates = {r["legend"]: r["x"] for r in _rows(spec, "rate", "a")}
    assert rates == {
        KNEE: pytest.approx(sweep["a"]["knee_rps"], rel=1e-5),
        SLO_RATE: pytest.approx(sweep["a"]["max_rate_meeting_slos_rps"], rel=1e-5),
    }
    assert _rows(spec, "capacity", "a")[0]["y"] == 100.0
    # without SLOs the rate marked is the highest one not saturated
    assert {r["legend"] for r in _rows(spec, "rate", HOSTILE)} == {KNEE, UNSATURATED_RATE}
    subtitle = spec["title"]["subtitle"]
    assert f"a: {sweep['a']['verdict']}" in subtitle
    assert f"{HOSTILE}: {sweep[HOSTILE]['verdict']}" in subtitle
    svg = vl_convert.vegalite_to_svg(spec)
    assert "Offered rate (req/s)" in svg and "Completed rate (req/s)" in svg


def test_a_sweep_run_gets_the_chart_first_and_other_runs_do_not() -> None:
    _run_info, summary, records = synthetic_run(models=("flan-t5-small",), requests_per_instance=50)
    assert "sweep" not in chart_specs(summary, records)
    summary["sweep"] = synthetic_sweep({"flan-t5-small": (40.0, 30.0)})
    assert next(iter(chart_specs(summary, records))) == "sweep"


def test_the_page_and_the_cli_show_the_verdict_and_the_stages() -> None:
    run_info, summary, _records = synthetic_run(models=("flan-t5-small",), requests_per_instance=50)
    summary["sweep"] = synthetic_sweep({"flan-t5-small": (40.0, 30.0), HOSTILE: (5.0, None)})
    page = render_html(run_info, summary, {}, [], vega_js="")
    assert '<a href="#sweep">Sweep</a>' in page
    section = page[page.index('<section id="sweep">') : page.index('<section id="charts">')]
    assert section.count('class="sweep-verdict"') == 2
    assert summary["sweep"]["flan-t5-small"]["verdict"] in section
    assert HOSTILE not in section and "&lt;script&gt;" in section
    assert section.count("<tr><td>sweep-") == sum(
        len(s["stages"]) for s in summary["sweep"].values()
    )
    assert "sweep" not in render_html(run_info, {**summary, "sweep": {}}, {}, [], vega_js="")
    console = Console(width=200, record=True)
    for table in sweep_tables(summary):
        console.print(table)
    text = " ".join(console.export_text().split())  # a long caption wraps
    assert summary["sweep"]["flan-t5-small"]["verdict"] in text
    assert "probe, 64 users" in text
    assert text.count("sweep-00") == 2

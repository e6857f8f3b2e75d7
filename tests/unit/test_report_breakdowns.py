"""The report's per-turn and per-adapter parts (#18) on summaries the real analysis computes from
hand-made records: the tables show the summary's figures, the charts carry them and compile with
Vega-Lite, names are escaped, and a run without a breakdown gets neither."""

from __future__ import annotations

from typing import Any

import pytest
import vl_convert

from servingperf.analysis.summary import summarize_window
from servingperf.report.breakdowns import breakdown_charts, breakdown_tables
from servingperf.report.charts import chart_specs
from servingperf.report.html import fmt_number, render_html
from tests.fakes.records import table
from tests.unit.test_breakdown import WINDOW, _ok

HOSTILE = "<script>alert(1)</script>"


def _summary(rows: list[object]) -> dict[str, Any]:
    window = summarize_window(table(*rows), WINDOW, None)
    return {"instances": {"inst": window}}


def turns_summary() -> dict[str, Any]:
    return _summary([_ok(i, "m", 0.1 * (t + 1), turn=t) for i, t in enumerate([0, 1, 2, 10, 0, 1])])


def adapters_summary() -> dict[str, Any]:
    rows = [_ok(i, "sql-lora", 0.1) for i in range(3)] + [_ok(9, HOSTILE, 0.4)]
    return _summary(rows)


def test_the_turn_chart_carries_the_summarys_medians_in_turn_order() -> None:
    summary = turns_summary()
    specs = breakdown_charts(summary)
    assert list(specs) == ["by_turn"]
    rows = specs["by_turn"]["data"]["values"]
    by_turn = summary["instances"]["inst"]["by_turn"]
    ttft = [r for r in rows if r["figure"] == "Time to first token"]
    assert [r["group"] for r in ttft] == ["0", "1", "2", "10"]
    for row in ttft:
        expected = by_turn[row["group"]]["stats"]["ttft_s"]
        assert row["p50"] == pytest.approx(expected["p50"], rel=1e-5)
        assert row["n"] == by_turn[row["group"]]["n"]
    assert {r["figure"] for r in rows} == {"Time to first token", "End-to-end latency"}
    svg = vl_convert.vegalite_to_svg(specs["by_turn"])
    assert "<svg" in svg and "Latency per turn" in svg


def test_the_adapter_table_shows_each_model_id_escaped() -> None:
    summary = adapters_summary()
    page = breakdown_tables(summary["instances"]["inst"], fmt_number)
    assert 'data-breakdown="by_model"' in page and "Per model id" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and HOSTILE not in page
    assert '<tr data-group="sql-lora"><td class="text">sql-lora</td><td>3</td>' in page
    assert "0.4" in page  # the hostile adapter's TTFT median
    specs = breakdown_charts(summary)
    assert list(specs) == ["by_model"]
    assert "<svg" in vl_convert.vegalite_to_svg(specs["by_model"])


def test_a_run_without_breakdowns_gets_no_table_and_no_chart() -> None:
    summary = _summary([_ok(0, "m", 0.1), _ok(1, "m", 0.2)])
    assert breakdown_tables(summary["instances"]["inst"], fmt_number) == ""
    assert breakdown_charts(summary) == {}


def test_the_run_page_has_the_breakdown_table_and_chart() -> None:
    from tests.fakes.runs import synthetic_run

    run_info, summary, records = synthetic_run(models=("flan-t5-small",), requests_per_instance=40)
    (name,) = summary["instances"]
    summary["instances"][name]["by_turn"] = turns_summary()["instances"]["inst"]["by_turn"]
    specs = chart_specs(summary, records)
    assert "by_turn" in specs
    page = render_html(run_info, summary, specs, [], vega_js="")
    assert 'data-breakdown="by_turn"' in page
    assert 'data-chart="by_turn"' in page

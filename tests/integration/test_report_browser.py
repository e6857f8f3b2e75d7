"""The run report opened in headless Chromium with the network off (``tests.support.devtools``).

Checks what issue 8 asks of the page: no console error, no uncaught exception, no network request
(only its own ``file://`` URL is allowed), no JavaScript dialog (a hostile model name must never
execute), every chart rendered with data marks (a sweep's and the per-turn and per-adapter
breakdowns too), and the hostile name shown as text. A full-page
screenshot is kept under ``test-artifacts/report/``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from servingperf.report.build import build_report
from tests.fakes.runs import synthetic_run
from tests.fakes.sweeps import synthetic_sweep
from tests.support.devtools import chromium_binary, external_requests, keep_screenshot, open_page
from tests.unit.test_report_breakdowns import adapters_summary, turns_summary

pytestmark = [pytest.mark.browser, pytest.mark.slow]

HOSTILE = "<script>alert(1)</script>"
TIMELINE_POINTS = "#chart-timeline .mark-symbol.role-mark path"


def test_report_renders_offline_without_errors(tmp_path: Path) -> None:
    chromium = chromium_binary()
    run_info, summary, records = synthetic_run(
        models=("flan-t5-small", "flan-t5-large", "bloom-560m", "mpt-7b-instruct2", HOSTILE),
        requests_per_instance=1500,  # 7,500 requests: the point charts are sampled
        labels={"release": "2.5.0", "note": HOSTILE},
        error_message=f"upstream said {HOSTILE} & gave up",
    )
    # a sweep run's summary (also a hostile instance name): the sweep chart comes first
    summary["sweep"] = synthetic_sweep({"flan-t5-small": (40.0, 30.0), HOSTILE: (12.0, None)})
    # conversation turns and LoRA adapters (one of them hostile): their tables and charts
    first = next(iter(summary["instances"]))
    summary["instances"][first]["by_turn"] = turns_summary()["instances"]["inst"]["by_turn"]
    summary["instances"][first]["by_model"] = adapters_summary()["instances"]["inst"]["by_model"]
    paths = build_report(tmp_path, run_info, summary, records, png=False)

    result = asyncio.run(open_page(chromium, paths.html.resolve().as_uri(), hover=TIMELINE_POINTS))
    keep_screenshot(result, "report", "report.png")

    assert result.log.dialogs == [], "a string from the run was executed as script"
    assert result.log.console_errors == []
    assert result.log.exceptions == []
    assert result.log.log_errors == []
    external = external_requests(result.log)
    assert external == [], f"the page made network requests: {external}"
    assert result.failed == "0"
    assert result.rendered == "8"
    assert set(result.marks) == {
        "sweep",
        "latency_per_token",
        "per_token_distribution",
        "throughput",
        "mean_latency",
        "timeline",
        "by_turn",
        "by_model",
    }
    for name, marks in result.marks.items():
        assert marks > 0, f"chart {name} rendered without data marks"
    assert result.marks["timeline"] >= 5000  # the sample, plus the window band
    assert result.marks["sweep"] >= 2 * 3  # per panel: the lines, the rules, the stages
    assert HOSTILE in result.text  # shown as text: model, label, error message, sweep instance
    assert summary["sweep"]["flan-t5-small"]["verdict"] in result.text
    # Hover reaches the request: the tooltip names it and its figures.
    assert "Request" in result.tooltip
    assert "Status" in result.tooltip
    assert "Time to first token (s)" in result.tooltip
    assert "error (" in result.tooltip  # status with its error kind
    assert "undefined" not in result.tooltip  # figures that do not apply show as a dash
    assert result.screenshot_png.startswith(b"\x89PNG")
    assert len(result.screenshot_png) > 50_000

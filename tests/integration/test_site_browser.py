"""The index page and a gated run page, opened in headless Chromium with the network off.

A store is filled with a release history whose model, labels and one release are named
``<script>alert(1)</script>``, plus a many-model scenario (load times across releases); one run is
gated by the ``servingperf ci`` gating step and its report drawn with the verdicts. Each page must
load with no console error, no exception, no network request and no dialog, draw every chart
with data marks, show the hostile name as text, and answer a hover with a tooltip. Screenshots
are kept under ``test-artifacts/site/``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from servingperf.analysis.gate import GateSpec
from servingperf.cli.ci import gate_candidate
from servingperf.continuous.selection import parse_selection
from servingperf.continuous.site import write_gate_document, write_json_file, write_site
from servingperf.report.build import GATE_FILE, REPORT_FILE, build_report
from servingperf.results.rundir import RunDir
from servingperf.results.store import open_store
from tests.fakes.runs import record_release_history
from tests.support.devtools import (
    PageResult,
    chromium_binary,
    external_requests,
    keep_screenshot,
    open_page,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

HOSTILE = "<script>alert(1)</script>"
RELEASES = {"2.3.0": 1.0, "2.4.0": 1.0, "2.5.0": 1.0, "2.6.0": 1.02, "2.7.0": 1.3, HOSTILE: 1.0}


def _report(run_dir: RunDir) -> Path:
    info = run_dir.read_info()
    paths = build_report(
        run_dir.path, info.to_json(), run_dir.read_summary(), run_dir.read_records(), png=False
    )
    return paths.html


def _build_site(tmp: Path) -> tuple[Path, Path]:
    """(index page, gated run page)."""
    site = tmp / "site"
    with open_store(str(tmp / "results.db")) as store:
        runs = record_release_history(
            store,
            tmp / "runs",
            RELEASES,
            models=("flan-t5-small", HOSTILE),
            requests_per_instance=400,
            labels={"note": HOSTILE},
        )
        record_release_history(
            store,
            tmp / "many",
            {"2.5.0": 1.0, "2.6.0": 1.0, "2.7.0": 1.0},
            load_times={"2.5.0": 3.0, "2.6.0": 3.2, "2.7.0": 5.0},
            requests_per_instance=60,
            scenario="many-model-demo",
            kind="many-model",
            first_run=20,
        )
        slow = runs[4]  # release 2.7.0, 30% slower
        run = store.get_run(slow.read_info().run_id)
        assert run is not None
        document, report = gate_candidate(
            store, parse_selection("release=2.5.0"), run, GateSpec(), (), require_reference=False
        )
        assert report is not None
        write_json_file(slow.path / GATE_FILE, document)
        write_gate_document(site, document)
        for run_dir in runs:
            _report(run_dir)
        index = write_site(store, site, png=False).index
    return index, slow.path / REPORT_FILE


def _check(result: PageResult, expected_charts: int) -> None:
    assert result.log.dialogs == [], "a string from the store was executed as script"
    assert result.log.console_errors == []
    assert result.log.exceptions == []
    assert result.log.log_errors == []
    external = external_requests(result.log)
    assert external == [], f"the page made network requests: {external}"
    assert result.failed == "0"
    assert result.rendered == str(expected_charts)
    assert len(result.marks) == expected_charts
    for name, marks in result.marks.items():
        assert marks > 0, f"chart {name} rendered without data marks"
    assert HOSTILE in result.text
    assert result.screenshot_png.startswith(b"\x89PNG")


def test_index_and_gated_run_page_render_offline(tmp_path: Path) -> None:
    chromium = chromium_binary()
    index, run_page = _build_site(tmp_path)

    result = asyncio.run(
        open_page(
            chromium,
            index.resolve().as_uri(),
            hover="[id$='--release_throughput'] .mark-symbol.role-mark path",
        )
    )
    keep_screenshot(result, "site", "index.png")
    _check(result, expected_charts=3 + 4)  # single-model scenario; many-model with load times
    assert any(name.endswith("--release_load_times") for name in result.marks)
    assert "Latest gate" in result.text
    assert "regression:" in result.text
    assert "Releases of many-model-demo" in result.text
    assert "Run" in result.tooltip  # a point is one run: hover names it
    assert "Release" in result.tooltip

    result = asyncio.run(
        open_page(
            chromium,
            run_page.resolve().as_uri(),
            hover="#chart-timeline .mark-symbol.role-mark path",
        )
    )
    keep_screenshot(result, "site", "gated-run.png")
    _check(result, expected_charts=5)
    assert "Gate verdicts" in result.text
    assert "regressed" in result.text
    assert "Request" in result.tooltip

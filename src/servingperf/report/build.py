"""Report building: from a run directory's contents to ``report.html`` and ``charts/*.png`` in it.

Terms. The *inputs* are what the scenario runner wrote (``run.json`` as ``run_info``,
``summary.json`` as ``summary``, the request records as one pyarrow table); the report reads
nothing else, so it can be redrawn long after the run (``servingperf report RUN_DIR``).
:func:`chart_specs` is re-exported here as the pure entry point for callers that want the specs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from servingperf.errors import RunDirError
from servingperf.report.charts import Spec, chart_specs
from servingperf.report.errordigest import failure_samples
from servingperf.report.html import render_html, vega_javascript
from servingperf.report.png import DEFAULT_SCALE, PngChart, write_pngs

__all__ = ["CHARTS_DIR", "REPORT_FILE", "ReportPaths", "Spec", "build_report", "chart_specs"]

REPORT_FILE = "report.html"
CHARTS_DIR = "charts"


@dataclass(frozen=True, slots=True)
class ReportPaths:
    """What :func:`build_report` wrote, with the timings a caller may log."""

    html: Path
    pngs: dict[str, Path]
    png_charts: dict[str, PngChart]
    html_bytes: int
    html_s: float

    @property
    def png_s(self) -> float:
        return sum(chart.render_s for chart in self.png_charts.values())


def build_report(
    run_dir: Path,
    run_info: Mapping[str, Any],
    summary: Mapping[str, Any],
    records: pa.Table,
    *,
    png: bool = True,
    png_scale: float = DEFAULT_SCALE,
) -> ReportPaths:
    """Write ``run_dir/report.html`` and, unless ``png`` is false, ``run_dir/charts/<name>.png``.

    Raises ``RunDirError`` when ``run_dir`` is missing or a file cannot be written, or when the
    records lack a column the charts need.
    """
    if not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} does not exist or is not a directory")
    started = time.perf_counter()
    specs = chart_specs(summary, records)
    page = render_html(
        run_info, summary, specs, failure_samples(records), vega_js=vega_javascript()
    )
    html_path = run_dir / REPORT_FILE
    data = page.encode("utf-8")
    try:
        html_path.write_bytes(data)
    except OSError as exc:
        raise RunDirError(f"cannot write the report {html_path}: {exc}") from exc
    html_s = time.perf_counter() - started
    charts = write_pngs(specs, run_dir / CHARTS_DIR, png_scale) if png else {}
    return ReportPaths(
        html=html_path,
        pngs={name: chart.path for name, chart in charts.items()},
        png_charts=charts,
        html_bytes=len(data),
        html_s=html_s,
    )

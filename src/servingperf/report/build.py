"""Report building: from a run directory's contents to ``report.html`` and ``charts/*.png`` in it.

Terms. The *inputs* are what the scenario runner wrote (``run.json`` as ``run_info``,
``summary.json`` as ``summary``, the request records as one pyarrow table); the report reads
nothing else, so it can be redrawn long after the run (``servingperf report RUN_DIR``).
The *gate document* (``gate.json`` in the run directory, written by ``servingperf ci``) adds the
verdicts section; *extra specs* are charts other modules draw for the run (many-model and
multi-model charts), shown after the single-model charts and written as PNGs like them.
:func:`chart_specs` is re-exported here as the pure entry point for callers that want the specs.
"""

from __future__ import annotations

import json
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

__all__ = [
    "CHARTS_DIR",
    "GATE_FILE",
    "REPORT_FILE",
    "ReportPaths",
    "Spec",
    "build_report",
    "chart_specs",
    "read_gate",
]

REPORT_FILE = "report.html"
CHARTS_DIR = "charts"
GATE_FILE = "gate.json"


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


def read_gate(run_dir: Path) -> dict[str, Any] | None:
    """The run's gate document (``run_dir/gate.json``), or None when the run was never gated.

    Raises ``RunDirError`` when the file exists but is not a JSON object.
    """
    path = run_dir / GATE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{path}: unreadable gate result: {exc}") from exc
    if not isinstance(data, dict):
        raise RunDirError(f"{path}: not a JSON object")
    return data


def build_report(
    run_dir: Path,
    run_info: Mapping[str, Any],
    summary: Mapping[str, Any],
    records: pa.Table,
    *,
    png: bool = True,
    png_scale: float = DEFAULT_SCALE,
    gate: Mapping[str, Any] | None = None,
    extra_specs: Mapping[str, Spec] | None = None,
) -> ReportPaths:
    """Write ``run_dir/report.html`` and, unless ``png`` is false, ``run_dir/charts/<name>.png``.

    ``gate``: the gate document to show as the verdicts section; when None, the run directory's
    ``gate.json`` is read if there is one, so a redrawn report keeps the verdicts ``servingperf
    ci`` recorded. ``extra_specs``: more charts by name (the PNG file stem); a name the
    single-model charts already use is a ``ValueError`` (a bug of the caller, not of the run).
    Raises ``RunDirError`` when ``run_dir`` is missing or a file cannot be written, or when the
    records lack a column the charts need.
    """
    if not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} does not exist or is not a directory")
    started = time.perf_counter()
    specs = chart_specs(summary, records)
    clash = sorted(set(specs) & set(extra_specs or {}))
    if clash:
        raise ValueError(f"extra chart name(s) {', '.join(clash)} already used by the run report")
    specs.update({name: dict(spec) for name, spec in (extra_specs or {}).items()})
    if gate is None:
        gate = read_gate(run_dir)
    page = render_html(
        run_info, summary, specs, failure_samples(records), vega_js=vega_javascript(), gate=gate
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

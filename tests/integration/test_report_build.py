"""build_report end to end on a synthetic run: report.html and valid PNG charts in the run directory."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import vl_convert

from servingperf.errors import RunDirError
from servingperf.report.build import CHARTS_DIR, REPORT_FILE, build_report
from servingperf.report.charts import chart_specs
from servingperf.report.png import PNG_MAGIC
from tests.fakes.runs import synthetic_run

NAMES = {"latency_per_token", "per_token_distribution", "throughput", "mean_latency", "timeline"}


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which a valid PNG has right after the magic."""
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def test_build_report_writes_the_page_and_a_png_per_chart(tmp_path: Path) -> None:
    run_info, summary, records = synthetic_run(
        models=("flan-t5-small", "flan-t5-large", "bloom-560m", "mpt-7b-instruct2"),
        requests_per_instance=1500,
    )
    paths = build_report(tmp_path, run_info, summary, records)

    assert paths.html == tmp_path / REPORT_FILE
    page = paths.html.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert paths.html_bytes == len(page.encode("utf-8"))
    assert paths.html_bytes < 4_000_000  # ~0.9 MB of Vega + capped chart data
    assert set(paths.pngs) == NAMES
    for name, path in paths.pngs.items():
        assert path == tmp_path / CHARTS_DIR / f"{name}.png"
        data = path.read_bytes()
        width, height = _png_size(data)
        assert width >= 400, name
        assert height >= 150, name
        assert len(data) > 20_000, name  # a chart with marks and text, not an empty canvas
        assert paths.png_charts[name].size_bytes == len(data)
        assert paths.png_charts[name].render_s > 0
    assert paths.png_s == pytest.approx(sum(c.render_s for c in paths.png_charts.values()))


def test_specs_compile_to_vega(tmp_path: Path) -> None:
    _, summary, records = synthetic_run(requests_per_instance=200)
    for name, spec in chart_specs(summary, records).items():
        vega = vl_convert.vegalite_to_vega(spec)
        assert vega["marks"], name


def test_build_report_without_pngs(tmp_path: Path) -> None:
    run_info, summary, records = synthetic_run(requests_per_instance=50)
    paths = build_report(tmp_path, run_info, summary, records, png=False)
    assert paths.html.is_file()
    assert paths.pngs == {}
    assert not (tmp_path / CHARTS_DIR).exists()


def test_missing_run_directory_is_a_run_dir_error(tmp_path: Path) -> None:
    run_info, summary, records = synthetic_run(requests_per_instance=10)
    with pytest.raises(RunDirError, match="does not exist"):
        build_report(tmp_path / "nope", run_info, summary, records)


def test_unwritable_chart_path_is_a_run_dir_error(tmp_path: Path) -> None:
    run_info, summary, records = synthetic_run(requests_per_instance=10)
    (tmp_path / CHARTS_DIR).write_text("a file where the chart directory should be")
    with pytest.raises(RunDirError, match="chart directory"):
        build_report(tmp_path, run_info, summary, records)

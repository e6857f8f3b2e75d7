"""Chart spec builders on synthetic runs: fields, units, sampling, box statistics from all values."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from servingperf.analysis import metrics
from servingperf.errors import RunDirError
from servingperf.model.metrics import METRICS
from servingperf.report.boxstats import box_stats
from servingperf.report.charts import POINT_CAP, chart_specs
from servingperf.report.points import request_figures, sample_indices
from tests.fakes.records import record, table
from tests.fakes.runs import synthetic_run

NAMES = ["latency_per_token", "per_token_distribution", "throughput", "mean_latency", "timeline"]


def _walk(node: Any) -> list[dict[str, Any]]:
    """Every dict in a spec, depth first."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found += _walk(value)
    elif isinstance(node, list):
        for value in node:
            found += _walk(value)
    return found


def _point_values(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-request rows of a point chart (the layer whose mark is a point)."""
    for node in _walk(spec):
        mark = node.get("mark")
        if isinstance(mark, dict) and mark.get("type") == "point":
            values: list[dict[str, Any]] = (node.get("data") or spec["data"])["values"]
            return values
    raise AssertionError("no point layer")


def _subtitle(spec: dict[str, Any]) -> str:
    subtitle = spec["title"]["subtitle"]
    return " | ".join(subtitle) if isinstance(subtitle, list) else str(subtitle)


def _box_rows(spec: dict[str, Any], metric: str) -> dict[str, dict[str, Any]]:
    title = METRICS[metric].title
    panel = next(p for p in spec["hconcat"] if p["title"]["text"] == title)
    return {row["model"]: row for row in panel["data"]["values"]}


@pytest.fixture(scope="module")
def run() -> tuple[dict[str, Any], dict[str, Any], pa.Table]:
    return synthetic_run(requests_per_instance=400)


def test_every_chart_has_a_title_and_unit_axis_titles(run: Any) -> None:
    _, summary, records = run
    specs = chart_specs(summary, records)
    assert list(specs) == NAMES
    units = {m.unit for m in METRICS.values()}
    for name, spec in specs.items():
        assert spec["title"]["text"], name
        json.dumps(spec, allow_nan=False)  # plain JSON: no NaN, no numpy scalars
        axis_titles = [
            channel["title"]
            for node in _walk(spec)
            for key, channel in node.items()
            if key in ("x", "y") and isinstance(channel, dict) and "title" in channel
        ]
        quantitative = [
            channel["title"]
            for node in _walk(spec)
            for key, channel in node.items()
            if key in ("x", "y")
            and isinstance(channel, dict)
            and channel.get("type") == "quantitative"
            and "title" in channel
        ]
        assert axis_titles, name
        for title in quantitative:
            assert any(title.endswith(f"({unit})") for unit in units), (name, title)


def test_latency_per_token_plots_ntpot_against_requested_tokens(run: Any) -> None:
    _, summary, records = run
    spec = chart_specs(summary, records)["latency_per_token"]
    assert spec["encoding"]["y"]["field"] == "ntpot_s"
    assert spec["encoding"]["x"]["title"] == "Requested output tokens (tokens)"
    assert spec["encoding"]["color"]["field"] == "model"
    assert spec["encoding"]["color"]["scale"]["domain"] == ["flan-t5-small", "mpt-7b-instruct2"]
    values = _point_values(spec)
    measured = sum(e["counts"]["measured"] for e in summary["instances"].values())
    assert len(values) == measured  # below the cap: every measured request
    by_id = {r["request_id"]: r for r in records.to_pylist()}
    for row in values[:50]:
        source = by_id[row["request_id"]]
        assert row["x"] == source["requested_output_tokens"]
        expected = (source["t_end_s"] - source["t_sent_s"]) / source["output_tokens"]
        assert row["ntpot_s"] == pytest.approx(expected, rel=1e-3)
        assert source["status"] == "ok"


def test_latency_per_token_falls_back_to_output_tokens_when_none_requested() -> None:
    rows = [
        record(
            request_id=f"r{i}",
            output_tokens=10 + i,
            t_sent_s=1.0,
            t_first_token_s=1.1,
            t_end_s=2.0 + i / 10,
        )
        for i in range(5)
    ]
    spec = chart_specs({"instances": {}}, table(*rows))["latency_per_token"]
    assert "none requested" in spec["encoding"]["x"]["title"]
    assert [r["x"] for r in _point_values(spec)] == [10, 11, 12, 13, 14]


def test_point_charts_honour_the_cap_deterministically(run: Any) -> None:
    _, summary, records = run
    specs = chart_specs(summary, records, cap=100)
    again = chart_specs(summary, records, cap=100)
    for name in ("latency_per_token", "timeline"):
        values = _point_values(specs[name])
        assert len(values) == 100
        assert values == _point_values(again[name])
        assert "sampled 100 of" in _subtitle(specs[name])
    assert POINT_CAP == 5000


def test_timeline_sample_keeps_every_failure_drawn_last(run: Any) -> None:
    _, summary, records = run
    spec = chart_specs(summary, records, cap=100)["timeline"]
    values = _point_values(spec)
    failed = [r for r in records.to_pylist() if r["status"] == "error"]
    assert failed
    drawn_failed = [v for v in values if v["status"] == "error"]
    assert {v["request_id"] for v in drawn_failed} == {r["request_id"] for r in failed}
    statuses = [v["status"] for v in values]
    assert statuses == sorted(statuses, key=lambda s: s != "ok")  # ok first, failures on top
    assert "all failed requests kept" in _subtitle(spec)
    shape = spec["layer"][1]["encoding"]["shape"]
    assert shape["field"] == "status"
    assert shape["scale"]["domain"] == ["ok", "error", "cut"]
    assert len(set(shape["scale"]["range"])) == 3


def test_timeline_points_carry_the_tooltip_fields_and_zoom(run: Any) -> None:
    _, summary, records = run
    spec = chart_specs(summary, records)["timeline"]
    points = spec["layer"][1]
    assert points["params"] == [{"name": "zoom", "select": "interval", "bind": "scales"}]
    tooltip = {t["title"]: t["field"] for t in points["encoding"]["tooltip"]}
    for title in (
        "Request",
        "Instance",
        "Status",
        "Time to first token (s)",
        "Output tokens (tokens)",
    ):
        assert title in tooltip
    # Every tooltip field exists: in the rows, or derived by a transform.
    derived = {t["as"] for t in points["transform"] if "as" in t} | {"model"}  # lookup adds model
    row_fields = {key for row in points["data"]["values"] for key in row}
    assert set(tooltip.values()) <= row_fields | derived
    assert points["transform"][0]["lookup"] == "instance"
    assert points["encoding"]["color"]["field"] == "instance"
    ok_row = next(v for v in points["data"]["values"] if v["status"] == "ok")
    assert {"request_id", "instance", "t_sent_s", "elapsed_s", "ttft_s", "tpot_s"} <= set(ok_row)
    # The measurement window band spans the summary's window.
    window = next(iter(summary["instances"].values()))["window"]
    assert spec["layer"][0]["data"]["values"] == [
        {"start_s": window["start_s"], "end_s": window["end_s"]}
    ]
    cut_without_end = sum(
        1 for r in records.to_pylist() if r["t_end_s"] is None or r["t_sent_s"] is None
    )
    assert f"{cut_without_end:,} requests without an end" in _subtitle(spec)


def test_box_statistics_come_from_every_measured_value_not_the_sample(run: Any) -> None:
    _, summary, records = run
    spec = chart_specs(summary, records, cap=10)["per_token_distribution"]
    measured = request_figures(records, summary).measured
    for metric, compute in (("tpot_s", metrics.tpot), ("ntpot_s", metrics.ntpot)):
        rows = _box_rows(spec, metric)
        all_values = compute(records)
        for model in ("flan-t5-small", "mpt-7b-instruct2"):
            row = rows[model]
            entry = summary["instances"][model]
            # Same population as the summary's statistics: n matches the KPI table.
            assert row["n"] == entry["stats"][metric]["n"] > 10
            mask = measured & (np.asarray(records.column("model").to_pylist()) == model)
            values = all_values[mask]
            q1, median, q3 = np.percentile(values, [25, 50, 75])
            assert row["q1"] == pytest.approx(q1, rel=1e-5)
            assert row["median"] == pytest.approx(median, rel=1e-5)
            assert row["q3"] == pytest.approx(q3, rel=1e-5)
            assert row["median"] == pytest.approx(entry["stats"][metric]["p50"], rel=1e-5)
            assert row["max"] == pytest.approx(entry["stats"][metric]["max"], rel=1e-5)


def test_box_stats_whiskers_and_outliers() -> None:
    stats = box_stats([*range(1, 11), 100.0, float("nan")])
    assert stats is not None
    assert stats.n == 11
    assert (stats.q1, stats.median, stats.q3) == (3.5, 6.0, 8.5)
    assert stats.whisker_low == 1.0
    assert stats.whisker_high == 10.0  # 100 is beyond Q3 + 1.5 IQR = 16
    assert stats.outliers == 1
    assert stats.max == 100.0
    assert box_stats([float("nan")]) is None
    assert box_stats([]) is None


def test_summary_bars_read_the_summary(run: Any) -> None:
    _, summary, records = run
    specs = chart_specs(summary, records)
    tput = {r["instance"]: r["value"] for r in specs["throughput"]["data"]["values"]}
    mean = {r["instance"]: r["value"] for r in specs["mean_latency"]["data"]["values"]}
    for name, entry in summary["instances"].items():
        assert tput[name] == pytest.approx(entry["throughput"]["output_tps"], rel=1e-5)
        assert mean[name] == pytest.approx(entry["stats"]["e2e_s"]["mean"], rel=1e-5)
    assert specs["throughput"]["encoding"]["x"]["title"] == "Output token throughput (tokens/s)"


def test_sample_indices() -> None:
    candidates = np.ones(1000, dtype=bool)
    candidates[::2] = False
    keep = np.zeros(1000, dtype=bool)
    keep[[1, 3, 999]] = True
    chosen = sample_indices(candidates, 50, keep=keep)
    assert len(chosen) == 50
    assert {1, 3, 999} <= set(chosen.tolist())
    assert all(candidates[chosen])
    assert list(chosen) == sorted(chosen)
    assert np.array_equal(chosen, sample_indices(candidates, 50, keep=keep))
    assert len(sample_indices(candidates, 2, keep=keep)) == 2  # more to keep than room
    # Kept rows take at most keep_share of the cap, unless nothing else can fill it.
    many = candidates & (np.arange(1000) < 600)  # 300 candidates flagged to keep, 200 others
    half = sample_indices(candidates, 100, keep=many)
    assert int(many[half].sum()) == 50
    assert int(many[sample_indices(candidates, 100, keep=many, keep_share=0.2)].sum()) == 20
    assert int(many[sample_indices(candidates, 450, keep=many)].sum()) == 250  # 200 others only
    assert np.array_equal(sample_indices(candidates, 10_000), np.flatnonzero(candidates))
    with pytest.raises(ValueError, match="cap"):
        sample_indices(candidates, -1)


def test_timeline_failures_take_at_most_half_the_sample() -> None:
    _, summary, records = synthetic_run(requests_per_instance=400, error_every=2)
    spec = chart_specs(summary, records, cap=100)["timeline"]
    values = _point_values(spec)
    failed_total = sum(1 for r in records.to_pylist() if r["status"] == "error")
    assert sum(v["status"] == "error" for v in values) == 50
    assert f"(50 of {failed_total:,} failed requests)" in _subtitle(spec)


def test_records_missing_a_column_are_a_run_dir_error(run: Any) -> None:
    _, summary, records = run
    with pytest.raises(RunDirError, match="t_end_s"):
        chart_specs(summary, records.drop_columns(["t_end_s"]))


def test_empty_records_give_empty_charts() -> None:
    specs = chart_specs({"instances": {}}, table())
    assert list(specs) == NAMES
    assert _point_values(specs["timeline"]) == []
    json.dumps(specs, allow_nan=False)

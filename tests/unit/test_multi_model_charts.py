"""Multi-model chart specs: traceable timeline points, bars with intervals, specs that render."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from servingperf.analysis.multi_model import summarize_multi_model
from servingperf.analysis.summary import summarize_run
from servingperf.model.specs import MultiModelSpec
from servingperf.report.multi_model_charts import multi_model_charts, timeline
from servingperf.report.png import PNG_MAGIC, render_png
from tests.fakes.records import record, table
from tests.unit.test_multi_model_analysis import synthetic_run


@pytest.fixture(scope="module")
def run() -> tuple[dict[str, Any], pa.Table]:
    info, records = synthetic_run({"fast": 0.020, "slow": 0.034}, step_alone=0.020)
    summary = summarize_run(info, records)
    summary["multi_model"] = summarize_multi_model(
        info, records, MultiModelSpec(bootstrap_samples=200)
    )
    return summary, records


def _layer_with(spec: dict[str, Any], field: str) -> dict[str, Any]:
    return next(
        layer for layer in spec["layer"] if any(field in row for row in layer["data"]["values"])
    )


def test_every_timeline_point_is_a_request_record(run: tuple[dict[str, Any], pa.Table]) -> None:
    summary, records = run
    points = _layer_with(timeline(summary, records), "request_id")["data"]["values"]
    by_id = {row["request_id"]: row for row in records.to_pylist()}
    assert len(by_id) == records.num_rows  # request ids are unique
    ended = sum(1 for r in by_id.values() if r["t_end_s"] is not None)
    assert len(points) == ended  # below the cap: every request that ended is drawn
    for point in points:
        source = by_id[point["request_id"]]
        assert point["instance"] == source["instance"]
        assert point["phase"] == source["phase"]
        assert point["status"] == source["status"]
        assert point["t_sent_s"] == pytest.approx(source["t_sent_s"], rel=1e-6)
        elapsed = source["t_end_s"] - source["t_sent_s"]
        assert point["elapsed_s"] == pytest.approx(elapsed, rel=1e-4)


def test_timeline_shades_and_labels_both_phases(run: tuple[dict[str, Any], pa.Table]) -> None:
    summary, records = run
    spec = timeline(summary, records)
    bands = [row for layer in spec["layer"] for row in layer["data"]["values"] if "kind" in row]
    phases = {b["label"] for b in bands if b["kind"] == "phase"}
    slots = {b["label"] for b in bands if b["kind"] == "slot"}
    assert phases == {"concurrent phase", "sequential phase"}
    assert slots == {"fast", "slow"}
    assert any("saturated" in line for line in spec["title"]["subtitle"])


def test_a_capped_timeline_keeps_failures_and_says_it_sampled() -> None:
    rows = [
        record(
            request_id=f"r{i}",
            instance="a",
            phase="concurrent",
            t_sent_s=float(i),
            t_end_s=i + 0.5,
            status="error" if i % 50 == 0 else "ok",
            error_kind="http_status" if i % 50 == 0 else None,
        )
        for i in range(500)
    ]
    records = table(*rows)
    spec = timeline({}, records, cap=100)
    points = _layer_with(spec, "request_id")["data"]["values"]
    assert len(points) == 100
    assert sum(1 for p in points if p["status"] == "error") == 10
    assert "sampled 100 of 500 requests" in spec["title"]["subtitle"][0]


def test_comparison_bars_carry_both_phases_and_their_intervals(
    run: tuple[dict[str, Any], pa.Table],
) -> None:
    summary, records = run
    charts = multi_model_charts(summary, records)
    rows = charts["multi_model_throughput"]["data"]["values"]
    assert {(r["instance"], r["phase"]) for r in rows} == {
        (i, p) for i in ("fast", "slow") for p in ("concurrent", "sequential")
    }
    for row in rows:
        assert row["ci_low"] <= row["value"] <= row["ci_high"]
    slow = next(r for r in rows if r["instance"] == "slow")
    assert slow["instance_verdict"] == "saturated"
    latency = charts["multi_model_latency"]["data"]["values"]
    assert all(r["value"] > 0 for r in latency)
    ratios = charts["multi_model_ratios"]["data"]["values"]
    assert len(ratios) == 2 * 5  # every figure of both instances


def test_the_specs_render(run: tuple[dict[str, Any], pa.Table]) -> None:
    summary, records = run
    for name, spec in multi_model_charts(summary["multi_model"], records).items():
        assert render_png(spec, scale=1.0).startswith(PNG_MAGIC), name


def test_a_summary_without_its_multi_model_part_still_draws_the_timeline(
    run: tuple[dict[str, Any], pa.Table],
) -> None:
    summary, records = run
    bare = {k: v for k, v in summary.items() if k != "multi_model"}
    charts = multi_model_charts(bare, records)
    points = _layer_with(charts["multi_model_timeline"], "request_id")["data"]["values"]
    assert len(points) > 0
    instances = charts["multi_model_timeline"]["layer"][-1]["encoding"]["color"]["scale"]["domain"]
    assert sorted(instances) == ["fast", "slow"]
    assert charts["multi_model_throughput"]["data"]["values"] == []

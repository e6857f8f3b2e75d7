"""The many-model chart specs: their data matches the deployments, and vl-convert draws them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from servingperf.analysis.loadtimes import summarize_deployments
from servingperf.model.deployments import DeploymentRecord
from servingperf.report.many_model_charts import many_model_charts
from servingperf.report.png import PNG_MAGIC, render_png
from servingperf.results.schema import DEPLOYMENT_SCHEMA

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def deployments(n: int = 24, failed: int = 2, every_s: float = 40.0) -> pa.Table:
    rng = np.random.default_rng(5)
    rows: list[DeploymentRecord] = []
    for i in range(n):
        created = T0 + timedelta(seconds=every_s * i)
        never = i >= n - failed
        load = float(40.0 + 10.0 * rng.random())
        rows.append(
            DeploymentRecord(
                instance=f"m-{i // 12 + 1:02d}-{i % 12 + 1:02d}",
                namespace=f"ns-{i // 12 + 1:02d}",
                model="flan-t5-small",
                platform="local",
                endpoint=None,
                clock_source="harness",
                created_at=created,
                ready_at=None if never else created + timedelta(seconds=load),
                t_created_s=every_s * i,
                t_ready_s=None if never else every_s * i + load,
                t_first_validated_s=None,
                t_deleted_s=None,
                status="failed" if never else "deleted",
                failure_reason="not ready after 300 s" if never else None,
            )
        )
    columns: dict[str, list[Any]] = {
        name: [getattr(r, name) for r in rows] for name in DEPLOYMENT_SCHEMA.names
    }
    return pa.Table.from_pydict(columns, schema=DEPLOYMENT_SCHEMA)


@pytest.fixture(scope="module")
def charts() -> dict[str, dict[str, Any]]:
    table = deployments()
    return many_model_charts({"deployments": summarize_deployments(table)}, table)


def test_charts_are_named_and_titled_with_units(charts: dict[str, dict[str, Any]]) -> None:
    assert list(charts) == ["deploy_progress", "load_time_distribution", "load_time_trend"]
    for spec in charts.values():
        assert spec["title"]["text"]
        json.dumps(spec, allow_nan=False)  # data inline, JSON-clean
        text = json.dumps(spec)
        assert "(s)" in text or "(min)" in text  # axis titles carry units
        assert '"url"' not in text  # nothing fetched


def test_progress_curves_count_created_and_ready(charts: dict[str, dict[str, Any]]) -> None:
    values = charts["deploy_progress"]["data"]["values"]
    created = [v["count"] for v in values if v["curve"] == "created"]
    ready = [v["count"] for v in values if v["curve"] == "ready"]
    assert max(created) == 24
    assert max(ready) == 22
    assert created == sorted(created)
    assert ready == sorted(ready)
    # 24 creations 40 s apart last more than 10 minutes: the axis is in minutes
    assert charts["deploy_progress"]["encoding"]["x"]["title"].endswith("(min)")


def test_distribution_marks_the_six_quantiles(charts: dict[str, dict[str, Any]]) -> None:
    layers = charts["load_time_distribution"]["layer"]
    ecdf = layers[0]["data"]["values"]
    assert ecdf[-1]["percent"] == 100.0
    assert len(ecdf) == 23
    names = [m["name"] for m in layers[1]["data"]["values"]]
    assert names == ["min", "Q1", "median", "Q3", "P90", "max"]


def test_trend_has_the_fitted_line(charts: dict[str, dict[str, Any]]) -> None:
    layers = charts["load_time_trend"]["layer"]
    assert len(layers[0]["data"]["values"]) == 22
    fit = layers[-1]["data"]["values"]
    assert [row["order"] for row in fit] == [0.0, 21.0]


def test_empty_run_still_gives_drawable_charts() -> None:
    table = DEPLOYMENT_SCHEMA.empty_table()
    specs = many_model_charts(summarize_deployments(table), table)
    for spec in specs.values():
        json.dumps(spec, allow_nan=False)


@pytest.mark.slow
def test_vl_convert_draws_every_chart(charts: dict[str, dict[str, Any]]) -> None:
    for spec in charts.values():
        assert render_png(spec, scale=1.0).startswith(PNG_MAGIC)

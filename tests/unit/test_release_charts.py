"""Charts across releases: which releases are drawn, boxes from every value, bars from the runs,
the reference highlighted, load times only when measured, user strings only as data."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import vl_convert

from servingperf.report.release_charts import (
    ReleaseHistory,
    ReleaseRunFigure,
    ReleaseSamples,
    chart_releases,
    release_chart_specs,
)

HOSTILE = "<script>alert(1)</script>"
RELEASES = ("2.4.0", "2.5.0", "2.6.0", HOSTILE)


def _history(
    *, reference: str | None = "2.5.0", load_times: bool = False, instances: int = 2
) -> ReleaseHistory:
    rng = np.random.default_rng(5)
    samples = []
    figures = []
    for r, release in enumerate(RELEASES):
        for i in range(instances):
            name = f"model-{i}" if i else HOSTILE
            scale = 1.3 if release == HOSTILE else 1.0
            samples.append(
                ReleaseSamples(
                    release,
                    name,
                    rng.lognormal(np.log(0.01 * scale), 0.2, 400 + r),
                    rng.lognormal(np.log(0.02 * scale), 0.2, 300 + r),
                    runs=2,
                )
            )
            for k in range(2):
                figures.append(
                    ReleaseRunFigure(
                        release, name, f"run-{r}-{i}-{k}", 1000.0 / scale + k * 10, 1.5 * scale + k
                    )
                )
    loads = {"2.6.0": rng.lognormal(np.log(3.0), 0.3, 12)} if load_times else {}
    return ReleaseHistory("demo", RELEASES, reference, tuple(samples), tuple(figures), loads)


def _layers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    panels = spec.get("hconcat", [spec])
    return [layer for panel in panels for layer in panel["layer"]]


def _expressions(value: Any) -> list[str]:
    """Every Vega expression string of a spec (tests, calculations, filters)."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("test", "calculate", "filter", "expr") and isinstance(item, str):
                found.append(item)
            found += _expressions(item)
    elif isinstance(value, list):
        for item in value:
            found += _expressions(item)
    return found


def test_chart_releases_are_the_last_five_and_an_older_reference() -> None:
    releases = [f"1.{k}" for k in range(8)]
    assert chart_releases(releases, "1.7") == ("1.3", "1.4", "1.5", "1.6", "1.7")
    assert chart_releases(releases, "1.1") == ("1.1", "1.3", "1.4", "1.5", "1.6", "1.7")
    assert chart_releases(releases, None) == ("1.3", "1.4", "1.5", "1.6", "1.7")
    assert chart_releases(releases, "9.9") == ("1.3", "1.4", "1.5", "1.6", "1.7")
    assert chart_releases(releases[:2], "1.0") == ("1.0", "1.1")
    assert chart_releases([], "1.0") == ()


def test_boxes_are_computed_from_every_value() -> None:
    history = _history()
    spec = release_chart_specs(history)["release_per_token_distribution"]
    tpot_panel, ntpot_panel = spec["hconcat"]
    box_layer = next(layer for layer in tpot_panel["layer"] if layer["mark"]["type"] == "bar")
    rows = {(row["release"], row["instance"]): row for row in box_layer["data"]["values"]}
    assert len(rows) == len(RELEASES) * 2
    for sample in history.samples:
        row = rows[(sample.release, sample.instance)]
        assert row["n"] == sample.tpot_s.size
        assert row["median"] == pytest.approx(float(np.median(sample.tpot_s)), rel=1e-5)
        assert row["q1"] == pytest.approx(float(np.percentile(sample.tpot_s, 25)), rel=1e-5)
        assert row["runs"] == 2
    ntpot_rows = next(layer for layer in ntpot_panel["layer"] if layer["mark"]["type"] == "bar")[
        "data"
    ]["values"]
    assert sum(row["n"] for row in ntpot_rows) == sum(s.ntpot_s.size for s in history.samples)
    assert "n=" in spec["title"]["subtitle"][0]


def test_bars_are_the_mean_of_the_runs_with_a_point_per_run() -> None:
    specs = release_chart_specs(_history())
    for name, attribute in (
        ("release_throughput", "output_throughput_tps"),
        ("release_mean_latency", "e2e_mean_s"),
    ):
        layers = _layers(specs[name])
        bars = next(layer for layer in layers if layer["mark"]["type"] == "bar")["data"]["values"]
        points = next(layer for layer in layers if layer["mark"]["type"] == "point")["data"][
            "values"
        ]
        assert len(points) == len(RELEASES) * 2 * 2
        for bar in bars:
            runs = [
                getattr(f, attribute)
                for f in _history().run_figures
                if (f.release, f.instance) == (bar["release"], bar["instance"])
            ]
            assert bar["runs"] == 2
            assert bar["value"] == pytest.approx(sum(runs) / len(runs), rel=1e-5)
        assert {p["run_id"] for p in points} == {f.run_id for f in _history().run_figures}


def test_the_reference_release_is_shaded_and_named() -> None:
    specs = release_chart_specs(_history(reference="2.5.0"))
    for name, spec in specs.items():
        bands = [layer for layer in _layers(spec) if layer["mark"]["type"] == "rect"]
        assert bands, name
        assert all(band["data"]["values"][0]["release"] == "2.5.0" for band in bands)
        assert "reference release 2.5.0" in json.dumps(spec["title"]["subtitle"])
        assert _layers(spec)[-1]["mark"]["type"] == "text"  # the label is drawn on top
    unreferenced = release_chart_specs(_history(reference=None))
    for spec in unreferenced.values():
        assert not [layer for layer in _layers(spec) if layer["mark"]["type"] == "rect"]
    missing = release_chart_specs(_history(reference="1.0.0"))["release_throughput"]
    assert "1.0.0 has no run" in json.dumps(missing["title"]["subtitle"])


def test_release_order_is_kept_not_sorted() -> None:
    spec = release_chart_specs(_history())["release_throughput"]
    x = next(layer for layer in _layers(spec) if layer["mark"]["type"] == "bar")["encoding"]["x"]
    assert x["scale"]["domain"] == list(RELEASES)
    assert x["sort"] is None


def test_load_times_chart_only_when_measured() -> None:
    assert "release_load_times" not in release_chart_specs(_history())
    specs = release_chart_specs(_history(load_times=True))
    assert list(specs) == [
        "release_per_token_distribution",
        "release_throughput",
        "release_mean_latency",
        "release_load_times",
    ]
    rows = next(
        layer for layer in _layers(specs["release_load_times"]) if layer["mark"]["type"] == "bar"
    )["data"]["values"]
    assert [row["release"] for row in rows] == ["2.6.0"]
    assert rows[0]["n"] == 12
    assert rows[0]["max_min_factor"] == pytest.approx(rows[0]["max"] / rows[0]["min"], rel=1e-4)


def test_one_instance_has_no_offset_and_several_have() -> None:
    one = release_chart_specs(_history(instances=1))["release_throughput"]
    two = release_chart_specs(_history(instances=2))["release_throughput"]
    assert all("xOffset" not in layer["encoding"] for layer in _layers(one))
    assert any("xOffset" in layer["encoding"] for layer in _layers(two))


def test_user_strings_are_data_never_expressions() -> None:
    specs = release_chart_specs(_history(load_times=True))
    for name, spec in specs.items():
        for expression in _expressions(spec):
            assert HOSTILE not in expression, name
            assert "alert" not in expression, name
        assert HOSTILE in json.dumps(spec)  # present, as data


def test_every_spec_compiles_to_vega() -> None:
    for name, spec in release_chart_specs(_history(load_times=True)).items():
        vega = vl_convert.vegalite_to_vega(spec)
        assert vega.get("marks"), name


def test_an_empty_history_still_draws() -> None:
    history = ReleaseHistory("demo", ("1.0",), "1.0")
    specs = release_chart_specs(history)
    assert set(specs) == {
        "release_per_token_distribution",
        "release_throughput",
        "release_mean_latency",
    }
    for spec in specs.values():
        vl_convert.vegalite_to_vega(spec)

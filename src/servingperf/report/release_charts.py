"""Charts across releases: how a scenario's figures moved from release to release (Vega-Lite specs).

Terms. A *release* is a value of the release label (``release=2.5.0``); its *runs* are the
scenario's complete runs carrying it. The charts draw the releases of a :class:`ReleaseHistory`
in its order (oldest first): the caller passes the last five releases, as the seed drew them
"against the last five releases", plus the *reference* release when it is older, which every chart
highlights with a shaded band. An *instance* is an instance/phase key of the summary (one model of
a single-model run); each instance has its own colour.

The charts (names are the PNG file stems, prefixed by the caller when a page shows several
scenarios):

- ``release_per_token_distribution``: box plots of TPOT and of NTPOT per release and instance,
  computed (:mod:`servingperf.report.boxstats`) from every measured request of the release's runs;
- ``release_throughput``: output token throughput per release and instance, a bar for the mean
  over the release's runs and a point per run;
- ``release_mean_latency``: the same for the mean end-to-end latency;
- ``release_load_times``: box plots of the instance load times per release, over the many-model
  runs of each release (only when some release has such runs).

Builders are pure; the data is gathered from the store and run directories by
:mod:`servingperf.continuous.site`. Every release name, instance and run id reaches the chart as
data (never inside a Vega expression), so no user string can change what a chart does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from servingperf.model.metrics import METRICS
from servingperf.report.boxstats import BoxStats, box_stats
from servingperf.report.vega import axis_title, base, box_fields, num

Spec = dict[str, Any]
FloatArray = npt.NDArray[np.float64]

WIDTH = 480
HEIGHT = 300
PANEL_WIDTH = 340
REFERENCE_COLOR = "#f2c14e"
RELEASE_AXIS = {"labelAngle": -30, "labelLimit": 160}
BOX_FIELDS = (
    ("min", "min"),
    ("q1", "Q1"),
    ("median", "median"),
    ("mean", "mean"),
    ("q3", "Q3"),
    ("p90", "p90"),
    ("p99", "p99"),
    ("max", "max"),
)


@dataclass(frozen=True, slots=True)
class ReleaseSamples:
    """Per-request values of one instance in one release, pooled over ``runs`` runs."""

    release: str
    instance: str
    tpot_s: FloatArray
    ntpot_s: FloatArray
    runs: int


@dataclass(frozen=True, slots=True)
class ReleaseRunFigure:
    """One run's figures of one instance: a point on the per-release bar charts."""

    release: str
    instance: str
    run_id: str
    output_throughput_tps: float | None
    e2e_mean_s: float | None


@dataclass(frozen=True, slots=True)
class ReleaseHistory:
    """What the charts across releases of one scenario draw."""

    scenario: str
    releases: tuple[str, ...]
    reference: str | None = None
    samples: tuple[ReleaseSamples, ...] = ()
    run_figures: tuple[ReleaseRunFigure, ...] = ()
    load_times: Mapping[str, FloatArray] = field(default_factory=dict)

    @property
    def instances(self) -> list[str]:
        names = {s.instance for s in self.samples} | {f.instance for f in self.run_figures}
        return sorted(names)


def _release_x(history: ReleaseHistory, title: str = "Release") -> dict[str, Any]:
    """The release axis: the history's order (not sorted), every release shown even if empty."""
    return {
        "field": "release",
        "type": "nominal",
        "title": title,
        "sort": None,
        "scale": {"domain": list(history.releases)},
        "axis": RELEASE_AXIS,
    }


def _with_reference(history: ReleaseHistory, layers: list[Spec]) -> list[Spec]:
    """``layers`` over a shaded band at the reference release, with the word "reference" on top."""
    if history.reference is None or history.reference not in history.releases:
        return layers
    data = {"values": [{"release": history.reference, "text": "reference"}]}
    x = _release_x(history)
    band: Spec = {
        "data": data,
        "mark": {"type": "rect", "color": REFERENCE_COLOR, "opacity": 0.28},
        "encoding": {"x": x},
    }
    return [
        band,
        *layers,
        {
            "data": data,
            "mark": {
                "type": "text",
                "baseline": "top",
                "dy": 3,
                "fontSize": 10,
                "fontWeight": "bold",
                "color": "#7a5a00",
            },
            "encoding": {"x": x, "y": {"value": 0}, "text": {"field": "text"}},
        },
    ]


def _reference_note(history: ReleaseHistory) -> str:
    if history.reference is None:
        return "no reference release"
    if history.reference not in history.releases:
        return f"reference release {history.reference} has no run"
    return f"shaded: reference release {history.reference}"


def _colour(history: ReleaseHistory) -> dict[str, Any]:
    return {
        "field": "instance",
        "type": "nominal",
        "title": "Instance",
        "scale": {"domain": history.instances},
    }


def _offset(history: ReleaseHistory) -> dict[str, Any]:
    """Instances side by side within a release when there are several."""
    if len(history.instances) <= 1:
        return {}
    return {"xOffset": {"field": "instance", "type": "nominal", "sort": history.instances}}


def _box_row(release: str, instance: str, runs: int, stats: BoxStats) -> dict[str, Any]:
    return {"release": release, "instance": instance, "runs": runs, **box_fields(stats)}


def _box_layers(
    history: ReleaseHistory,
    rows: list[dict[str, Any]],
    value_title: str,
    unit: str,
    *,
    colour: dict[str, Any] | None,
) -> list[Spec]:
    """Whisker rule, Q1-Q3 box and median tick, over the reference band."""
    x = _release_x(history)
    offset = _offset(history) if colour is not None else {}
    tooltip: list[dict[str, Any]] = [{"field": "release", "title": "Release"}]
    if colour is not None:
        tooltip.append({"field": "instance", "title": "Instance"})
    tooltip += [{"field": "runs", "title": "runs"}, {"field": "n", "title": "n"}]
    tooltip += [
        {"field": key, "title": f"{label} ({unit})", "format": ".4~g"} for key, label in BOX_FIELDS
    ]
    tooltip.append({"field": "outliers", "title": "beyond whiskers"})
    box_colour = (colour | {"legend": {"orient": "bottom"}}) if colour else {"value": "#4c78a8"}
    # Not from zero: the spread within and between releases is what a box plot is read for.
    y = {"type": "quantitative", "title": value_title, "scale": {"zero": False}}
    boxes: list[Spec] = [
        {
            "data": {"values": rows},
            "mark": {"type": "rule"},
            "encoding": {
                "x": x,
                **offset,
                "y": {"field": "whisker_low", **y},
                "y2": {"field": "whisker_high"},
            },
        },
        {
            "data": {"values": rows},
            "mark": {"type": "bar", "width": {"band": 0.7}},
            "encoding": {
                "x": x,
                **offset,
                "y": {"field": "q1", **y},
                "y2": {"field": "q3"},
                "color": box_colour,
                "tooltip": tooltip,
            },
        },
        {
            "data": {"values": rows},
            "mark": {"type": "tick", "color": "white", "thickness": 2, "bandSize": 0.7},
            "encoding": {
                "x": x,
                **offset,
                "y": {"field": "median", **y},
            },
        },
    ]
    return _with_reference(history, boxes)


def per_token_distribution(history: ReleaseHistory) -> Spec:
    """TPOT and NTPOT boxes per release (and instance), from every measured request."""
    panels = []
    totals = []
    for metric in ("tpot_s", "ntpot_s"):
        rows = []
        for sample in history.samples:
            stats = box_stats(getattr(sample, metric))
            if stats is not None:
                rows.append(_box_row(sample.release, sample.instance, sample.runs, stats))
        totals.append(f"{METRICS[metric].title}: n={sum(int(r['n']) for r in rows):,}")
        panels.append(
            {
                "title": {"text": METRICS[metric].title, "subtitle": METRICS[metric].definition},
                "width": PANEL_WIDTH,
                "height": HEIGHT,
                "layer": _box_layers(
                    history,
                    rows,
                    axis_title(metric),
                    METRICS[metric].unit,
                    colour=_colour(history),
                ),
            }
        )
    return base(
        "Distribution of the latency per token, against the releases",
        [
            f"every measured request of each release's runs ({', '.join(totals)}); "
            + _reference_note(history),
            "box: Q1 to Q3, white tick: median, whiskers: 1.5 IQR (quantiles in the tooltip)",
        ],
        hconcat=panels,
    )


def _per_run_bars(
    history: ReleaseHistory,
    attribute: str,
    value_title: str,
    title: str,
    subtitle: str,
) -> Spec:
    """A bar per release and instance (mean over its runs) and a point per run."""
    points: list[dict[str, Any]] = []
    per: dict[tuple[str, str], list[float]] = {}
    for figure in history.run_figures:
        value = getattr(figure, attribute)
        if value is None or not math.isfinite(value):
            continue
        points.append(
            {
                "release": figure.release,
                "instance": figure.instance,
                "run_id": figure.run_id,
                "value": num(value),
            }
        )
        per.setdefault((figure.release, figure.instance), []).append(float(value))
    bars = [
        {
            "release": release,
            "instance": instance,
            "value": num(sum(values) / len(values)),
            "runs": len(values),
        }
        for (release, instance), values in per.items()
    ]
    x = _release_x(history)
    offset = _offset(history)
    y = {"field": "value", "type": "quantitative", "title": value_title}
    return base(
        title,
        [
            subtitle,
            f"bar: mean over the release's runs, point: one run; {_reference_note(history)}",
        ],
        width=WIDTH,
        height=HEIGHT,
        layer=_with_reference(
            history,
            [
                {
                    "data": {"values": bars},
                    "mark": {"type": "bar", "width": {"band": 0.7}, "opacity": 0.85},
                    "encoding": {
                        "x": x,
                        **offset,
                        "y": y,
                        "color": _colour(history) | {"legend": {"orient": "bottom"}},
                        "tooltip": [
                            {"field": "release", "title": "Release"},
                            {"field": "instance", "title": "Instance"},
                            {"field": "value", "title": f"mean {value_title}", "format": ".4~g"},
                            {"field": "runs", "title": "runs"},
                        ],
                    },
                },
                {
                    "data": {"values": points},
                    "mark": {
                        "type": "point",
                        "filled": True,
                        "color": "#1d2430",
                        "size": 36,
                        "opacity": 0.8,
                    },
                    "encoding": {
                        "x": x,
                        **offset,
                        "y": y,
                        "tooltip": [
                            {"field": "run_id", "title": "Run"},
                            {"field": "release", "title": "Release"},
                            {"field": "instance", "title": "Instance"},
                            {"field": "value", "title": value_title, "format": ".4~g"},
                        ],
                    },
                },
            ],
        ),
    )


def throughput(history: ReleaseHistory) -> Spec:
    metric = METRICS["output_throughput_tps"]
    return _per_run_bars(
        history,
        "output_throughput_tps",
        axis_title("output_throughput_tps"),
        f"{metric.title} per release",
        f"{metric.title}: {metric.definition}",
    )


def mean_latency(history: ReleaseHistory) -> Spec:
    metric = METRICS["e2e_s"]
    return _per_run_bars(
        history,
        "e2e_mean_s",
        f"Mean {metric.title.lower()} ({metric.unit})",
        f"Average {metric.title.lower()} per release",
        f"{metric.title}: {metric.definition}; mean over each run's measured requests",
    )


def load_times(history: ReleaseHistory) -> Spec:
    """Load-time boxes per release, over every instance its many-model runs deployed."""
    rows = []
    factors = []
    for release in history.releases:
        values = history.load_times.get(release)
        stats = box_stats(values) if values is not None else None
        if stats is None:
            continue
        row = _box_row(release, "", 0, stats)
        row["max_min_factor"] = num(stats.max / stats.min) if stats.min > 0 else None
        rows.append(row)
        factors.append(f"{release}: n={stats.n}")
    layers = _box_layers(history, rows, axis_title("load_time_s"), "s", colour=None)
    for layer in layers:
        tooltip = layer.get("encoding", {}).get("tooltip")
        if tooltip is not None:
            layer["encoding"]["tooltip"] = [t for t in tooltip if t["field"] != "runs"] + [
                {"field": "max_min_factor", "title": "factor max/min", "format": ".3~g"}
            ]
    definition = METRICS["load_time_s"]
    return base(
        "Distribution of the instance load times, against the releases",
        [
            f"{definition.title}: {definition.definition}",
            f"every instance of each release's many-model runs ({'; '.join(factors)})",
            f"box: Q1 to Q3, white tick: median, whiskers: 1.5 IQR; {_reference_note(history)}",
        ],
        width=WIDTH,
        height=HEIGHT,
        layer=layers,
    )


def release_chart_specs(history: ReleaseHistory) -> dict[str, Spec]:
    """Every chart across releases, by name, in page order (load times only when measured)."""
    specs = {
        "release_per_token_distribution": per_token_distribution(history),
        "release_throughput": throughput(history),
        "release_mean_latency": mean_latency(history),
    }
    if any(np.isfinite(values).any() for values in history.load_times.values()):
        specs["release_load_times"] = load_times(history)
    return specs


def chart_releases(
    releases: Sequence[str], reference: str | None, last: int = 5
) -> tuple[str, ...]:
    """The releases the charts draw: the ``last`` newest, and the reference first when older."""
    shown = list(releases[-last:]) if last > 0 else []
    if reference is not None and reference in releases and reference not in shown:
        shown.insert(0, reference)
    return tuple(shown)

"""The request timeline every flavour's report draws: each request at its send time against its
elapsed time, failures drawn on top.

Terms (:mod:`servingperf.report.points`): *elapsed* is end - sent, a failure's time to fail
included. A timeline's *points* are a deterministic sample of the requests that have both times
(failures kept first); requests without an end (cut, or never sent) are counted, not drawn. A
flavour adds its own background (measurement windows, phase bands) and extra per-point fields
(the phase), and chooses the x axis' unit; the points layer is the same for all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from servingperf.model.metrics import METRICS
from servingperf.report.points import RequestFigures, sample_indices
from servingperf.report.vega import (
    FAILED_TEST,
    ZOOM,
    Spec,
    as_text,
    axis_title,
    compact,
    num,
    sampled,
    status_shape,
)

_E2E = METRICS["e2e_s"]
ELAPSED_TITLE = f"{_E2E.title} (failed: time to fail) ({_E2E.unit})"


@dataclass(frozen=True, slots=True)
class TimelinePoints:
    """The sampled points and what the sample left out, for the chart's subtitle."""

    values: list[dict[str, Any]]
    total: int  # requests with a send and an end time
    unended: int  # requests without (not drawn)
    failed_total: int
    failed_drawn: int

    def notes(self) -> list[str]:
        """How many points stand for how many requests, and what is not drawn."""
        kept = ""
        if self.total > len(self.values) and self.failed_total:
            kept = (
                " (all failed requests kept)"
                if self.failed_drawn == self.failed_total
                else f" ({self.failed_drawn:,} of {self.failed_total:,} failed requests)"
            )
        notes = [sampled(len(self.values), self.total, "requests", kept)]
        if self.unended:
            notes.append(f"{self.unended:,} requests without an end (cut or never sent) not drawn")
        return notes


def timeline_points(
    figures: RequestFigures,
    cap: int,
    *,
    divisor: float = 1.0,
    extra: Callable[[int], Mapping[str, Any]] | None = None,
) -> TimelinePoints:
    """At most ``cap`` points; ``t`` is the send time divided by ``divisor`` (the x axis' unit),
    ``extra(i)`` adds fields of row ``i``."""
    candidates = np.isfinite(figures.t_sent_s) & np.isfinite(figures.elapsed_s)
    failed = figures.status != "ok"
    rows = sample_indices(candidates, cap, keep=failed)
    rows = rows[np.argsort(failed[rows], kind="stable")]  # points draw in order: failures on top
    values = [
        compact(
            {
                "request_id": str(figures.request_id[i]),
                "instance": str(figures.instance[i]),
                "status": str(figures.status[i]),
                "error_kind": figures.error_kind[i],
                "t_sent_s": num(figures.t_sent_s[i], 7),
                "t": num(figures.t_sent_s[i] / divisor, 7),
                "elapsed_s": num(figures.elapsed_s[i], 5),
                "ttft_s": num(figures.ttft_s[i], 4),
                "tpot_s": num(figures.tpot_s[i], 4),
                "output_tokens": num(figures.output_tokens[i]),
                **(extra(int(i)) if extra is not None else {}),
            }
        )
        for i in rows
    ]
    total = int(candidates.sum())
    return TimelinePoints(
        values=values,
        total=total,
        unended=len(figures) - total,
        failed_total=int((candidates & failed).sum()),
        failed_drawn=int(failed[rows].sum()),
    )


def model_lookup(model_of: Mapping[str, str]) -> dict[str, Any]:
    """A lookup transform adding ``model`` to each row from its ``instance`` (rows need not
    repeat the model name)."""
    return {
        "lookup": "instance",
        "from": {
            "data": {"values": [{"instance": i, "model": m} for i, m in sorted(model_of.items())]},
            "key": "instance",
            "fields": ["model"],
        },
    }


def points_layer(
    points: TimelinePoints,
    *,
    x_title: str,
    instances: Sequence[str],
    model_of: Mapping[str, str],
    extra_tooltip: Sequence[dict[str, Any]] = (),
) -> Spec:
    """The layer of request points: colour by instance (in ``instances`` order), shape by
    status, failures larger; zoom and pan; the tooltip names the request."""
    return {
        "data": {"values": points.values},
        "transform": [
            model_lookup(model_of),
            {
                "calculate": "datum.error_kind ? datum.status + ' (' + datum.error_kind"
                " + ')' : datum.status",
                "as": "status_text",
            },
            as_text("ttft_s", ".4~g"),
            as_text("tpot_s", ".4~g"),
            as_text("output_tokens", "d"),
        ],
        "params": [ZOOM],
        "mark": {"type": "point", "filled": True},
        "encoding": {
            "size": {"condition": {"test": FAILED_TEST, "value": 80}, "value": 24},
            "opacity": {"condition": {"test": FAILED_TEST, "value": 1.0}, "value": 0.6},
            "x": {"field": "t", "type": "quantitative", "title": x_title},
            "y": {"field": "elapsed_s", "type": "quantitative", "title": ELAPSED_TITLE},
            "color": {
                "field": "instance",
                "type": "nominal",
                "title": "Instance",
                "scale": {"domain": list(instances)},
            },
            "shape": status_shape(),
            "tooltip": [
                {"field": "request_id", "title": "Request"},
                {"field": "instance", "title": "Instance"},
                {"field": "model", "title": "Model"},
                *extra_tooltip,
                {"field": "status_text", "title": "Status"},
                {"field": "t_sent_s", "title": "Sent at (s)", "format": ".3f"},
                {"field": "elapsed_s", "title": axis_title("e2e_s"), "format": ".4~g"},
                {"field": "ttft_s_text", "title": axis_title("ttft_s")},
                {"field": "tpot_s_text", "title": axis_title("tpot_s")},
                {"field": "output_tokens_text", "title": axis_title("output_tokens")},
            ],
        },
    }

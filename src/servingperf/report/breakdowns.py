"""The report's breakdowns: a window's figures per conversation turn and per model id named.

Terms. ``summary.json`` gives an instance window ``by_turn`` when its requests were conversation
turns and ``by_model`` when they named several model ids (LoRA adapters of one base model), each
a *group* per key value with its request count, throughputs and statistics
(:mod:`servingperf.analysis.breakdown`). Here each becomes a table in the instance's section and a
chart (the PNG file stem is the section's name): the median of TTFT and of E2E latency per group
(a line per instance across turns, points per model id), the 90th percentile and the count in the
tooltip. Pure functions of the
summary dict; names, units and titles come from :data:`servingperf.model.metrics.METRICS`.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from typing import Any

from servingperf.model.metrics import METRICS
from servingperf.report.vega import base, colour, compact, num

Spec = dict[str, Any]

SECTIONS = {"by_turn": "turn", "by_model": "model id"}  # summary key -> what a group is
TABLE_FIGURES = ("ttft_s", "ttfo_s", "tpot_s", "e2e_s")
CHART_FIGURES = ("ttft_s", "e2e_s")
PANEL_WIDTH = 300
PANEL_HEIGHT = 220


def breakdown_tables(instance: Mapping[str, Any], number: Callable[[object], str]) -> str:
    """The instance window's breakdown tables (empty when its summary has none); ``number``
    formats a cell as the page's other tables do."""
    parts = []
    for section, noun in SECTIONS.items():
        groups: Mapping[str, Any] = instance.get(section) or {}
        if not groups:
            continue
        head = "".join(
            f"<th>{html.escape(METRICS[f].short)} p50<br>{html.escape(METRICS[f].unit)}</th>"
            f"<th>p90</th>"
            for f in TABLE_FIGURES
        )
        rows = []
        for key, group in groups.items():
            stats: Mapping[str, Any] = group.get("stats") or {}
            cells = "".join(
                f"<td>{number((stats.get(f) or {}).get('p50'))}</td>"
                f"<td>{number((stats.get(f) or {}).get('p90'))}</td>"
                for f in TABLE_FIGURES
            )
            rows.append(
                f'<tr data-group="{html.escape(str(key))}"><td class="text">{html.escape(str(key))}'
                f"</td><td>{number(group.get('n'))}</td><td>{number(group.get('output_tps'))}"
                f"</td><td>{number(group.get('request_rps'))}</td>{cells}</tr>"
            )
        parts.append(
            f'<table class="breakdown" data-breakdown="{section}"><caption>Per {noun}'
            "</caption><thead><tr>"
            f'<th class="text">{noun.capitalize()}</th><th>measured<br>requests</th>'
            f"<th>output<br>tokens/s</th><th>requests/s</th>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
        )
    return "".join(parts)


def breakdown_charts(summary: Mapping[str, Any]) -> dict[str, Spec]:
    """One chart per breakdown some instance window has, by name (``by_turn``, ``by_model``)."""
    instances: Mapping[str, Any] = summary.get("instances") or {}
    charts: dict[str, Spec] = {}
    for section, noun in SECTIONS.items():
        rows = [
            compact(
                {
                    "instance": str(name),
                    "group": str(key),
                    "figure": METRICS[figure].title,
                    "p50": num((stats.get(figure) or {}).get("p50")),
                    "p90": num((stats.get(figure) or {}).get("p90")),
                    "n": group.get("n"),
                }
            )
            for name, inst in instances.items()
            for key, group in (inst.get(section) or {}).items()
            if (stats := group.get("stats") or {})
            for figure in CHART_FIGURES
            if stats.get(figure)
        ]
        if rows:
            ordered = section == "by_turn"  # turns follow each other; model ids do not
            charts[section] = _chart(rows, noun, sorted({r["instance"] for r in rows}), ordered)
    return charts


def _chart(rows: list[dict[str, Any]], noun: str, instances: list[str], ordered: bool) -> Spec:
    order = list(dict.fromkeys(r["group"] for r in rows))  # the summary's (natural) order
    unit = METRICS[CHART_FIGURES[0]].unit
    return base(
        f"Latency per {noun}",
        [
            f"median per {noun} over the measured requests of each instance window;"
            " hover for the 90th percentile and the count",
        ],
        data={"values": rows},
        facet={
            "column": {
                "field": "figure",
                "type": "nominal",
                "title": None,
                "sort": [METRICS[f].title for f in CHART_FIGURES],
            }
        },
        resolve={"scale": {"y": "independent"}},
        spec={
            "width": PANEL_WIDTH,
            "height": PANEL_HEIGHT,
            "mark": {"type": "line", "point": True} if ordered else {"type": "point"},
            "encoding": {
                "x": {
                    "field": "group",
                    "type": "ordinal",
                    "sort": order,
                    "title": noun.capitalize(),
                },
                "y": {"field": "p50", "type": "quantitative", "title": f"median ({unit})"},
                "color": colour("instance", instances, "Instance"),
                "tooltip": [
                    {"field": "instance", "title": "Instance"},
                    {"field": "group", "title": noun.capitalize()},
                    {"field": "figure", "title": "Figure"},
                    {"field": "p50", "title": f"p50 ({unit})", "format": ".4~g"},
                    {"field": "p90", "title": f"p90 ({unit})", "format": ".4~g"},
                    {"field": "n", "title": "Requests"},
                ],
            },
        },
    )

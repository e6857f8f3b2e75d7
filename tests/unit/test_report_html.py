"""The report page: escaping of hostile strings, no external resources, KPI tables, chart data."""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from servingperf.model.metrics import METRICS
from servingperf.report.charts import chart_specs
from servingperf.report.errordigest import MESSAGE_CHARS, failure_samples
from servingperf.report.html import (
    CHART_DATA_ID,
    fmt_number,
    render_html,
    script_json,
    vega_javascript,
)
from tests.fakes.records import record, table
from tests.fakes.runs import synthetic_run

HOSTILE = "<script>alert(1)</script>"
FAKE_JS = "/* vega bundle stand-in */ window.vegaEmbed = async () => ({});"


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text of every <script>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._in_script: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = dict(attrs)
            self.scripts.append((self._in_script, ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = None

    def handle_data(self, data: str) -> None:
        if self._in_script is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)


def _page(**kwargs: Any) -> tuple[str, dict[str, Any]]:
    run_info, summary, records = synthetic_run(**kwargs)
    specs = chart_specs(summary, records)
    page = render_html(run_info, summary, specs, failure_samples(records), vega_js=FAKE_JS)
    return page, specs


def _hostile_page() -> tuple[str, dict[str, Any]]:
    run_info, summary, records = synthetic_run(
        models=("flan-t5-small", HOSTILE),
        requests_per_instance=120,
        labels={"release": HOSTILE, HOSTILE: "x"},
        error_message=f"proxy said {HOSTILE}",
    )
    run_info["config"]["dataset"]["prompt"] = f"Summarise {HOSTILE} please"
    run_info["environment"]["host"] = HOSTILE
    specs = chart_specs(summary, records)
    page = render_html(run_info, summary, specs, failure_samples(records), vega_js=FAKE_JS)
    return page, specs


def test_hostile_strings_appear_only_escaped() -> None:
    page, specs = _hostile_page()
    assert HOSTILE not in page  # not in the markup, not in the chart JSON either
    escaped = html.escape(HOSTILE)
    assert escaped in page
    # Model name (KPI heading, overview), label key and value, error message, prompt, host.
    assert f"model {escaped}" in page
    assert f"{escaped}=x" in page
    assert f"release={escaped}" in page
    assert f"proxy said {escaped}" in page
    assert f"Summarise {escaped} please" in page
    # Only our own two scripts exist: the chart data and the renderer.
    parsed = Elements()
    parsed.feed(page)
    assert [attrs.get("type") for attrs, _ in parsed.scripts] == ["application/json", "module"]
    # The chart data still carries the name, intact, once parsed as JSON.
    data = json.loads(parsed.scripts[0][1])
    assert data == json.loads(json.dumps(specs))
    assert HOSTILE in json.dumps(data, ensure_ascii=False)


def test_script_json_never_closes_the_script_and_round_trips() -> None:
    value = {"a": "</script><!-- & \u2028 >", "b": [1.5, None, True]}
    text = script_json(value)
    assert "<" not in text
    assert ">" not in text
    assert "&" not in text
    assert json.loads(text) == value
    with pytest.raises(ValueError, match="JSON"):
        script_json({"x": float("nan")})


def test_page_references_no_external_resource() -> None:
    page, _ = _page(requests_per_instance=80)
    parsed = Elements()
    parsed.feed(page)
    for tag, attrs in parsed.tags:
        assert tag not in ("link", "img", "iframe", "object", "embed", "base", "source", "video")
        if tag == "script":
            assert "src" not in attrs
        for name in ("src", "href", "action", "srcset", "poster", "data", "formaction"):
            value = attrs.get(name)
            if value is not None:
                assert value.startswith("#"), (tag, name, value)  # in-page anchors only
    style = page[page.index("<style>") : page.index("</style>")]
    assert "url(" not in style
    assert "@import" not in style


def test_the_vega_bundle_is_inlined_once_in_one_module_script() -> None:
    run_info, summary, records = synthetic_run(requests_per_instance=50)
    specs = chart_specs(summary, records)
    bundle = vega_javascript()
    assert len(bundle) > 500_000
    assert "</script" not in bundle.lower()
    page = render_html(run_info, summary, specs, [], vega_js=bundle)
    parsed = Elements()
    parsed.feed(page)
    modules = [text for attrs, text in parsed.scripts if attrs.get("type") == "module"]
    assert len(modules) == 1
    assert modules[0].count(bundle[-200:]) == 1
    assert page.count(bundle[:200]) == 1
    assert "window.vegaEmbed" in modules[0]
    assert "chartsRendered" in modules[0]
    assert modules[0].index(bundle[-200:]) < modules[0].index("chartsRendered")


def test_every_chart_has_a_container_and_its_spec_in_the_data_block() -> None:
    page, specs = _page(requests_per_instance=80)
    for name in specs:
        assert f'<div id="chart-{name}"></div>' in page
    match = re.search(
        rf'<script type="application/json" id="{CHART_DATA_ID}">(.*?)</script>', page, re.S
    )
    assert match is not None
    assert list(json.loads(match.group(1))) == list(specs)


def test_kpi_tables_show_units_and_definitions() -> None:
    page, _ = _page(requests_per_instance=200)
    _, summary, _ = synthetic_run(requests_per_instance=200)
    for name, entry in summary["instances"].items():
        section = re.search(
            rf'<section class="instance" id="instance-{name}">(.*?)</section>', page, re.S
        )
        assert section is not None
        row = re.search(r'<tr data-metric="e2e_s">(.*?)</tr>', section.group(1), re.S)
        assert row is not None
        e2e = entry["stats"]["e2e_s"]
        cells = re.findall(r"<td>([^<]*)</td>", row.group(1))
        assert cells == [
            "s",
            fmt_number(e2e["n"]),
            fmt_number(e2e["mean"]),
            fmt_number(e2e["p50"]),
            fmt_number(e2e["p90"]),
            fmt_number(e2e["p99"]),
            fmt_number(e2e["max"]),
        ]
    for metric in ("ttft_s", "tpot_s", "ntpot_s", "e2e_s", "output_throughput_tps", "error_rate"):
        definition = METRICS[metric]
        assert f'<abbr title="{html.escape(definition.definition)}">' in page
        assert f'id="metric-{metric}"' in page  # glossary entry
    row = re.search(r'<tr data-metric="tpot_s">(.*?)</tr>', page, re.S)
    assert row is not None
    assert f"<td>{METRICS['tpot_s'].unit}</td>" in row.group(1)
    assert "Error kind" in page
    assert "http_status" in page
    assert "timeout" in page


def test_header_shows_run_identity_and_time_span() -> None:
    page, _ = _page(requests_per_instance=40)
    assert "<h1>single-model-demo</h1>" in page
    assert "20240117-163500-abcd" in page
    assert "started 2024-01-17 16:35:00 UTC · ended 2024-01-17 16:36:01 UTC · 61 s" in page
    assert '<span class="badge ok">complete</span>' in page


def test_fmt_number() -> None:
    assert fmt_number(None) == "—"
    assert fmt_number(12345) == "12,345"
    assert fmt_number(0.000123456) == "0.0001235"
    assert fmt_number(2499.123) == "2499"
    assert fmt_number(123456.7) == "123,457"
    assert fmt_number(float("nan")) == "—"
    assert fmt_number("<b>") == "&lt;b&gt;"


def test_failure_samples_group_count_and_truncate() -> None:
    long = "x" * (MESSAGE_CHARS + 50)
    rows = [
        record(request_id=f"a{i}", status="error", error_kind="timeout", error_message="t/o")
        for i in range(5)
    ]
    rows += [record(request_id="b", status="error", error_kind="protocol", error_message=long)]
    rows += [record(request_id="c", status="cut", error_kind="cut")]
    rows += [record(request_id="d", instance="other", status="error", error_kind=None)]
    samples = failure_samples(table(*rows))
    assert [(s.instance, s.kind, s.count) for s in samples] == [
        ("m", "timeout", 5),
        ("m", "protocol", 1),
        ("other", "unknown", 1),
    ]
    assert len(samples[1].message) == MESSAGE_CHARS
    assert samples[1].message.endswith("…")
    assert failure_samples(table(*rows), per_instance=1)[0].count == 5
    assert len(failure_samples(table(*rows), per_instance=1)) == 2

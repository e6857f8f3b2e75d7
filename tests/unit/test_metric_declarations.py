"""Every list of figures derives from the one declaration (servingperf.model.metrics)."""

from __future__ import annotations

import pytest

from servingperf.analysis import metrics as computed
from servingperf.analysis.summary import STAT_METRICS, summary_value
from servingperf.cli.tables import summary_table
from servingperf.continuous.kpis import DISTRIBUTION_METRICS, RATE_KPIS
from servingperf.continuous.samples import GATED_KPIS
from servingperf.model.metrics import METRICS, Kind, distributions, gated, headline, metric
from servingperf.report.html import STATS_ORDER
from servingperf.report.index import HISTORY_KPIS


def test_each_consumer_lists_what_the_declaration_says() -> None:
    names = [m.name for m in distributions()]
    assert list(STAT_METRICS) == names == list(STATS_ORDER)
    assert list(DISTRIBUTION_METRICS) == [m.name for m in distributions() if m.stored]
    assert list(GATED_KPIS) == [m.name for m in gated()]
    assert set(RATE_KPIS.values()) == {
        m.name for m in METRICS.values() if m.kind is Kind.RATE and m.summary_key
    }
    assert [metric for _, metric, _ in HISTORY_KPIS] == [
        m.name for m in METRICS.values() if m.headline and m.stored
    ]
    assert list(computed.PER_REQUEST) == [
        m.name for m in METRICS.values() if m.kind is Kind.PER_REQUEST
    ]


def test_the_cli_table_has_one_column_per_headline_figure() -> None:
    entry = {
        "counts": {"measured": 3, "error": 0, "cut": 1},
        "stats": {"ttft_s": {"p50": 0.012, "p90": 0.02}, "e2e_s": {"mean": 1.5, "p99": 2.0}},
        "throughput": {"output_tps": 12.5, "request_rps": 0.5},
        "error_rate": 0.01,
    }
    table = summary_table(
        {"scenario": "s", "run_id": "r", "status": "complete", "instances": {"a": entry}}
    )
    headers = [c.header for c in table.columns]
    assert headers[:4] == ["instance", "ok", "err", "cut"]
    assert len(headers) == 4 + len(headline())
    assert "TTFT p50 ms" in headers and "err %" in headers and "tok/s" in headers
    cells = {c.header: next(iter(c.cells)) for c in table.columns}
    assert cells["TTFT p50 ms"] == "12.0"
    assert cells["E2E mean ms"] == "1500.0"
    assert cells["err %"] == "1.00"
    assert cells["TPOT p50 ms"] == "–"  # absent from the summary


@pytest.mark.parametrize(
    ("name", "statistic", "expected"),
    [("ttft_s", "p90", 0.2), ("output_throughput_tps", "value", 7.0), ("error_rate", "value", 0.5)],
)
def test_a_summary_value_is_read_where_its_kind_keeps_it(
    name: str, statistic: str, expected: float
) -> None:
    entry = {
        "stats": {"ttft_s": {"p90": 0.2}},
        "throughput": {"output_tps": 7.0},
        "error_rate": 0.5,
    }
    assert summary_value(entry, metric(name), statistic) == expected

"""The exposition parser's fast path reads every series line as prometheus-client does.

The referee is prometheus-client's own text parser: over a real exposition (the emulator's vLLM
metrics, several models, after traffic) and over hand-written lines with the format's corners,
the parser with its fast path and the library must give the same samples.
"""

from __future__ import annotations

import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from servingperf.emulator.engine import Engine
from servingperf.emulator.vllm_metrics import EngineMetrics
from servingperf.results.exposition import ExpositionParser, FamilyFilter, _plain_series
from tests.unit.test_emulator_engine import VirtualClock, drain, make_profile


def library_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def parser_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    import json

    out = []
    for name, labels, le, value in ExpositionParser(FamilyFilter(exclude=())).iter_samples(text):
        decoded = json.loads(labels)
        if le is not None:
            decoded["le"] = "+Inf" if math.isinf(le) else repr(le)
        out.append((name, decoded, value))
    return out


def normalise(samples: list[tuple[str, dict[str, str], float]]) -> list[tuple[str, str, float]]:
    """Comparable samples: ``le`` as a float (the library keeps the text, "0.5" or "+Inf")."""
    rows = []
    for name, labels, value in samples:
        labels = dict(labels)
        if "le" in labels:
            labels["le"] = repr(float(labels["le"].replace("+Inf", "inf")))
        rows.append((name, repr(sorted(labels.items())), value))
    return rows


async def test_the_emulator_exposition_reads_the_same_both_ways() -> None:
    clock = VirtualClock()
    engine = Engine(make_profile(max_batch=2), clock=clock, sleep=clock.sleep)
    metrics = EngineMetrics(engine, ["model-a", "model-b", "model-c"]).attach()
    for model in ("model-a", "model-b", "model-a"):
        await drain(engine.submit(12, 4, model=model))
    await engine.aclose()
    text = metrics.render().decode()
    library = normalise(library_samples(text))
    assert len(library) > 100
    assert normalise(parser_samples(text)) == [r for r in library if not r[0].endswith("_created")]


CORNERS = [
    "plain_total 3\n",
    'with_labels{a="1",b="two words"} 4.5\n',
    'trailing_comma{a="1",} 1\n',
    'spaced { a = "1" , b="2" } 2\n',
    "empty_labels{} 7\n",
    'commas_and_braces{path="/v1/x,y", q="a}b"} 1\n',
    'escaped{path="C:\\\\dir",quote="say \\"hi\\"",nl="a\\nb"} 3\n',
    'colon:name_bucket{le="+Inf"} 9\n',
    'nan_value{a="x"} NaN\n',
    'neg_inf{a="x"} -Inf\n',
    'with_timestamp{a="x"} 5 1700000000000\n',
    'utf8_value{model="mod\u00e8le-\u00e9t\u00e9"} 1\n',
]


@pytest.mark.parametrize("line", CORNERS)
def test_corner_lines_read_the_same_both_ways(line: str) -> None:
    library = normalise(library_samples(line))
    mine = normalise(parser_samples(line))
    assert len(mine) == 1
    if math.isnan(library[0][2]):
        assert mine[0][:2] == library[0][:2] and math.isnan(mine[0][2])
    else:
        assert mine == library


def test_lines_with_escapes_or_odd_names_are_left_to_the_library() -> None:
    assert _plain_series('x{a="C:\\\\dir"}') is None
    assert _plain_series('x{a="1",a="2"}') is None
    assert _plain_series('{"utf8.name"}') is None
    assert _plain_series('x{a="1"') is None
    assert _plain_series('x{a="1"}') == ("x", {"a": "1"})


def test_malformed_lines_are_still_errors() -> None:
    for bad in ('x{a="1" 1\n', "x{a=1} 1\n", "x{} one\n"):
        with pytest.raises(ValueError, match="not Prometheus text format"):
            ExpositionParser().iter_samples(bad)

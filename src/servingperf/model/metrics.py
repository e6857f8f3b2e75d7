"""Metric definitions: every figure's name, unit and direction, declared once.

Tables, charts, the gate and the store read these; nothing else spells a unit or a direction.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Better(enum.StrEnum):
    LOWER = "lower"
    HIGHER = "higher"


@dataclass(frozen=True, slots=True)
class MetricDef:
    name: str
    unit: str
    better: Better
    title: str
    definition: str


_DEFS = (
    MetricDef(
        "ttft_s",
        "s",
        Better.LOWER,
        "Time to first token",
        "first token-bearing chunk - sent, per streamed request",
    ),
    MetricDef(
        "tpot_s",
        "s",
        Better.LOWER,
        "Time per output token",
        "(end - first token) / (N - 1), per streamed request with N >= 2",
    ),
    MetricDef(
        "ntpot_s",
        "s",
        Better.LOWER,
        "Latency per token (NTPOT)",
        "E2E latency / N, per request with N >= 1",
    ),
    MetricDef(
        "itl_s",
        "s",
        Better.LOWER,
        "Inter-token latency",
        "gap between consecutive token-bearing chunks / tokens in the later chunk, pooled",
    ),
    MetricDef("e2e_s", "s", Better.LOWER, "End-to-end latency", "end - sent, per request"),
    MetricDef(
        "client_lag_s",
        "s",
        Better.LOWER,
        "Client lag",
        "sent - scheduled, per request (coordinated omission made visible)",
    ),
    MetricDef("output_tokens", "tokens", Better.HIGHER, "Output tokens", "N per request"),
    MetricDef("input_tokens", "tokens", Better.HIGHER, "Input tokens", "prompt tokens per request"),
    MetricDef(
        "output_throughput_tps",
        "tokens/s",
        Better.HIGHER,
        "Output token throughput",
        "output tokens of requests completed in the window / window length",
    ),
    MetricDef(
        "input_throughput_tps",
        "tokens/s",
        Better.HIGHER,
        "Input token throughput",
        "input tokens of requests completed in the window / window length",
    ),
    MetricDef(
        "request_throughput_rps",
        "requests/s",
        Better.HIGHER,
        "Request throughput",
        "requests completed in the window / window length",
    ),
    MetricDef(
        "goodput_rps",
        "requests/s",
        Better.HIGHER,
        "Goodput",
        "completed requests meeting every SLO / window length",
    ),
    MetricDef(
        "error_rate",
        "ratio",
        Better.LOWER,
        "Error rate",
        "failed requests / requests issued, both sent in the window (cut excluded from errors)",
    ),
    MetricDef(
        "load_time_s",
        "s",
        Better.LOWER,
        "Load time",
        "ready - created per model instance, platform clock",
    ),
)

METRICS: dict[str, MetricDef] = {m.name: m for m in _DEFS}


def metric(name: str) -> MetricDef:
    """The definition of a metric name; KeyError names the unknown metric."""
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(METRICS)}") from None

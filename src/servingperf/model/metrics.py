"""Metric definitions: every figure's name, unit, direction, role and display, declared once.

Every list of metrics in the tool derives from :data:`METRICS` (its order is the display order):
the summary's statistics, the report's tables, the CLI table, the KPIs the store keeps, the KPIs
the gate judges and its default thresholds, the index site's history columns. Adding a figure is a
declaration here plus, for a per-request figure, its computation in
:mod:`servingperf.analysis.metrics` (an import-time check there keeps the two in step).

*Kinds* say how a figure is gathered: ``per_request`` (one value per measured request, summarised
as a distribution), ``pooled`` (samples pooled over measured requests: ITL), ``issued`` (one value
per issued request: client lag), ``rate`` (one value per window: throughputs, error rate),
``deployment`` (one value per model instance: load time).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


class Better(enum.StrEnum):
    LOWER = "lower"
    HIGHER = "higher"


class Kind(enum.StrEnum):
    PER_REQUEST = "per_request"
    POOLED = "pooled"
    ISSUED = "issued"
    RATE = "rate"
    DEPLOYMENT = "deployment"


DISTRIBUTION_KINDS = frozenset({Kind.PER_REQUEST, Kind.POOLED, Kind.ISSUED})
STORED_STATISTICS = ("mean", "p50", "p90", "p95", "p99")
"""The statistics of a distribution figure the results store keeps (``<metric>.<statistic>``)."""


@dataclass(frozen=True, slots=True)
class MetricDef:
    """One figure. ``short`` labels table columns; ``summary_key`` is a rate's key in the
    summary's ``throughput`` section (None: a top-level summary field of the metric's name);
    ``stored`` puts it in the results store; ``gated`` makes it a gate KPI, with
    ``gate_threshold`` as its default relative change (None: the gate's general threshold);
    ``headline`` lists the statistics overview tables show (first: the compact views'), empty for
    a figure kept out of overviews (a rate's headline is its value: ``("value",)``)."""

    name: str
    unit: str
    better: Better
    title: str
    definition: str
    kind: Kind
    short: str
    summary_key: str | None = None
    stored: bool = True
    gated: bool = False
    gate_threshold: float | None = None
    headline: tuple[str, ...] = ()

    @property
    def distribution(self) -> bool:
        return self.kind in DISTRIBUTION_KINDS


_DEFS = (
    MetricDef(
        "ttft_s",
        "s",
        Better.LOWER,
        "Time to first token",
        "first chunk carrying an output token of any kind, reasoning included - sent, per"
        " streamed request (TTFO leaves reasoning out)",
        Kind.PER_REQUEST,
        "TTFT",
        gated=True,
        # queueing and scheduling make it the noisiest figure between otherwise identical runs
        gate_threshold=0.10,
        headline=("p50", "p90"),
    ),
    MetricDef(
        "ttfo_s",
        "s",
        Better.LOWER,
        "Time to first content token",
        "first chunk carrying content, reasoning excluded - sent, per streamed request; equal"
        " to TTFT for a model that does not reason",
        Kind.PER_REQUEST,
        "TTFO",
        gated=True,
        gate_threshold=0.10,  # TTFT's noise, plus the reasoning length's
        headline=("p50",),
    ),
    MetricDef(
        "tpot_s",
        "s",
        Better.LOWER,
        "Time per output token",
        "(end - first token) / (N - 1), per streamed request with N >= 2",
        Kind.PER_REQUEST,
        "TPOT",
        gated=True,
        headline=("p50", "p90"),
    ),
    MetricDef(
        "ntpot_s",
        "s",
        Better.LOWER,
        "Latency per token (NTPOT)",
        "E2E latency / N, per request with N >= 1",
        Kind.PER_REQUEST,
        "NTPOT",
        gated=True,
        headline=("mean",),
    ),
    MetricDef(
        "itl_s",
        "s",
        Better.LOWER,
        "Inter-token latency",
        "gap between consecutive token-bearing chunks / tokens in the later chunk, pooled",
        Kind.POOLED,
        "ITL",
    ),
    MetricDef(
        "e2e_s",
        "s",
        Better.LOWER,
        "End-to-end latency",
        "end - sent, per request",
        Kind.PER_REQUEST,
        "E2E",
        gated=True,
        headline=("mean", "p99"),
    ),
    MetricDef(
        "client_lag_s",
        "s",
        Better.LOWER,
        "Client lag",
        "sent - scheduled, per request (coordinated omission made visible)",
        Kind.ISSUED,
        "lag",
    ),
    MetricDef(
        "output_tokens",
        "tokens",
        Better.HIGHER,
        "Output tokens",
        "N per request",
        Kind.PER_REQUEST,
        "out tok",
        stored=False,
    ),
    MetricDef(
        "input_tokens",
        "tokens",
        Better.HIGHER,
        "Input tokens",
        "prompt tokens per request",
        Kind.PER_REQUEST,
        "in tok",
        stored=False,
    ),
    MetricDef(
        "output_throughput_tps",
        "tokens/s",
        Better.HIGHER,
        "Output token throughput",
        "output tokens of requests completed in the window / window length",
        Kind.RATE,
        "tok/s",
        summary_key="output_tps",
        gated=True,
        headline=("value",),
    ),
    MetricDef(
        "input_throughput_tps",
        "tokens/s",
        Better.HIGHER,
        "Input token throughput",
        "input tokens of requests completed in the window / window length",
        Kind.RATE,
        "in tok/s",
        summary_key="input_tps",
    ),
    MetricDef(
        "request_throughput_rps",
        "requests/s",
        Better.HIGHER,
        "Request throughput",
        "requests completed in the window / window length",
        Kind.RATE,
        "req/s",
        summary_key="request_rps",
        gated=True,
        headline=("value",),
    ),
    MetricDef(
        "goodput_rps",
        "requests/s",
        Better.HIGHER,
        "Goodput",
        "completed requests meeting every SLO / window length",
        Kind.RATE,
        "goodput/s",
        summary_key="goodput_rps",
    ),
    MetricDef(
        "error_rate",
        "ratio",
        Better.LOWER,
        "Error rate",
        "failed requests / requests issued, both sent in the window (cut excluded from errors)",
        Kind.RATE,
        "err",
        headline=("value",),
    ),
    MetricDef(
        "token_mismatch_rate",
        "ratio",
        Better.LOWER,
        "Token count mismatches",
        "measured streamed requests whose usage count differs from the streamed count /"
        " measured requests (the count N uses is the scenario's tokens.output_tokens_from)",
        Kind.RATE,
        "mismatch",
        stored=False,
    ),
    MetricDef(
        "load_time_s",
        "s",
        Better.LOWER,
        "Load time",
        "ready - created per model instance, platform clock",
        Kind.DEPLOYMENT,
        "load",
        stored=False,
    ),
)

METRICS: Mapping[str, MetricDef] = MappingProxyType({m.name: m for m in _DEFS})
"""Every figure, in display order. Read-only."""


def metric(name: str) -> MetricDef:
    """The definition of a metric name; KeyError names the unknown metric."""
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(METRICS)}") from None


def of_kind(*kinds: Kind) -> tuple[MetricDef, ...]:
    """The figures of the given kinds, in display order."""
    return tuple(m for m in METRICS.values() if m.kind in kinds)


def distributions() -> tuple[MetricDef, ...]:
    """The figures summarised as distributions (statistics tables, ``summary.json`` stats)."""
    return of_kind(*DISTRIBUTION_KINDS)


def rates() -> tuple[MetricDef, ...]:
    """The figures with one value per window, in display order."""
    return of_kind(Kind.RATE)


def gated() -> tuple[MetricDef, ...]:
    """The KPIs the regression gate judges, in display order."""
    return tuple(m for m in METRICS.values() if m.gated)


def headline() -> tuple[tuple[MetricDef, str], ...]:
    """(figure, statistic) of every overview column, in display order (``"value"`` for a rate)."""
    return tuple((m, stat) for m in METRICS.values() for stat in m.headline)


def kpi_name(definition: MetricDef, statistic: str) -> str:
    """The stored KPI name of a headline column: ``<metric>.<statistic>``, or a rate's name."""
    return definition.name if statistic == "value" else f"{definition.name}.{statistic}"

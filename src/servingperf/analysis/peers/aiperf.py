"""AIPerf's figures, from servingperf's records.

AIPerf's definitions (repository ai-dynamo/aiperf, files below): a record's *responses* are the
streamed messages that parse to non-empty text (usage-only and role-only chunks drop out). TTFT =
first response - request start; request latency = *last response* - request start (the last
content chunk, not the end of the stream); output sequence length (OSL) = the tokenizer's count of
the concatenated text; ITL = (request latency - TTFT) / (OSL - 1) for OSL >= 2 (our TPOT, with the
last content chunk as the end); inter-chunk latency = every gap between consecutive responses;
output token throughput per user = 1 / ITL per request. Benchmark duration = latest final
response - earliest request start over the valid (successful) records of the profiling phase;
output token and request throughput = totals / that duration. Statistics with numpy
(``np.percentile``, avg, population std).
"""

from __future__ import annotations

import numpy as np

from servingperf.analysis.peers.requests import Requests
from servingperf.analysis.peers.view import Divergence, PeerFigure, Source, numpy_stats
from servingperf.results.rundir import PhaseWindow

NAME = "aiperf"
SOURCE = Source(
    tool="AIPerf",
    version="main",
    repository="github.com/ai-dynamo/aiperf",
    commit="db4f6397d11ee2d4cfbb41f70b2327315163dcf0",
    files=(
        "aiperf/metrics/types/ttft_metric.py",
        "aiperf/metrics/types/request_latency_metric.py",
        "aiperf/metrics/types/inter_token_latency_metric.py",
        "aiperf/metrics/types/inter_chunk_latency_metric.py",
        "aiperf/metrics/types/output_token_throughput_metrics.py",
        "aiperf/metrics/types/benchmark_duration_metric.py",
        "aiperf/parsers/inference_result_parser.py",
        "aiperf/parsers/openai_parsers.py",
        "aiperf/metrics/metric_dicts.py",
    ),
)
PERCENTILES = (90.0, 95.0, 99.0)  # the median is reported on its own

DIVERGENCES = (
    Divergence(
        "which requests count",
        "ok and ended inside W",
        "every valid record of the profiling phase (warm-up requests are a separate phase)",
    ),
    Divergence(
        "request latency",
        "last byte - sent",
        "last content chunk - start",
    ),
    Divergence(
        "ITL",
        "per chunk: gap / tokens in the later chunk, pooled",
        "per request: (latency - TTFT) / (OSL - 1), our TPOT ending at the last content chunk",
    ),
    Divergence(
        "inter-chunk latency",
        "(ITL divides by the later chunk's tokens)",
        "every gap between content chunks, not divided by tokens",
    ),
    Divergence(
        "output tokens",
        "usage count, else streamed count",
        "tokenizer count of the concatenated output text",
        gap="the output text is not kept: the usage count (or streamed count) stands in",
    ),
    Divergence(
        "throughput window",
        "|W|",
        "earliest request start to the latest final response of the valid records",
    ),
)


def view(requests: Requests, window: PhaseWindow) -> tuple[list[PeerFigure], dict[str, int]]:
    chunks = requests.chunks
    valid = requests.ok
    streaming = valid & (chunks > 0)
    first = requests.first_chunk()
    last = requests.last_chunk()
    ttft = (first - requests.sent)[streaming]
    final = np.where(chunks > 0, last, requests.end)
    latency = (final - requests.sent)[valid]
    osl = np.nan_to_num(requests.output_tokens)
    with np.errstate(divide="ignore", invalid="ignore"):
        itl_all = ((final - requests.sent) - (first - requests.sent)) / (osl - 1)
    itl = itl_all[streaming & (osl >= 2)]
    with np.errstate(divide="ignore"):
        per_user = 1.0 / itl
    icl = requests.chunk_gaps(streaming & (chunks >= 2))
    duration = float(np.max(final[valid]) - np.min(requests.sent[valid])) if valid.any() else 0.0
    total_osl = float(osl[valid].sum())

    def per_s(total: float) -> float | None:
        return total / duration if duration > 0 else None

    figures = [
        PeerFigure("request_count", float(valid.sum()), "requests"),
        PeerFigure("error_request_count", float(requests.error.sum()), "requests"),
        PeerFigure("benchmark_duration", duration, "s"),
        PeerFigure(
            "request_throughput", per_s(float(valid.sum())), "req/s", "request_throughput_rps"
        ),
        PeerFigure("output_token_throughput", per_s(total_osl), "tok/s", "output_throughput_tps"),
    ]
    for tag, values, unit, ours in (
        ("time_to_first_token", ttft * 1000, "ms", "ttft_s"),
        ("request_latency", latency * 1000, "ms", "e2e_s"),
        ("inter_token_latency", itl * 1000, "ms", "tpot_s"),
        ("inter_chunk_latency", icl * 1000, "ms", "itl_s"),
        ("output_token_throughput_per_user", per_user, "tok/s/user", None),
    ):
        names = {"mean": f"{tag}.avg", "std": f"{tag}.std", "median": f"{tag}.p50"}
        names |= {f"p{p:g}": f"{tag}.p{p:g}" for p in PERCENTILES}
        stats = numpy_stats(tag, values, unit, ours, PERCENTILES, names=names)
        figures += stats
    counts = {
        "valid": int(valid.sum()),
        "errors": int(requests.error.sum()),
        "cut": int(requests.cut.sum()),
    }
    return figures, counts

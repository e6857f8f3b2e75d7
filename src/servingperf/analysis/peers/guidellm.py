"""GuideLLM's figures, from servingperf's records.

GuideLLM's definitions (repository vllm-project/guidellm, files below): a request counts for a
benchmark when it overlaps the measurement window (it ended after the window's start and started
before its end), by status (successful, incomplete, errored; the console shows successful ones).
Per request: latency = request end - request start (the stream read to its end); TTFT = first
iteration carrying text - start; TPOT = (last token iteration - start) / N, *including* the first
token, weighted by N; ITL = (last token iteration - first token iteration) / (N - 1), weighted by
N - 1 (GuideLLM's ITL is what we call TPOT); N = the server's usage count, else the token
iterations. Request and output-token throughput are time-weighted rate distributions (see
:mod:`servingperf.analysis.peers.weighted`): requests at their end times within the window, output
tokens at the first token (1) and at token iterations spread evenly from the first to the last
token iteration ((N - 1) / (iterations - 1) each). Statistics are weighted-CDF quantiles, not
numpy's interpolation.
"""

from __future__ import annotations

import numpy as np

from servingperf.analysis.peers.requests import Requests
from servingperf.analysis.peers.view import Divergence, PeerFigure, Source
from servingperf.analysis.peers.weighted import Weighted, rate_distribution, weighted
from servingperf.analysis.stats import FloatArray
from servingperf.results.rundir import PhaseWindow

NAME = "guidellm"
SOURCE = Source(
    tool="GuideLLM",
    version="main",
    repository="github.com/vllm-project/guidellm",
    commit="ee7a77457ba668b4b5ccb40f110518829893b36a",
    files=(
        "src/guidellm/schemas/request_stats.py",
        "src/guidellm/schemas/statistics.py",
        "src/guidellm/benchmark/schemas/metrics.py",
        "src/guidellm/benchmark/schemas/accumulator.py",
        "src/guidellm/backends/openai/http.py",
    ),
)
QUANTILES = (0.5, 0.9, 0.95, 0.99)

DIVERGENCES = (
    Divergence(
        "which requests count",
        "ok and ended inside W",
        "overlapping the window: ended after its start, started before its end",
    ),
    Divergence(
        "TPOT",
        "(end - first token) / (N - 1), first token excluded",
        "(last token - start) / N, first token (and so TTFT) included, weighted by N",
    ),
    Divergence(
        "ITL",
        "per chunk: gap / tokens in the later chunk, pooled",
        "per request: (last token - first token) / (N - 1), weighted by N - 1 (our TPOT)",
    ),
    Divergence(
        "percentiles",
        "linear interpolation over all samples (numpy's default)",
        "smallest value whose weighted cumulative probability reaches q",
    ),
    Divergence(
        "throughput",
        "tokens of requests completed in W / |W|",
        "time-weighted distribution of local rates; tokens spread evenly between first and last"
        " token, over the span of the token events",
    ),
    Divergence(
        "clock",
        "monotonic clock, chunk times per socket read",
        "time.time() per streamed line",
        gap="none: the order and gaps of the chunks are kept; only the clock source differs",
    ),
)


def _figures(
    prefix: str, dist: Weighted, unit: str, ours: str | None, *, mean: bool = True
) -> list[PeerFigure]:
    result = []
    if mean:
        result.append(
            PeerFigure(f"{prefix}.mean", dist.mean, unit, f"{ours}.mean" if ours else None)
        )
    result.append(
        PeerFigure(f"{prefix}.median", dist.median, unit, f"{ours}.p50" if ours else None)
    )
    for q, value in dist.percentiles.items():
        if q == 0.5:
            continue
        label = f"p{round(q * 100)}"
        result.append(
            PeerFigure(f"{prefix}.{label}", value, unit, f"{ours}.{label}" if ours else None)
        )
    return result


def view(requests: Requests, window: PhaseWindow) -> tuple[list[PeerFigure], dict[str, int]]:
    start = window.measure_start_s
    stop = window.measure_end_s if window.measure_end_s is not None else start
    phase_end = window.end_s if window.end_s is not None else stop
    end = np.where(np.isnan(requests.end), phase_end, requests.end)
    began = requests.sent
    with np.errstate(invalid="ignore"):
        overlaps = (end >= start) & (
            (~np.isnan(began) & (began <= stop)) | (np.isnan(began) & (end <= stop))
        )
    successful = requests.ok & overlaps
    counts = {
        "successful": int(successful.sum()),
        "incomplete": int((requests.cut & overlaps).sum()),
        "errored": int((requests.error & overlaps).sum()),
    }
    iterations = requests.chunks.astype(np.float64)
    tokens = np.where(np.isnan(requests.output_tokens), iterations, requests.output_tokens)
    tokens = np.where(tokens == 0, np.nan, tokens)  # GuideLLM: no usage and no iteration -> None
    first = requests.first_chunk()
    last = requests.last_chunk()
    last_or_end = np.where(np.isnan(last), end, last)
    s = successful
    latency = (end - began)[s]
    ttft = np.nan_to_num((first - began)[s] * 1000)  # GuideLLM: a missing TTFT counts as 0
    with np.errstate(divide="ignore", invalid="ignore"):
        tpot = ((last_or_end - began) / tokens * 1000)[s]
        itl = ((last - first) / (tokens - 1) * 1000)[s]
    tpot_weights = np.nan_to_num(tokens[s])
    itl_weights = np.where(np.isnan(tokens[s]), 0.0, tokens[s] - 1)
    itl_weights = np.where(tokens[s] <= 1, 0.0, itl_weights)
    token_times, token_weights = _output_token_timings(
        first[s], last[s], end[s], tokens[s], iterations[s]
    )
    figures = [
        PeerFigure("request_totals.successful", float(counts["successful"]), "requests"),
        PeerFigure("request_totals.incomplete", float(counts["incomplete"]), "requests"),
        PeerFigure("request_totals.errored", float(counts["errored"]), "requests"),
    ]
    figures += _figures("request_latency", weighted(latency, None, QUANTILES), "s", "e2e_s")
    figures += _figures("time_to_first_token_ms", weighted(ttft, None, QUANTILES), "ms", "ttft_s")
    figures += _figures(
        "inter_token_latency_ms",
        weighted(np.nan_to_num(itl), itl_weights, QUANTILES),
        "ms",
        "tpot_s",
    )
    figures += _figures(
        "time_per_output_token_ms",
        weighted(np.nan_to_num(tpot), tpot_weights, QUANTILES),
        "ms",
        "ntpot_s",
    )
    requests_rate = rate_distribution(end[s], None, QUANTILES, start=start, end=stop)
    tokens_rate = rate_distribution(token_times, token_weights, QUANTILES)
    figures += [
        PeerFigure(
            "requests_per_second.mean", requests_rate.mean, "req/s", "request_throughput_rps"
        ),
        PeerFigure("requests_per_second.median", requests_rate.median, "req/s"),
        PeerFigure(
            "output_tokens_per_second.mean", tokens_rate.mean, "tok/s", "output_throughput_tps"
        ),
        PeerFigure("output_tokens_per_second.median", tokens_rate.median, "tok/s"),
    ]
    return figures, counts


def _output_token_timings(
    first: FloatArray, last: FloatArray, end: FloatArray, tokens: FloatArray, iterations: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """GuideLLM's (time, tokens) events of each request's output: the first token at the first
    iteration, then the other N - 1 tokens evenly over the remaining iterations (evenly spaced
    from the first to the last token iteration); one event at the end when there is no
    iteration data."""
    times: list[FloatArray] = []
    weights: list[FloatArray] = []
    for f, last_t, e, n, k in zip(first, last, end, tokens, iterations, strict=True):
        count = 0.0 if np.isnan(n) else float(n)
        if np.isnan(f) or np.isnan(last_t) or k <= 1:
            times.append(np.asarray([e if np.isnan(last_t) else last_t]))
            weights.append(np.asarray([count]))
            continue
        spread = np.linspace(f, last_t, num=int(k))[1:]
        per = (count - 1.0) / (k - 1.0) if count > 1 else None
        times.append(np.concatenate(([f], spread if per is not None else [])))
        weights.append(
            np.concatenate(([1.0 if count else 0.0], np.full(spread.size, per) if per else []))
        )
    if not times:
        return np.empty(0), np.empty(0)
    return np.concatenate(times), np.concatenate(weights)

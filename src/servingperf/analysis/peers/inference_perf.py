"""inference-perf's figures (``summarize_requests``), from servingperf's records.

inference-perf's definitions (repository kubernetes-sigs/inference-perf, files below): every
request of a stage counts; successes are those without an error. Request latency = end - start
(the response read to its end). A streamed request's *token times* are its content chunks'
arrival times, each repeated once per token the chunk carries (the tokenizer's count of the
chunk's text), so tokens within one chunk are 0 s apart. It is *streamable* when it has more than
one token time; only then does it get TTFT = first token time - start and TPOT = (last token time
- first token time) / (N - 1), and its inter-token gaps join the pooled ITL (zeros included).
NTPOT = latency / N for every success (0 when N = 0). N = the tokenizer's count of the whole
output text (``use_server_output_tokens`` switches to the usage count). Throughputs = totals over
successes / (latest end - earliest start over every request of the stage). Client lag is
``schedule_delay`` = start - scheduled. Statistics with numpy (``np.percentile``).
"""

from __future__ import annotations

import numpy as np

from servingperf.analysis.peers.requests import Requests
from servingperf.analysis.peers.view import Divergence, PeerFigure, Source, numpy_stats
from servingperf.results.rundir import PhaseWindow

NAME = "inference-perf"
SOURCE = Source(
    tool="inference-perf",
    version="main",
    repository="github.com/kubernetes-sigs/inference-perf",
    commit="7de5ef2ed6f7934e0ecbc8297e593f79e68430c0",
    files=(
        "inference_perf/reportgen/base.py",
        "inference_perf/apis/streaming_parser.py",
        "inference_perf/apis/completion.py",
        "inference_perf/client/modelserver/openai_client.py",
    ),
)
PERCENTILES = (90.0, 95.0, 99.0)  # the median is reported on its own

DIVERGENCES = (
    Divergence(
        "which requests count",
        "ok and ended inside W",
        "every request of the stage (no window); throughput over earliest start to latest end",
    ),
    Divergence(
        "TTFT, TPOT",
        "every streamed request (TPOT: N >= 2)",
        "only requests with more than one token time",
    ),
    Divergence(
        "TPOT",
        "(end - first token) / (N - 1), end = last byte",
        "(last token time - first token time) / (N - 1)",
    ),
    Divergence(
        "ITL",
        "per chunk: gap / tokens in the later chunk",
        "per token: a chunk's tokens share its time, so a k-token chunk adds k - 1 zero gaps",
    ),
    Divergence(
        "output tokens",
        "usage count, else streamed count",
        "tokenizer count of the output text (server count only with use_server_output_tokens)",
        gap="the output text is not kept: the usage count (or streamed count) stands in, as with"
        " use_server_output_tokens; per-chunk token counts come from the stream, not a tokenizer",
    ),
)


def view(requests: Requests, window: PhaseWindow) -> tuple[list[PeerFigure], dict[str, int]]:
    counted = ~requests.cut
    success = requests.ok
    began = np.where(np.isnan(requests.sent), requests.scheduled, requests.sent)
    ended = np.where(np.isnan(requests.end), began, requests.end)
    total_time = float(np.max(ended[counted]) - np.min(began[counted])) if counted.any() else 0.0
    latency = (requests.end - requests.sent)[success]
    tokens = np.nan_to_num(requests.output_tokens)
    with np.errstate(divide="ignore", invalid="ignore"):
        ntpot = np.where(tokens > 0, (requests.end - requests.sent) / tokens, 0.0)[success]
    token_times, owners = requests.token_times(success)
    per_request = np.bincount(owners, minlength=len(requests))
    streamable = success & (per_request > 1)
    first_token = np.full(len(requests), np.nan)
    last_token = np.full(len(requests), np.nan)
    if token_times.size:
        starts = np.searchsorted(owners, np.arange(len(requests)), side="left")
        stops = np.searchsorted(owners, np.arange(len(requests)), side="right")
        has = stops > starts
        first_token[has] = token_times[starts[has]]
        last_token[has] = token_times[stops[has] - 1]
    ttft = (first_token - requests.sent)[streamable]
    with np.errstate(divide="ignore", invalid="ignore"):
        tpot_all = (last_token - first_token) / (tokens - 1)
    tpot = tpot_all[streamable & (tokens > 1)]
    same = owners[1:] == owners[:-1] if owners.size > 1 else np.zeros(0, bool)
    in_streamable = streamable[owners[1:]] if owners.size > 1 else np.zeros(0, bool)
    itl = np.diff(token_times)[same & in_streamable] if token_times.size > 1 else np.empty(0)
    lag = (requests.sent - requests.scheduled)[counted]
    input_total = float(np.nansum(requests.input_tokens[success]))
    output_total = float(tokens[success].sum())

    def per_s(total: float) -> float:
        return total / total_time if total_time > 0 else 0.0

    figures = [
        PeerFigure("load_summary.count", float(counted.sum()), "requests"),
        PeerFigure("successes.count", float(success.sum()), "requests"),
        PeerFigure("failures.count", float(requests.error.sum()), "requests"),
        PeerFigure("benchmark_time_seconds", total_time, "s"),
        PeerFigure(
            "throughput.requests_per_sec",
            per_s(float(success.sum())),
            "req/s",
            "request_throughput_rps",
        ),
        PeerFigure(
            "throughput.output_tokens_per_sec",
            per_s(output_total),
            "tok/s",
            "output_throughput_tps",
        ),
        PeerFigure(
            "throughput.input_tokens_per_sec", per_s(input_total), "tok/s", "input_throughput_tps"
        ),
    ]
    names = {"median": "median", "mean": "mean", "std": "std"}
    for prefix, values, ours in (
        ("latency.request_latency", latency, "e2e_s"),
        ("latency.normalized_time_per_output_token", ntpot, "ntpot_s"),
        ("latency.time_per_output_token", tpot, "tpot_s"),
        ("latency.time_to_first_token", ttft, "ttft_s"),
        ("latency.inter_token_latency", itl, "itl_s"),
        ("load_summary.schedule_delay", lag, "client_lag_s"),
    ):
        stats = numpy_stats(
            prefix,
            values,
            "s",
            ours,
            PERCENTILES,
            names={k: f"{prefix}.{v}" for k, v in names.items()}
            | {f"p{p:g}": f"{prefix}.p{p:g}" for p in PERCENTILES},
        )
        figures += [f for f in stats if not f.name.endswith(".std")]
    counts = {
        "requests": int(counted.sum()),
        "successes": int(success.sum()),
        "failures": int(requests.error.sum()),
        "cut": int(requests.cut.sum()),
    }
    return figures, counts

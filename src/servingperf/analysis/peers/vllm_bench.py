"""vLLM ``bench serve``'s figures (``calculate_metrics``), from servingperf's records.

vLLM's definitions (``vllm/benchmarks/serve.py`` and ``vllm/benchmarks/lib/endpoint_request_func.py``
of vLLM 0.32.0): a request succeeds when at least one streamed chunk with ``choices`` arrived;
TTFT = that first chunk - start; latency (E2EL) = the last ``choices`` chunk - start (not the last
byte: the trailing usage chunk and ``[DONE]`` are not counted); output length = the server's
``completion_tokens``; TPOT = (latency - TTFT) / (output length - 1) for output length > 1; ITL =
every gap between consecutive ``choices`` chunks, pooled over requests and *not* divided by the
tokens a chunk carries; throughputs = totals over successful requests / benchmark duration, the
time from before the first request to after the last one finished, with no warm-up window;
statistics with numpy (mean, population std, median, ``np.percentile`` linear interpolation).

Our records: a chunk with ``choices`` but empty text (a role-only or a finish-only chunk) is not
recorded, so TTFT and latency use the first and last *token-bearing* chunks; the benchmark
duration becomes the earliest scheduled time to the latest end of a finished request (cut requests
do not exist for vLLM, whose benchmark waits for every request, and are left out).
"""

from __future__ import annotations

import numpy as np

from servingperf.analysis.peers.requests import Requests
from servingperf.analysis.peers.view import Divergence, PeerFigure, Source, numpy_stats
from servingperf.results.rundir import PhaseWindow

NAME = "vllm-bench"
SOURCE = Source(
    tool="vLLM bench serve",
    version="0.32.0",
    repository="github.com/vllm-project/vllm",
    commit="v0.32.0 (installed wheel vllm-0.32.0)",
    files=("vllm/benchmarks/serve.py", "vllm/benchmarks/lib/endpoint_request_func.py"),
)
PERCENTILES = (90.0, 95.0, 99.0)  # the median is reported on its own

DIVERGENCES = (
    Divergence(
        "which requests count",
        "measured: ok and ended inside the measurement window W (after the ramp-up)",
        "every request the benchmark sent; no warm-up window",
    ),
    Divergence(
        "throughput window",
        "|W|, throughput of requests completed inside W",
        "benchmark duration: first request to the last response",
    ),
    Divergence(
        "first chunk",
        "first chunk carrying an output token",
        "first chunk with non-empty `choices`, even with empty text (a chat role-only delta)",
        gap="chunks with `choices` but no text are not recorded: a chat stream's role chunk, if it"
        " arrives before the first token, is missed (vLLM sends it in the same step)",
    ),
    Divergence(
        "end of a request",
        "last byte of the response (after the usage chunk and [DONE])",
        "last chunk with `choices`",
        gap="a finish-only chunk (empty text) after the last token is not recorded; the view ends"
        " at the last token-bearing chunk",
    ),
    Divergence(
        "TPOT",
        "(end - first token) / (N - 1)",
        "(last choices chunk - first choices chunk) / (N - 1)",
    ),
    Divergence(
        "ITL",
        "gap between token-bearing chunks / tokens in the later chunk, one sample per chunk",
        "gap between `choices` chunks, not divided by tokens (a multi-token chunk is one long gap)",
    ),
    Divergence(
        "output tokens",
        "usage count, else streamed count",
        "usage count, else the tokenizer's count of the generated text",
        gap="the generated text is not kept: without usage the streamed count stands in",
    ),
)


def view(requests: Requests, window: PhaseWindow) -> tuple[list[PeerFigure], dict[str, int]]:
    chunks = requests.chunks
    success = requests.ok & (chunks > 0)
    failed = requests.error | (requests.ok & (chunks == 0))
    first = requests.first_chunk()
    last = requests.last_chunk()
    ttft = (first - requests.sent)[success]
    latency = (last - requests.sent)[success]
    streamed_count = requests.streamed_tokens()
    output = np.where(
        np.isnan(requests.output_tokens) | (requests.output_tokens == 0),
        streamed_count,
        requests.output_tokens,
    )[success]
    with np.errstate(divide="ignore", invalid="ignore"):
        tpot = np.where(output > 1, (latency - ttft) / (output - 1), np.nan)
    itl = requests.chunk_gaps(success)
    finished = success | failed
    started = float(np.nanmin(requests.scheduled)) if len(requests) else 0.0
    ended = float(np.nanmax(requests.end[finished])) if finished.any() else started
    duration = ended - started
    total_output = float(output.sum())
    total_input = float(np.nansum(requests.input_tokens[success]))
    completed = int(success.sum())

    def per_s(total: float) -> float | None:
        return total / duration if duration > 0 else None

    figures = [
        PeerFigure("duration", duration, "s"),
        PeerFigure("completed", float(completed), "requests"),
        PeerFigure("failed", float(failed.sum()), "requests"),
        PeerFigure("total_input_tokens", total_input, "tokens"),
        PeerFigure("total_output_tokens", total_output, "tokens"),
        PeerFigure("request_throughput", per_s(completed), "req/s", "request_throughput_rps"),
        PeerFigure("output_throughput", per_s(total_output), "tok/s", "output_throughput_tps"),
        PeerFigure("total_token_throughput", per_s(total_output + total_input), "tok/s"),
    ]
    for prefix, values, ours in (
        ("ttft_ms", ttft, "ttft_s"),
        ("tpot_ms", tpot, "tpot_s"),
        ("itl_ms", itl, "itl_s"),
        ("e2el_ms", latency, "e2e_s"),
    ):
        figures += numpy_stats(prefix, values * 1000, "ms", ours, PERCENTILES, empty_as_zero=True)
    counts = {"completed": completed, "failed": int(failed.sum()), "cut": int(requests.cut.sum())}
    return figures, counts

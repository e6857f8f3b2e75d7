"""A serving engine's own Prometheus counters as the referee of servingperf's records.

Terms. A *snapshot* is the engine's ``/metrics`` text parsed into the figures compared here
(:class:`EngineCounters`), read with prometheus_client's text parser; a *delta* is the difference
of two snapshots, taken before and after a run (an engine is shared by the tests of a session, so
only deltas mean anything). vLLM's names: ``vllm:request_success_total{finished_reason=...}``
(requests the engine finished, by reason: ``stop``, ``length``, ``abort``, ``error``,
``repetition``), ``vllm:prompt_tokens_total`` and ``vllm:generation_tokens_total`` (tokens of
every request it processed, finished or not), and histograms whose ``_sum`` / ``_count`` deltas
give the server's mean TTFT and E2E latency over the run's requests.

:func:`count_mismatches` is the exact check of the real-engine tests: every ok record is one
request the engine finished (``stop`` or ``length``) and the reverse, and the prompt and
generation token counters moved by exactly the records' sums. It is pure, so that a test can show
it fails on a dropped or a duplicated record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

FINISHED = ("stop", "length")  # finish reasons of requests that completed normally


@dataclass(frozen=True)
class EngineCounters:
    """The figures of one ``/metrics`` snapshot (or of a delta of two), summed over labels."""

    success: Mapping[str, float] = field(default_factory=dict)  # by finished_reason
    prompt_tokens: float = 0.0
    generation_tokens: float = 0.0
    ttft_sum_s: float = 0.0
    ttft_count: float = 0.0
    e2e_sum_s: float = 0.0
    e2e_count: float = 0.0
    queue_sum_s: float = 0.0
    queue_count: float = 0.0
    tpot_sum_s: float = 0.0  # vLLM's request_time_per_output_token: decode time / (N - 1)
    tpot_count: float = 0.0
    itl_sum_s: float = 0.0  # vLLM's inter_token_latency: one sample per generated token
    itl_count: float = 0.0
    running: float = 0.0  # gauge: requests in the engine's batch (not a delta)
    waiting: float = 0.0  # gauge: requests queued in the engine

    def minus(self, before: EngineCounters) -> EngineCounters:
        """The change since ``before``; the gauges are this snapshot's."""
        reasons = set(self.success) | set(before.success)
        return EngineCounters(
            success={r: self.success.get(r, 0.0) - before.success.get(r, 0.0) for r in reasons},
            prompt_tokens=self.prompt_tokens - before.prompt_tokens,
            generation_tokens=self.generation_tokens - before.generation_tokens,
            ttft_sum_s=self.ttft_sum_s - before.ttft_sum_s,
            ttft_count=self.ttft_count - before.ttft_count,
            e2e_sum_s=self.e2e_sum_s - before.e2e_sum_s,
            e2e_count=self.e2e_count - before.e2e_count,
            queue_sum_s=self.queue_sum_s - before.queue_sum_s,
            queue_count=self.queue_count - before.queue_count,
            tpot_sum_s=self.tpot_sum_s - before.tpot_sum_s,
            tpot_count=self.tpot_count - before.tpot_count,
            itl_sum_s=self.itl_sum_s - before.itl_sum_s,
            itl_count=self.itl_count - before.itl_count,
            running=self.running,
            waiting=self.waiting,
        )

    @property
    def finished(self) -> float:
        return sum(self.success.get(reason, 0.0) for reason in FINISHED)

    @property
    def ttft_mean_s(self) -> float | None:
        return self.ttft_sum_s / self.ttft_count if self.ttft_count else None

    @property
    def e2e_mean_s(self) -> float | None:
        return self.e2e_sum_s / self.e2e_count if self.e2e_count else None

    @property
    def tpot_mean_s(self) -> float | None:
        return self.tpot_sum_s / self.tpot_count if self.tpot_count else None

    @property
    def itl_mean_s(self) -> float | None:
        return self.itl_sum_s / self.itl_count if self.itl_count else None


_SAMPLES = {
    "vllm:prompt_tokens_total": "prompt_tokens",
    "vllm:generation_tokens_total": "generation_tokens",
    "vllm:time_to_first_token_seconds_sum": "ttft_sum_s",
    "vllm:time_to_first_token_seconds_count": "ttft_count",
    "vllm:e2e_request_latency_seconds_sum": "e2e_sum_s",
    "vllm:e2e_request_latency_seconds_count": "e2e_count",
    "vllm:request_queue_time_seconds_sum": "queue_sum_s",
    "vllm:request_queue_time_seconds_count": "queue_count",
    "vllm:request_time_per_output_token_seconds_sum": "tpot_sum_s",
    "vllm:request_time_per_output_token_seconds_count": "tpot_count",
    "vllm:inter_token_latency_seconds_sum": "itl_sum_s",
    "vllm:inter_token_latency_seconds_count": "itl_count",
    "vllm:num_requests_running": "running",
    "vllm:num_requests_waiting": "waiting",
}


def parse_counters(text: str) -> EngineCounters:
    """A vLLM ``/metrics`` text as :class:`EngineCounters` (samples of every model and engine
    label summed; absent metrics are 0)."""
    values: dict[str, float] = dict.fromkeys(_SAMPLES.values(), 0.0)
    success: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "vllm:request_success_total":
                success[sample.labels.get("finished_reason", "")] += sample.value
            elif sample.name in _SAMPLES:
                values[_SAMPLES[sample.name]] += sample.value
    return EngineCounters(success=dict(success), **values)


def count_mismatches(records: Iterable[Mapping[str, Any]], delta: EngineCounters) -> list[str]:
    """Every way the run's records and the engine's counter deltas disagree (empty: exact).

    Requires: no record was cut or failed (a cut request is aborted by the engine, which counts its
    partial tokens but no finish), request ids are unique, the ok records' finish reasons match
    the engine's ``stop`` / ``length`` counts one for one, and the prompt and generation token
    counters moved by exactly the ok records' input and output token sums.
    """
    rows = list(records)
    problems: list[str] = []
    ids = Counter(str(r["request_id"]) for r in rows)
    repeated = sorted(i for i, n in ids.items() if n > 1)
    if repeated:
        problems.append(f"request ids recorded more than once: {repeated[:5]}")
    not_ok = Counter(f"{r['status']}/{r['error_kind']}" for r in rows if r["status"] != "ok")
    if not_ok:
        problems.append(f"records that are not ok: {dict(not_ok)}")
    ok = [r for r in rows if r["status"] == "ok"]
    reasons = Counter(str(r["finish_reason"]) for r in ok)
    for reason in sorted(set(reasons) | set(FINISHED)):
        engine = delta.success.get(reason, 0.0)
        if reasons.get(reason, 0) != engine:
            problems.append(
                f"finish reason {reason!r}: {reasons.get(reason, 0)} ok records, engine {engine:g}"
            )
    for reason in ("abort", "error", "repetition"):
        if delta.success.get(reason, 0.0):
            problems.append(f"engine finished {delta.success[reason]:g} requests as {reason!r}")
    prompt = sum(int(r["input_tokens"] or 0) for r in ok)
    generated = sum(int(r["output_tokens"] or 0) for r in ok)
    if prompt != delta.prompt_tokens:
        problems.append(f"prompt tokens: records {prompt}, engine {delta.prompt_tokens:g}")
    if generated != delta.generation_tokens:
        problems.append(
            f"generation tokens: records {generated}, engine {delta.generation_tokens:g}"
        )
    missing_usage = sum(1 for r in ok if r["token_source"] != "usage")
    if missing_usage:
        problems.append(f"{missing_usage} ok records without the server's usage counts")
    return problems

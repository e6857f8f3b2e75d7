"""The emulator's ``/metrics``: vLLM's Prometheus metrics, computed from the emulated engine.

Terms. The exposition uses vLLM's (0.32) metric names, types, label names and histogram bucket
bounds, so one servingperf code path reads an emulator and a real vLLM alike (a test compares the
two name for name against the real engine). Labels: ``engine="0"`` (vLLM's engine index; one
emulated device is one engine) and ``model_name`` (the served model id); ``finished_reason`` on
``vllm:request_success_total``. Every figure is taken at the engine's own moments
(:class:`~servingperf.emulator.engine.EngineObserver`), with vLLM's definitions:

- TTFT = first token - submission (observed at the first token, also for a request cancelled
  later); prompt and prefix-cache query tokens are counted at the first token (prefill done);
- per *finished* request: ``request_success_total{finished_reason}``, E2E = last token -
  submission, queue = admission - submission, prefill = first token - admission, decode = last
  token - first token, inference = last token - admission, time per output token = decode /
  (N - 1) (0 when N = 1), prompt and generation token histograms;
- a request cancelled by its client (it went away, or the harness cut it) counts only its tokens
  produced so far and its TTFT: vLLM 0.32 records a client abort in no finished-request metric
  (checked on the real engine); an engine that stops counts ``finished_reason="abort"``;
- ITL: one sample per token that is not a request's first, the gap since the previous step;
- ``iteration_tokens_total``: per step, prompt tokens admitted + tokens produced.

Token histograms use vLLM's 1-2-5 buckets for a ``max_model_len`` of ``MAX_MODEL_LEN`` (4,096).
What the emulator does not have reads as vLLM reads without it: prefix-cache hits 0 (queries are
the prompt tokens), preemptions 0. ``kv_cache_usage_perc`` is the tokens held by running
sequences (prompt + produced) over a cache of ``max_batch`` x ``KV_TOKENS_PER_SEQUENCE`` tokens.
Device-wide figures (KV usage, step tokens) are repeated under each model id of a shared device;
per-request and per-model figures (running, waiting, tokens, latencies) are each model's own.
With LoRA adapter slots (``max_loras`` > 0), ``vllm:lora_requests_info`` is vLLM's: one gauge
sample set to the wall-clock time of the render, its labels ``max_lora`` and the comma-joined
adapters of the running (``running_lora_adapters``) and the queued (``waiting_lora_adapters``)
sequences, in order of first appearance. vLLM's ``*_created`` series (prometheus_client's
default) are left out. No prometheus_client in
this process: the text is written here (one emulator process per instance; docs/emulator.md).
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Sequence as Seq

from servingperf.emulator.engine import Engine, Sequence, SequenceState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
KV_TOKENS_PER_SEQUENCE = 2048
FINISHED_REASONS = ("stop", "length", "abort", "error", "repetition")

# vLLM 0.32's bucket bounds (vllm/v1/metrics/loggers.py), as its exposition shows them.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
               10.0, 20.0, 40.0, 80.0)  # fmt: skip
REQUEST_TIME_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0,
                        50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip
# vLLM caps its token-count buckets (a 1-2-5 series) at the model's max_model_len: the emulator's
# models are taken as 4,096 tokens long.
MAX_MODEL_LEN = 4096
TOKEN_BUCKETS = tuple(
    float(m * 10**e) for e in range(5) for m in (1, 2, 5) if m * 10**e <= MAX_MODEL_LEN
)
ITERATION_BUCKETS = (1.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
                     8192.0, 16384.0)  # fmt: skip
PREEMPTION_BUCKETS = (1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0)


class Histogram:
    """Cumulative-at-render bucket counts, a sum and a count (Prometheus histogram semantics)."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Seq[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float, times: int = 1) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += times
        self.sum += value * times
        self.count += times


class _ModelStats:
    """Counters and histograms of one model id (names as in vLLM)."""

    __slots__ = (
        "decode",
        "e2e",
        "ended_generation_tokens",
        "inference",
        "itl",
        "prefill",
        "prefix_hit_tokens",
        "prompt_tokens",
        "queue",
        "request_generation_tokens",
        "request_preemptions",
        "request_prompt_tokens",
        "success",
        "tpot",
        "ttft",
    )

    def __init__(self) -> None:
        self.prefix_hit_tokens = 0
        self.prompt_tokens = 0
        self.ended_generation_tokens = 0  # tokens of sequences that left the engine
        self.success = dict.fromkeys(FINISHED_REASONS, 0)
        self.ttft = Histogram(TTFT_BUCKETS)
        self.itl = Histogram(ITL_BUCKETS)
        self.tpot = Histogram(ITL_BUCKETS)
        self.e2e = Histogram(REQUEST_TIME_BUCKETS)
        self.queue = Histogram(REQUEST_TIME_BUCKETS)
        self.inference = Histogram(REQUEST_TIME_BUCKETS)
        self.prefill = Histogram(REQUEST_TIME_BUCKETS)
        self.decode = Histogram(REQUEST_TIME_BUCKETS)
        self.request_prompt_tokens = Histogram(TOKEN_BUCKETS)
        self.request_generation_tokens = Histogram(TOKEN_BUCKETS)
        self.request_preemptions = Histogram(PREEMPTION_BUCKETS)


class EngineMetrics:
    """The metrics of one engine and the model ids it serves; the engine's observer.

    Attach with :meth:`attach` (sets ``engine.observer``); :meth:`render` writes the exposition.
    """

    def __init__(self, engine: Engine, model_ids: Seq[str]) -> None:
        self._engine = engine
        self._models: dict[str, _ModelStats] = {}
        self._single: _ModelStats | None = None
        self.add_models(model_ids)
        self._iteration = Histogram(ITERATION_BUCKETS)
        self._kv_capacity = max(1, engine.profile.max_batch) * KV_TOKENS_PER_SEQUENCE

    def attach(self) -> EngineMetrics:
        self._engine.observer = self
        return self

    @property
    def model_ids(self) -> tuple[str, ...]:
        return tuple(self._models)

    def add_models(self, model_ids: Seq[str]) -> None:
        """Serve more model ids on this engine (a shared engine learning its models as they
        come); the known ones keep their figures."""
        for model in model_ids:
            self._models.setdefault(model, _ModelStats())
        self._single = next(iter(self._models.values())) if len(self._models) == 1 else None

    def _stats(self, seq: Sequence) -> _ModelStats | None:
        return self._single if self._single is not None else self._models.get(seq.model)

    # --- EngineObserver ------------------------------------------------------------------------

    def first_token(self, seq: Sequence, now: float) -> None:
        stats = self._stats(seq)
        if stats is None:
            return
        stats.ttft.observe(now - seq.submitted_at)
        stats.prompt_tokens += seq.prompt_tokens
        stats.prefix_hit_tokens += seq.cached_tokens

    def ended(self, seq: Sequence, now: float) -> None:
        stats = self._stats(seq)
        if stats is None:
            return
        stats.ended_generation_tokens += seq.produced
        if seq.state is SequenceState.FINISHED:
            reason = seq.finish_reason if seq.finish_reason in stats.success else "length"
        elif seq.state is SequenceState.ABORTED:
            reason = "abort"
        else:
            return  # cancelled by its client: vLLM records no finished request
        stats.success[reason] += 1
        end = seq.finished_at if seq.finished_at is not None else now
        admitted = seq.admitted_at if seq.admitted_at is not None else end
        first = seq.first_token_at if seq.first_token_at is not None else end
        decode_s = end - first
        stats.e2e.observe(end - seq.submitted_at)
        stats.queue.observe(admitted - seq.submitted_at)
        stats.prefill.observe(first - admitted)
        stats.decode.observe(decode_s)
        stats.inference.observe(end - admitted)
        stats.tpot.observe(decode_s / (seq.produced - 1) if seq.produced > 1 else 0.0)
        stats.request_prompt_tokens.observe(seq.prompt_tokens)
        stats.request_generation_tokens.observe(seq.produced)
        stats.request_preemptions.observe(0.0)

    def step(
        self, now: float, gap_s: float, continuing: int, step_tokens: int, batch: list[Sequence]
    ) -> None:
        self._iteration.observe(step_tokens)
        if not continuing:
            return
        if self._single is not None:
            self._single.itl.observe(gap_s, continuing)
            return
        for seq in batch:  # a shared device: each token's gap goes to its own model
            produced_now = seq.state is SequenceState.RUNNING or seq.state is SequenceState.FINISHED
            if produced_now and seq.produced > 1:
                stats = self._models.get(seq.model)
                if stats is not None:
                    stats.itl.observe(gap_s)

    # --- exposition ----------------------------------------------------------------------------

    def render(self, only: Seq[str] | None = None) -> bytes:
        """The Prometheus text exposition (format 0.0.4) of every model of this engine, or of
        the ``only`` ones."""
        running, queued = self._engine.sequences()
        held = sum(s.prompt_tokens + s.produced for s in running)
        kv_usage = min(1.0, held / self._kv_capacity)
        models = (
            self._models
            if only is None
            else {m: self._models[m] for m in only if m in self._models}
        )
        run_by = dict.fromkeys(models, 0)
        wait_by = dict.fromkeys(models, 0)
        live_tokens = dict.fromkeys(models, 0)
        for seq in running:
            key = self._key(seq)
            if key in run_by:
                run_by[key] += 1
                live_tokens[key] += seq.produced
        for seq in queued:
            key = self._key(seq)
            if key in wait_by:
                wait_by[key] += 1
        scalars: tuple[tuple[str, str, dict[str, float]], ...] = (
            ("vllm:num_requests_running", "gauge", dict(run_by)),
            ("vllm:num_requests_waiting", "gauge", dict(wait_by)),
            ("vllm:kv_cache_usage_perc", "gauge", dict.fromkeys(models, kv_usage)),
            ("vllm:prefix_cache_queries_total", "counter", _each(models, "prompt_tokens")),
            ("vllm:prefix_cache_hits_total", "counter", _each(models, "prefix_hit_tokens")),
            ("vllm:num_preemptions_total", "counter", dict.fromkeys(models, 0.0)),
            ("vllm:prompt_tokens_total", "counter", _each(models, "prompt_tokens")),
            (
                "vllm:generation_tokens_total",
                "counter",
                {m: s.ended_generation_tokens + live_tokens[m] for m, s in models.items()},
            ),
        )
        out = _Writer()
        if self._engine.adapter_slots is not None:
            self._lora_info(out, running, queued)
        for name, kind, values in scalars:
            out.family(name, kind)
            for model, value in values.items():
                out.sample(name, model, value)
        out.family("vllm:request_success_total", "counter")
        for model, stats in models.items():
            for reason, count in stats.success.items():
                out.sample("vllm:request_success_total", model, count, ("finished_reason", reason))
        for name, attribute in _HISTOGRAMS:
            out.family(name, "histogram")
            for model, stats in models.items():
                histogram = self._iteration if attribute == "" else getattr(stats, attribute)
                out.histogram(name, model, histogram)
        return out.bytes()

    def _lora_info(self, out: _Writer, running: list[Sequence], queued: list[Sequence]) -> None:
        slots = self._engine.adapter_slots
        assert slots is not None
        adapters = self._engine.adapter_ids
        labels = [
            ("max_lora", str(slots.max_resident)),
            ("running_lora_adapters", ",".join(dict.fromkeys(
                s.model for s in running if s.model in adapters))),
            ("waiting_lora_adapters", ",".join(dict.fromkeys(
                s.model for s in queued if s.model in adapters))),
        ]  # fmt: skip
        out.family("vllm:lora_requests_info", "gauge")
        out.raw(f"vllm:lora_requests_info{{{_labels(labels)}}} {_number(time.time())}\n")

    def _key(self, seq: Sequence) -> str:
        if self._single is not None:
            return next(iter(self._models))
        return seq.model


def _each(models: dict[str, _ModelStats], attribute: str) -> dict[str, float]:
    return {model: float(getattr(stats, attribute)) for model, stats in models.items()}


# Histogram families in vLLM's order: name, attribute of _ModelStats ("" = the device's steps).
_HISTOGRAMS = (
    ("vllm:request_prompt_tokens", "request_prompt_tokens"),
    ("vllm:request_generation_tokens", "request_generation_tokens"),
    ("vllm:iteration_tokens_total", ""),
    ("vllm:time_to_first_token_seconds", "ttft"),
    ("vllm:inter_token_latency_seconds", "itl"),
    ("vllm:request_time_per_output_token_seconds", "tpot"),
    ("vllm:e2e_request_latency_seconds", "e2e"),
    ("vllm:request_queue_time_seconds", "queue"),
    ("vllm:request_inference_time_seconds", "inference"),
    ("vllm:request_prefill_time_seconds", "prefill"),
    ("vllm:request_decode_time_seconds", "decode"),
    ("vllm:request_num_preemptions", "request_preemptions"),
)

# vLLM's help texts, so that a reader of either exposition reads the same words.
HELP = {
    "vllm:lora_requests_info": "Running stats on lora requests.",
    "vllm:num_requests_running": "Number of requests in model execution batches.",
    "vllm:num_requests_waiting": "Number of requests waiting to be processed.",
    "vllm:kv_cache_usage_perc": "KV-cache usage. 1 means 100 percent usage.",
    "vllm:prefix_cache_queries_total": "Prefix cache queries, in terms of number of queried tokens.",
    "vllm:prefix_cache_hits_total": "Prefix cache hits, in terms of number of cached tokens.",
    "vllm:num_preemptions_total": "Cumulative number of preemption from the engine.",
    "vllm:prompt_tokens_total": "Number of prefill tokens processed.",
    "vllm:generation_tokens_total": "Number of generation tokens processed.",
    "vllm:request_success_total": "Count of successfully processed requests.",
    "vllm:request_prompt_tokens": "Number of prefill tokens processed.",
    "vllm:request_generation_tokens": "Number of generation tokens processed.",
    "vllm:iteration_tokens_total": "Histogram of number of tokens per engine_step.",
    "vllm:time_to_first_token_seconds": "Histogram of time to first token in seconds.",
    "vllm:inter_token_latency_seconds": "Histogram of inter-token latency in seconds.",
    "vllm:request_time_per_output_token_seconds": (
        "Histogram of time_per_output_token_seconds per request."
    ),
    "vllm:e2e_request_latency_seconds": "Histogram of e2e request latency in seconds.",
    "vllm:request_queue_time_seconds": "Histogram of time spent in WAITING phase for request.",
    "vllm:request_inference_time_seconds": "Histogram of time spent in RUNNING phase for request.",
    "vllm:request_prefill_time_seconds": "Histogram of time spent in PREFILL phase for request.",
    "vllm:request_decode_time_seconds": "Histogram of time spent in DECODE phase for request.",
    "vllm:request_num_preemptions": "Histogram of the number of times a request was preempted.",
}


def _number(value: float) -> str:
    return repr(float(value))


class _Writer:
    """Builds exposition text; label sets are written sorted by name, as vLLM's are."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[str] = []

    def family(self, name: str, kind: str) -> None:
        self._parts.append(f"# HELP {name} {HELP[name]}\n# TYPE {name} {kind}\n")

    def sample(
        self, name: str, model: str, value: float, extra: tuple[str, str] | None = None
    ) -> None:
        labels = [("engine", "0"), ("model_name", model)]
        if extra is not None:
            labels.append(extra)
        self._parts.append(f"{name}{{{_labels(labels)}}} {_number(value)}\n")

    def raw(self, line: str) -> None:
        self._parts.append(line)

    def histogram(self, name: str, model: str, histogram: Histogram) -> None:
        cumulative = 0
        parts = self._parts
        tail = f'model_name="{_escape(model)}"}}'
        for bound, count in zip((*histogram.bounds, None), histogram.counts, strict=True):
            cumulative += count
            le = "+Inf" if bound is None else _number(bound)
            parts.append(f'{name}_bucket{{engine="0",le="{le}",{tail} {_number(cumulative)}\n')
        parts.append(f'{name}_count{{engine="0",{tail} {_number(histogram.count)}\n')
        parts.append(f'{name}_sum{{engine="0",{tail} {_number(histogram.sum)}\n')

    def bytes(self) -> bytes:
        return "".join(self._parts).encode()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: list[tuple[str, str]]) -> str:
    return ",".join(f'{key}="{_escape(value)}"' for key, value in sorted(pairs))

"""The built-in Prometheus query sets: what a performance engineer asks a cluster's Prometheus
first when a latency moves (pure data).

Terms. A *query* has a name (the ``name`` column of its samples in
``metrics/prometheus-*.parquet``), PromQL, and the set it belongs to. ``{rate}`` in PromQL stands
for the rate window (``metrics.prometheus.rate_window_s``, written as Prometheus duration). Sets:

- ``vllm``: the engines (running and waiting requests, KV-cache usage, queue / prefill / decode
  time means, TTFT p90, prefix-cache hit rate, preemptions, token rates, finished requests);
- ``kserve``: controller-runtime controllers, KServe's among them (reconcile rate, errors and
  time, work-queue depth, queueing latency and adds);
- ``apiserver``: kube-apiserver request latency (p99 by verb, watches excluded) and rate;
- ``node``: node CPU and memory, and GPU utilisation and memory (NVIDIA DCGM exporter names)
  *when present*: a query that finds no series is recorded with 0 series, not as an error.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PromQuery:
    name: str
    promql: str
    query_set: str


def _mean(metric: str, by: str) -> str:
    return (
        f"sum by ({by}) (rate({metric}_sum[{{rate}}]))"
        f" / sum by ({by}) (rate({metric}_count[{{rate}}]))"
    )


def _quantile(q: float, metric: str, by: str) -> str:
    return f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket[{{rate}}])))"


VLLM = (
    PromQuery("vllm_running", "sum by (model_name) (vllm:num_requests_running)", "vllm"),
    PromQuery("vllm_waiting", "sum by (model_name) (vllm:num_requests_waiting)", "vllm"),
    PromQuery("vllm_kv_cache_usage", "max by (model_name) (vllm:kv_cache_usage_perc)", "vllm"),
    PromQuery(
        "vllm_queue_time_mean_s", _mean("vllm:request_queue_time_seconds", "model_name"), "vllm"
    ),
    PromQuery(
        "vllm_prefill_time_mean_s",
        _mean("vllm:request_prefill_time_seconds", "model_name"),
        "vllm",
    ),
    PromQuery(
        "vllm_decode_time_mean_s", _mean("vllm:request_decode_time_seconds", "model_name"), "vllm"
    ),
    PromQuery(
        "vllm_ttft_p90_s",
        _quantile(0.9, "vllm:time_to_first_token_seconds", "model_name"),
        "vllm",
    ),
    PromQuery(
        "vllm_prefix_cache_hit_rate",
        "sum by (model_name) (rate(vllm:prefix_cache_hits_total[{rate}]))"
        " / sum by (model_name) (rate(vllm:prefix_cache_queries_total[{rate}]))",
        "vllm",
    ),
    PromQuery(
        "vllm_preemptions_rate",
        "sum by (model_name) (rate(vllm:num_preemptions_total[{rate}]))",
        "vllm",
    ),
    PromQuery(
        "vllm_generation_tokens_rate",
        "sum by (model_name) (rate(vllm:generation_tokens_total[{rate}]))",
        "vllm",
    ),
    PromQuery(
        "vllm_prompt_tokens_rate",
        "sum by (model_name) (rate(vllm:prompt_tokens_total[{rate}]))",
        "vllm",
    ),
    PromQuery(
        "vllm_request_success",
        "sum by (model_name, finished_reason) (vllm:request_success_total)",
        "vllm",
    ),
)

KSERVE = (
    PromQuery(
        "controller_reconcile_rate",
        "sum by (controller, result) (rate(controller_runtime_reconcile_total[{rate}]))",
        "kserve",
    ),
    PromQuery(
        "controller_reconcile_errors_rate",
        "sum by (controller) (rate(controller_runtime_reconcile_errors_total[{rate}]))",
        "kserve",
    ),
    PromQuery(
        "controller_reconcile_time_p90_s",
        _quantile(0.9, "controller_runtime_reconcile_time_seconds", "controller"),
        "kserve",
    ),
    PromQuery(
        "controller_reconcile_time_mean_s",
        _mean("controller_runtime_reconcile_time_seconds", "controller"),
        "kserve",
    ),
    PromQuery("workqueue_depth", "sum by (name) (workqueue_depth)", "kserve"),
    PromQuery(
        "workqueue_queue_duration_p90_s",
        _quantile(0.9, "workqueue_queue_duration_seconds", "name"),
        "kserve",
    ),
    PromQuery(
        "workqueue_adds_rate", "sum by (name) (rate(workqueue_adds_total[{rate}]))", "kserve"
    ),
)

APISERVER = (
    PromQuery(
        "apiserver_request_latency_p99_s",
        "histogram_quantile(0.99, sum by (le, verb) (rate(apiserver_request_duration_seconds_bucket"
        '{verb!~"WATCH|CONNECT"}[{rate}])))',
        "apiserver",
    ),
    PromQuery(
        "apiserver_request_rate",
        "sum by (verb, code) (rate(apiserver_request_total[{rate}]))",
        "apiserver",
    ),
)

NODE = (
    PromQuery(
        "node_cpu_utilisation",
        '1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[{rate}]))',
        "node",
    ),
    PromQuery(
        "node_memory_available_bytes", "sum by (instance) (node_memory_MemAvailable_bytes)", "node"
    ),
    PromQuery("gpu_utilisation", "avg by (Hostname, gpu) (DCGM_FI_DEV_GPU_UTIL)", "node"),
    PromQuery("gpu_memory_used_mib", "sum by (Hostname, gpu) (DCGM_FI_DEV_FB_USED)", "node"),
)

QUERY_SETS: dict[str, tuple[PromQuery, ...]] = {
    "vllm": VLLM,
    "kserve": KSERVE,
    "apiserver": APISERVER,
    "node": NODE,
}


def prom_duration(seconds: float) -> str:
    """``seconds`` as a Prometheus duration (whole milliseconds: ``1500ms``, ``30s``)."""
    millis = max(1, round(seconds * 1000))
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def resolve(sets: tuple[str, ...], extra: dict[str, str], rate_window_s: float) -> list[PromQuery]:
    """The queries of ``sets`` then the ``extra`` ones (name -> PromQL), ``{rate}`` filled in.
    KeyError names an unknown set (the spec validates names first)."""
    window = prom_duration(rate_window_s)
    chosen = [q for name in sets for q in QUERY_SETS[name]]
    chosen += [PromQuery(name, promql, "custom") for name, promql in extra.items()]
    return [PromQuery(q.name, q.promql.replace("{rate}", window), q.query_set) for q in chosen]

"""The llm-d-benchmark *benchmark report* (version 0.2.1) of each load window of a run.

Format: ``llmdbenchmark/analysis/benchmark_report/br_v0_2_1_json_schema.json`` and
``schema_v0_2.py`` / ``base.py`` (unit rules) of github.com/llm-d/llm-d-benchmark at
8bc9f1ddd873a24f1657d6cca2e0d0fb6947dd36: ``version``, ``run`` (``uid`` required), ``scenario``
(``stack`` of components, ``load``) and ``results.request_performance.aggregate`` (requests,
latency, throughput, each a *Statistics*: ``units`` and ``mean`` required). Units follow the
report's rules: time figures in ``s``, per-token latencies in ``s/token``, token rates in
``tokens/s``, the request rate in ``queries/s``, lengths in ``count``.

Mapping from our figures: TTFT -> ``time_to_first_token``; TPOT (first token excluded) ->
``time_per_output_token``; NTPOT (E2E / N) -> ``normalized_time_per_output_token``; ITL (per chunk,
divided by its tokens) -> ``inter_token_latency``; E2E -> ``request_latency``; throughputs are
single values over the window (``mean``). ``requests.total`` is the issued count, ``failures``
the errors, ``incomplete`` the cut requests.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from servingperf import __version__
from servingperf.analysis.fingerprint import fingerprint_of

VERSION = "0.2.1"
_LATENCY = (
    ("time_to_first_token", "ttft_s", "s"),
    ("time_per_output_token", "tpot_s", "s/token"),
    ("normalized_time_per_output_token", "ntpot_s", "s/token"),
    ("inter_token_latency", "itl_s", "s/token"),
    ("request_latency", "e2e_s", "s"),
)
_NAMESPACE = uuid.UUID("5a8c07e4-46a5-4a0f-9e43-6a1c3c1b5e5d")  # servingperf's uuid5 namespace


def _statistics(stats: Mapping[str, Any] | None, units: str) -> dict[str, Any] | None:
    if not stats:
        return None
    result: dict[str, Any] = {"units": units, "mean": float(stats["mean"])}
    for key in ("min", "p50", "p90", "p95", "p99", "max"):
        if stats.get(key) is not None:
            result[key] = float(stats[key])
    return result


def _rate(value: float | None, units: str) -> dict[str, Any] | None:
    return None if value is None else {"units": units, "mean": float(value)}


def _cfg_id(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _duration(start: str, end: str | None) -> str | None:
    if end is None:
        return None
    seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    return f"PT{max(seconds, 0.0):.3f}S"


def _model(config: Mapping[str, Any], instance: str) -> Mapping[str, Any]:
    for model in config.get("models") or []:
        if isinstance(model, Mapping) and model.get("name") == instance:
            return model
    return {}


def _engine(
    info: Mapping[str, Any], instance: str, fingerprint: Mapping[str, str], model_id: str
) -> dict[str, Any]:
    gpu_count = int(fingerprint.get("hardware.gpu_count", "0") or 0)
    gpu_model = fingerprint.get("hardware.gpu_model", "none")
    accelerator = gpu_model if gpu_count else f"cpu: {fingerprint.get('hardware.cpu_model')}"
    return {
        "metadata": {
            "schema_version": "0.0.1",
            "label": instance,
            "cfg_id": _cfg_id(_model(info.get("config", {}), instance)),
        },
        "standardized": {
            "kind": "inference_engine",
            "tool": fingerprint.get(f"engine.{instance}.name", "unknown"),
            "tool_version": fingerprint.get(f"engine.{instance}.version", "unknown"),
            "role": "replica",
            "replicas": 1,
            "model": {"name": model_id},
            "accelerator": {
                "model": accelerator,
                "count": gpu_count,
                "parallelism": {"tp": 1, "dp": 1, "dp_local": 1, "workers": 1, "ep": 1, "pp": 1},
            },
        },
        "native": {"config": dict(_model(info.get("config", {}), instance))},
    }


def _load(info: Mapping[str, Any], entry: Mapping[str, Any], stage: int) -> dict[str, Any]:
    config = info.get("config", {})
    load = config.get("load") or {}
    dataset = config.get("dataset") or {}
    stats = entry.get("stats", {})
    inputs, outputs = stats.get("input_tokens"), stats.get("output_tokens")
    wanted = dataset.get("output_tokens")
    schedule = load.get("schedule") or {}
    standardized: dict[str, Any] = {
        "tool": "servingperf",
        "tool_version": __version__,
        "parallelism": max(1, int(load.get("workers") or 1)),
        "source": "random" if dataset.get("source") == "synthetic" else "sampled",
        "stage": stage,
        "input_seq_len": {
            "distribution": "other",
            "value": float(inputs["mean"]) if inputs else 0,
        },
    }
    if isinstance(wanted, int):
        standardized["output_seq_len"] = {"distribution": "fixed", "value": wanted}
    elif outputs:
        standardized["output_seq_len"] = {"distribution": "other", "value": float(outputs["mean"])}
    rate = schedule.get("rate_rps") if isinstance(schedule, Mapping) else None
    if isinstance(rate, int | float) and rate > 0:
        standardized["rate_qps"] = float(rate)
    elif isinstance(load.get("users"), int):
        standardized["concurrency"] = load["users"]
    return {
        "metadata": {"schema_version": "0.0.1", "cfg_id": _cfg_id(load), "description": None},
        "standardized": standardized,
        "native": {"config": {"load": dict(load), "dataset": dict(dataset)}},
    }


def benchmark_reports(info: Mapping[str, Any], summary: Mapping[str, Any]) -> dict[str, Any]:
    """One benchmark report per load window of the run, keyed by the window's summary key."""
    fingerprint = summary.get("fingerprint") or fingerprint_of(
        info.get("config", {}), info.get("environment", {})
    )
    run_id = str(info["run_id"])
    reports: dict[str, Any] = {}
    for stage, (key, entry) in enumerate(summary.get("instances", {}).items()):
        instance = str(entry.get("instance", key))
        model_id = str(entry.get("model") or fingerprint.get(f"model.{instance}", instance))
        stats = entry.get("stats", {})
        counts = entry.get("counts", {})
        throughput = entry.get("throughput", {})
        output_tps, input_tps = throughput.get("output_tps"), throughput.get("input_tps")
        total_tps = (
            output_tps + input_tps if output_tps is not None and input_tps is not None else None
        )
        requests: dict[str, Any] = {
            "total": int(counts.get("issued", 0)),
            "failures": int(counts.get("error", 0)),
            "incomplete": int(counts.get("cut", 0)),
        }
        for name, metric in (("input_length", "input_tokens"), ("output_length", "output_tokens")):
            value = _statistics(stats.get(metric), "count")
            if value is not None:
                requests[name] = value
        latency = {
            name: value
            for name, metric, units in _LATENCY
            if (value := _statistics(stats.get(metric), units)) is not None
        }
        rates = {
            "output_token_rate": _rate(output_tps, "tokens/s"),
            "input_token_rate": _rate(input_tps, "tokens/s"),
            "total_token_rate": _rate(total_tps, "tokens/s"),
            "request_rate": _rate(throughput.get("request_rps"), "queries/s"),
        }
        run_time = {"start": info["started_at"], "end": info.get("ended_at")}
        duration = _duration(info["started_at"], info.get("ended_at"))
        if duration is not None:
            run_time["duration"] = duration
        reports[key] = {
            "version": VERSION,
            "run": {
                "uid": f"{run_id}/{key}",
                "eid": str(uuid.uuid5(_NAMESPACE, run_id)),
                "time": run_time,
                "description": f"{model_id} [{run_id}]",
            },
            "scenario": {
                "stack": [_engine(info, instance, fingerprint, model_id)],
                "load": _load(info, entry, stage),
            },
            "results": {
                "request_performance": {
                    "aggregate": {
                        "requests": requests,
                        "latency": latency,
                        "throughput": {k: v for k, v in rates.items() if v is not None},
                    }
                }
            },
        }
    return reports

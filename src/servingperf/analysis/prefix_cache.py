"""The prefix-cache check of a shared-prefix run: the hit share the workload plants, beside the
one the engine measured.

The expected share is :func:`~servingperf.datasets.shared_prefix.expected_hit_share`, the
share of a prompt's tokens a *warm* block cache serves (whole prefix blocks over the prompt). The
measured share is the engine's own: the change of ``vllm:prefix_cache_hits_total`` over the change
of ``vllm:prefix_cache_queries_total`` (both in tokens, summed over label sets) between an
instance's first and last scrape. A cold cache misses each group's first request, so the
measured share is a little below the expected one; the verdict allows ``tolerance`` (10 points).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

HITS = "vllm:prefix_cache_hits_total"
QUERIES = "vllm:prefix_cache_queries_total"
TOLERANCE = 0.10


def _totals(samples: pa.Table, name: str) -> dict[str, list[tuple[float, float]]]:
    """(time, value summed over label sets) per instance, in time order."""
    by_scrape: dict[tuple[str, float], float] = {}
    for row in (
        samples.filter(pa.compute.equal(samples["name"], name))
        .select(["instance", "t_s", "value"])
        .to_pylist()
    ):
        key = (row["instance"], row["t_s"])
        by_scrape[key] = by_scrape.get(key, 0.0) + float(row["value"])
    out: dict[str, list[tuple[float, float]]] = {}
    for (instance, t_s), value in sorted(by_scrape.items()):
        out.setdefault(instance, []).append((t_s, value))
    return out


def prefix_cache_check(
    samples: pa.Table, expected: float, tolerance: float = TOLERANCE
) -> dict[str, Any]:
    """``summary["server_metrics"]["prefix_cache"]`` (see the module docstring)."""
    hits, queries = _totals(samples, HITS), _totals(samples, QUERIES)
    instances: dict[str, Any] = {}
    for instance in sorted(set(hits) & set(queries)):
        h, q = hits[instance], queries[instance]
        hit_tokens, query_tokens = h[-1][1] - h[0][1], q[-1][1] - q[0][1]
        measured = hit_tokens / query_tokens if query_tokens > 0 else None
        verdict = (
            "no queries"
            if measured is None
            else "agree"
            if abs(measured - expected) <= tolerance
            else "disagree"
        )
        instances[instance] = {
            "hit_tokens": hit_tokens,
            "query_tokens": query_tokens,
            "measured_hit_share": measured,
            "difference_points": None if measured is None else 100 * (measured - expected),
            "verdict": verdict,
        }
    verdicts = {entry["verdict"] for entry in instances.values()}
    return {
        "expected_hit_share": expected,
        "tolerance_points": 100 * tolerance,
        "instances": instances,
        "verdict": "no data"
        if not instances
        else "disagree"
        if "disagree" in verdicts
        else "agree"
        if verdicts == {"agree"}
        else "no queries",
    }

"""KPI documents in the shape kube-burner indexes into OpenSearch / Elasticsearch and Orion reads.

Shape (github.com/kube-burner/kube-burner at bfb5794af1da5ca599d88bb591d4306e18ac746f:
``pkg/burner/metadata.go`` ``JobSummary``, ``pkg/prometheus/types.go`` ``metric``,
``pkg/measurements/metrics/metrics.go`` ``LatencyQuantiles``; and how
github.com/cloud-bulldozer/orion at f69572dd468047cafff99b5c7371075d53926cb5 queries them,
``orion/matcher.py``): every document carries ``uuid`` (the run), ``timestamp`` and
``metricName``. A run has one ``jobSummary`` document (its metadata flattened at the top level,
as kube-burner copies its metadata there: Orion matches runs on those fields and on ``uuid``),
then per window and figure either a *quantiles* document (``quantileName`` = the figure,
``P99``/``P95``/``P90``/``P50``/``min``/``max``/``avg``, Orion's ``metric_of_interest: P99``) or a
*value* document (``value``, with ``labels``: Orion's ``metric_of_interest: value``). Times are in
seconds (kube-burner's latency quantiles are integer milliseconds; ours keep sub-millisecond
precision, and ``unit`` says so). The JSON schema the tests check them against is
``schemas/kube-burner-documents.schema.json`` beside this module.

Writing: :func:`write_bulk_files` writes NDJSON bulk bodies (an ``index`` action line, then the
document) that ``curl --data-binary @file _bulk`` or any indexer posts; :func:`index_documents`
sends them with ``opensearch-py`` (extra ``servingperf[opensearch]``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from servingperf import __version__
from servingperf.analysis.fingerprint import fingerprint_of
from servingperf.errors import ConfigError, StoreError
from servingperf.model.metrics import METRICS

QUANTILES_METRIC = "servingperfLatencyQuantiles"
SUMMARY_METRIC = "jobSummary"
SCHEMA_FILE = Path(__file__).with_name("schemas") / "kube-burner-documents.schema.json"
_RATES = {
    "output_tps": "output_throughput_tps",
    "input_tps": "input_throughput_tps",
    "request_rps": "request_throughput_rps",
    "goodput_rps": "goodput_rps",
}


def documents(info: Mapping[str, Any], summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The run's documents: its jobSummary first, then its windows' figures."""
    run_id = str(info["run_id"])
    timestamp = str(info["started_at"])
    fingerprint = summary.get("fingerprint") or fingerprint_of(
        info.get("config", {}), info.get("environment", {})
    )
    validity = summary.get("validity") or {}
    metadata: dict[str, Any] = {
        "benchmark": "servingperf",
        "scenario": info.get("scenario"),
        "kind": info.get("kind"),
        "status": info.get("status"),
        "validity": validity.get("verdict"),
        **{f"label.{k}": v for k, v in dict(info.get("labels", {})).items()},
        **{f"fingerprint.{k}": v for k, v in dict(fingerprint).items()},
    }
    ended = info.get("ended_at")
    summary_doc: dict[str, Any] = {
        "uuid": run_id,
        "timestamp": timestamp,
        "endTimestamp": ended or timestamp,
        "elapsedTime": _elapsed(timestamp, ended),
        "metricName": SUMMARY_METRIC,
        "jobConfig": {
            "name": info.get("scenario"),
            "jobIterations": 1,
            "jobType": info.get("kind"),
        },
        "version": __version__,
        "passed": info.get("status") == "complete" and validity.get("verdict") != "invalid",
        **metadata,
    }
    docs = [summary_doc]
    for key, entry in summary.get("instances", {}).items():
        labels = {
            "instance": str(entry.get("instance", key)),
            "phase": str(entry.get("phase")),
            "model": str(entry.get("model")),
            "window": key,
        }
        common = {
            "uuid": run_id,
            "timestamp": timestamp,
            "jobName": info.get("scenario"),
            "labels": labels,
        }
        for name, stats in entry.get("stats", {}).items():
            if not stats or name not in METRICS:
                continue
            docs.append(
                {
                    **common,
                    "metricName": QUANTILES_METRIC,
                    "quantileName": name,
                    "unit": METRICS[name].unit,
                    "P99": stats["p99"],
                    "P95": stats["p95"],
                    "P90": stats["p90"],
                    "P50": stats["p50"],
                    "min": stats["min"],
                    "max": stats["max"],
                    "avg": stats["mean"],
                    "count": stats["n"],
                }
            )
        values = {_RATES[k]: v for k, v in entry.get("throughput", {}).items() if k in _RATES}
        values["error_rate"] = entry.get("error_rate")
        for name, value in values.items():
            if value is None:
                continue
            docs.append(
                {
                    **common,
                    "metricName": name,
                    "value": float(value),
                    "unit": METRICS[name].unit,
                    "query": METRICS[name].definition,
                }
            )
    return docs


def _elapsed(start: str, end: str | None) -> float:
    from datetime import datetime

    if not end:
        return 0.0
    return max(0.0, (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())


def bulk_lines(docs: Sequence[Mapping[str, Any]], index: str) -> str:
    """The NDJSON body of a ``_bulk`` request indexing ``docs`` into ``index``."""
    lines = []
    for doc in docs:
        lines.append(json.dumps({"index": {"_index": index}}))
        lines.append(json.dumps(doc, allow_nan=False))
    return "\n".join(lines) + "\n"


def write_bulk_files(
    docs: Sequence[Mapping[str, Any]], folder: Path, index: str, run_id: str
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{run_id}.ndjson"
    path.write_text(bulk_lines(docs, index))
    return path


def index_documents(
    docs: Sequence[Mapping[str, Any]], url: str, index: str, *, timeout_s: float = 30.0
) -> int:
    """Send ``docs`` to ``url`` with opensearch-py's bulk helper; the number indexed.

    Credentials come from the URL (``https://user:password@host:9200``) or the environment
    (``SERVINGPERF_OPENSEARCH_USER`` / ``_PASSWORD``), never from a scenario file. Raises
    ConfigError without the extra, StoreError when the server refuses or cannot be reached."""
    import os

    try:
        from opensearchpy import OpenSearch, helpers
        from opensearchpy.exceptions import OpenSearchException
    except ImportError as exc:
        raise ConfigError(
            "--opensearch-url needs the opensearch extra: pip install 'servingperf[opensearch]'"
        ) from exc
    user = os.environ.get("SERVINGPERF_OPENSEARCH_USER")
    password = os.environ.get("SERVINGPERF_OPENSEARCH_PASSWORD")
    auth = (user, password) if user and password else None
    client = OpenSearch(hosts=[url], http_auth=auth, timeout=timeout_s)
    actions = [{"_index": index, "_source": dict(doc)} for doc in docs]
    try:
        indexed, errors = helpers.bulk(client, actions, raise_on_error=False, refresh=True)
    except (OpenSearchException, OSError) as exc:
        raise StoreError(f"OpenSearch {_safe(url)}: {type(exc).__name__}: {exc}"[:400]) from exc
    finally:
        client.close()
    if errors:
        raise StoreError(
            f"OpenSearch {_safe(url)}: {len(errors)} document(s) refused: {errors[0]}"[:400]
        )
    return int(indexed)


def _safe(url: str) -> str:
    """``url`` without its credentials."""
    head, sep, tail = url.partition("://")
    return f"{head}{sep}{tail.rsplit('@', 1)[-1]}" if sep else url

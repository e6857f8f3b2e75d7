"""A run as an MLflow run, through MLflow's own client (extra ``servingperf[mlflow]``).

What goes where: *params* are what the run was (scenario, kind, labels as ``label.<key>``, the
comparability fingerprint as ``fingerprint.<field>``); *metrics* are its figures per window,
``<window>/<metric>.<statistic>`` for distributions and ``<window>/<rate>`` for rates (names
sanitised to MLflow's alphabet); *tags* carry the run id, status, validity verdict and
servingperf version; *artifacts* are ``run.json``, ``summary.json``, ``report.html`` when there is
one, and the llm-d benchmark reports. The tracking URI is any MLflow accepts: a tracking server
(``http://...``), a database (``sqlite:///mlflow.db``) or, where MLflow still allows it, a file
store; with a SQLite store, a new experiment keeps its artifacts in ``<db name>-artifacts`` beside
the database file. The MLflow run is named after the servingperf run, and exporting again creates
a new one.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from servingperf.analysis.fingerprint import fingerprint_of
from servingperf.errors import ConfigError, StoreError
from servingperf.exports.llm_d import benchmark_reports

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /:]")
_MAX_PARAM = 6000  # MLflow's limit on a param value
_RATES = {
    "output_tps": "output_throughput_tps",
    "input_tps": "input_throughput_tps",
    "request_rps": "request_throughput_rps",
    "goodput_rps": "goodput_rps",
}


def _name(text: str) -> str:
    return _UNSAFE.sub("_", text)[:250]


def params_of(info: Mapping[str, Any], summary: Mapping[str, Any]) -> dict[str, str]:
    fingerprint = summary.get("fingerprint") or fingerprint_of(
        info.get("config", {}), info.get("environment", {})
    )
    params = {"scenario": str(info.get("scenario")), "kind": str(info.get("kind"))}
    params |= {_name(f"label.{k}"): str(v) for k, v in dict(info.get("labels", {})).items()}
    params |= {_name(f"fingerprint.{k}"): str(v)[:_MAX_PARAM] for k, v in dict(fingerprint).items()}
    return params


def metrics_of(summary: Mapping[str, Any]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for key, entry in summary.get("instances", {}).items():
        for name, stats in entry.get("stats", {}).items():
            if not stats:
                continue
            for stat in ("mean", "p50", "p90", "p95", "p99"):
                metrics[_name(f"{key}/{name}.{stat}")] = float(stats[stat])
        for source, name in _RATES.items():
            value = entry.get("throughput", {}).get(source)
            if value is not None:
                metrics[_name(f"{key}/{name}")] = float(value)
        if entry.get("error_rate") is not None:
            metrics[_name(f"{key}/error_rate")] = float(entry["error_rate"])
        usage = (summary.get("validity") or {}).get("windows", {}).get(key, {}).get("evidence", {})
        if isinstance(usage.get("client_usage"), float):
            metrics[_name(f"{key}/client_usage")] = usage["client_usage"]
    return metrics


def artifact_root(tracking_uri: str) -> str | None:
    """Where a new experiment's artifacts go: beside a SQLite store's file (MLflow's own default
    is ``./mlruns`` under the current directory, wherever the command ran); None (the server's
    or MLflow's default) for any other store."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    database = Path(tracking_uri[len(prefix) :])
    return (database.parent.resolve() / f"{database.stem}-artifacts").as_uri()


def log_run(
    run_dir: Path,
    info: Mapping[str, Any],
    summary: Mapping[str, Any],
    tracking_uri: str,
    experiment: str,
) -> str:
    """Log the run; returns the MLflow run id. ConfigError without the extra, StoreError when
    MLflow refuses (bad URI, unreachable server)."""
    try:
        from mlflow.entities import Metric, Param
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise ConfigError(
            "--mlflow-uri needs the mlflow extra: pip install 'servingperf[mlflow]'"
        ) from exc
    validity = summary.get("validity") or {}
    tags = {
        "mlflow.runName": str(info["run_id"]),
        "servingperf.run_id": str(info["run_id"]),
        "servingperf.status": str(info.get("status")),
        "servingperf.validity": str(validity.get("verdict", "unknown")),
        "servingperf.version": str(info.get("environment", {}).get("servingperf", "")),
    }
    try:
        client = MlflowClient(tracking_uri=tracking_uri)
        found = client.get_experiment_by_name(experiment)
        experiment_id = (
            found.experiment_id
            if found
            else client.create_experiment(experiment, artifact_location=artifact_root(tracking_uri))
        )
        run = client.create_run(experiment_id, tags=tags)
        run_id = run.info.run_id
        stamp = int(time.time() * 1000)
        params = [Param(k, v) for k, v in params_of(info, summary).items()]
        metrics = [Metric(k, v, stamp, 0) for k, v in metrics_of(summary).items()]
        for start in range(0, max(len(params), len(metrics), 1), 100):  # MLflow's batch limits
            client.log_batch(
                run_id, metrics=metrics[start : start + 100], params=params[start : start + 100]
            )
        for name in ("run.json", "summary.json", "report.html"):
            if (run_dir / name).is_file():
                client.log_artifact(run_id, str(run_dir / name))
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch) / "llm-d"
            folder.mkdir()
            for key, report in benchmark_reports(info, summary).items():
                (folder / f"{_name(key).replace('/', '_')}.json").write_text(
                    json.dumps(report, indent=2)
                )
            client.log_artifacts(run_id, str(folder), artifact_path="llm-d")
        client.set_terminated(run_id, "FINISHED" if info.get("status") == "complete" else "FAILED")
    except MlflowException as exc:
        raise StoreError(f"MLflow {tracking_uri}: {exc.message}"[:400]) from exc
    return str(run_id)

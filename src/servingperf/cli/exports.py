"""``servingperf export RUN_DIR``: a run in the formats other tools read (llm-d benchmark report,
kube-burner/Orion documents for OpenSearch, an MLflow run); see :mod:`servingperf.exports`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from servingperf.cli.common import fail, out
from servingperf.errors import ConfigError, ServingPerfError


def export(
    run_dir: Annotated[Path, typer.Argument(help="a run directory")],
    llm_d: Annotated[
        Path | None,
        typer.Option("--llm-d", help="write one llm-d benchmark report (v0.2.1) per window here"),
    ] = None,
    opensearch_dir: Annotated[
        Path | None,
        typer.Option("--opensearch-dir", help="write the KPI documents as _bulk NDJSON here"),
    ] = None,
    opensearch_url: Annotated[
        str | None,
        typer.Option(
            "--opensearch-url",
            help="index the KPI documents there (opensearch-py; extra servingperf[opensearch])",
        ),
    ] = None,
    opensearch_index: Annotated[
        str, typer.Option("--opensearch-index", help="index of the KPI documents")
    ] = "servingperf",
    mlflow_uri: Annotated[
        str | None,
        typer.Option(
            "--mlflow-uri",
            help="log the run to this MLflow tracking URI (extra servingperf[mlflow])",
        ),
    ] = None,
    mlflow_experiment: Annotated[
        str, typer.Option("--mlflow-experiment", help="MLflow experiment (created if missing)")
    ] = "servingperf",
) -> None:
    """Export a run: llm-d benchmark reports, OpenSearch documents (files or a server), MLflow."""
    from servingperf.exports import llm_d as llm_d_format
    from servingperf.exports import opensearch
    from servingperf.results.rundir import RunDir, write_json_atomic

    if not any((llm_d, opensearch_dir, opensearch_url, mlflow_uri)):
        raise fail(
            ConfigError(
                "give at least one of --llm-d, --opensearch-dir, --opensearch-url, --mlflow-uri"
            )
        ) from None
    try:
        directory = RunDir(run_dir)
        info = directory.read_info().to_json()
        summary = directory.read_summary()
        if llm_d is not None:
            llm_d.mkdir(parents=True, exist_ok=True)
            for key, report in llm_d_format.benchmark_reports(info, summary).items():
                path = llm_d / f"{info['run_id']}-{key.replace('/', '_')}.json"
                write_json_atomic(path, report)
                out.print(f"llm-d benchmark report: {path}")
        docs = opensearch.documents(info, summary)
        if opensearch_dir is not None:
            path = opensearch.write_bulk_files(
                docs, opensearch_dir, opensearch_index, str(info["run_id"])
            )
            out.print(f"OpenSearch documents ({len(docs)}): {path}")
        if opensearch_url is not None:
            count = opensearch.index_documents(docs, opensearch_url, opensearch_index)
            out.print(f"indexed {count} documents into {opensearch_index}")
        if mlflow_uri is not None:
            from servingperf.exports.mlflow_run import log_run

            mlflow_id = log_run(directory.path, info, summary, mlflow_uri, mlflow_experiment)
            out.print(f"MLflow run {mlflow_id} in experiment {json.dumps(mlflow_experiment)}")
    except ServingPerfError as exc:
        raise fail(exc) from None

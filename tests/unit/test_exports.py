"""Every export validates against its schema; the OpenSearch client path runs against the API
double (no real server can run here: tests/fakes/opensearch_api.py says why); the MLflow run is
written with MLflow's own client into a local store and opened again with MLflow's reader."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from servingperf.errors import ConfigError, StoreError
from servingperf.exports import llm_d, opensearch
from servingperf.exports.mlflow_run import log_run
from servingperf.results.rundir import RunDir
from servingperf.scenarios.outputs import write_summary
from tests.fakes.opensearch_api import OpenSearchDouble
from tests.fakes.runs import synthetic_run, write_run_dir

SCHEMAS = Path(__file__).parents[1] / "schemas"
# The report's own unit rules (llm-d-benchmark base.py / schema_v0_2.py; see tests/schemas/README)
UNITS_TIME = {"ms", "s"}
UNITS_GEN_LATENCY = {"ms/token", "s/token"}


@pytest.fixture
def run_dir(tmp_path: Path) -> RunDir:
    info, summary, records = synthetic_run(
        models=("flan-t5-small", "bloom-560m"), requests_per_instance=120
    )
    directory = write_run_dir(tmp_path / "run", info, summary, records)
    write_summary(directory)  # as a run writes it: with validity and the fingerprint
    return directory


def _inputs(run_dir: RunDir) -> tuple[dict[str, Any], dict[str, Any]]:
    return run_dir.read_info().to_json(), run_dir.read_summary()


def test_llm_d_reports_validate_against_the_v0_2_1_schema(run_dir: RunDir) -> None:
    schema = json.loads((SCHEMAS / "llm-d-benchmark-report-v0.2.1.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    info, summary = _inputs(run_dir)
    reports = llm_d.benchmark_reports(info, summary)
    assert set(reports) == set(summary["instances"])
    for key, report in reports.items():
        validator.validate(report)
        aggregate = report["results"]["request_performance"]["aggregate"]
        latency = aggregate["latency"]
        assert latency["time_to_first_token"]["units"] in UNITS_TIME
        assert latency["request_latency"]["units"] in UNITS_TIME
        for name in (
            "time_per_output_token",
            "normalized_time_per_output_token",
            "inter_token_latency",
        ):
            assert latency[name]["units"] in UNITS_GEN_LATENCY
        assert aggregate["throughput"]["request_rate"]["units"] == "queries/s"
        assert aggregate["throughput"]["output_token_rate"]["units"] == "tokens/s"
        ours = summary["instances"][key]
        assert latency["time_to_first_token"]["p50"] == ours["stats"]["ttft_s"]["p50"]
        assert aggregate["requests"]["total"] == ours["counts"]["issued"]
        assert report["version"] == "0.2.1" and report["run"]["uid"].endswith(key)
    broken = json.loads(json.dumps(next(iter(reports.values()))))
    del broken["run"]["uid"]
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(broken)  # the schema test can fail


def _document_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(opensearch.SCHEMA_FILE.read_text())
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def test_opensearch_documents_have_the_kube_burner_shape(run_dir: RunDir, tmp_path: Path) -> None:
    info, summary = _inputs(run_dir)
    docs = opensearch.documents(info, summary)
    validator = _document_validator()
    for doc in docs:
        validator.validate(doc)
    job = docs[0]
    assert job["metricName"] == "jobSummary" and job["uuid"] == info["run_id"]
    assert job["fingerprint.hardware.machine"] and job["label.release"]
    ttft = [d for d in docs if d.get("quantileName") == "ttft_s"]
    assert len(ttft) == len(summary["instances"])
    assert (
        ttft[0]["P99"]
        == summary["instances"][ttft[0]["labels"]["window"]]["stats"]["ttft_s"]["p99"]
    )
    rates = [d for d in docs if d["metricName"] == "output_throughput_tps"]
    assert rates and all(d["unit"] == "tokens/s" for d in rates)
    path = opensearch.write_bulk_files(docs, tmp_path / "os", "perf", info["run_id"])
    lines = path.read_text().splitlines()
    assert len(lines) == 2 * len(docs)
    assert json.loads(lines[0]) == {"index": {"_index": "perf"}}
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({k: v for k, v in ttft[0].items() if k != "P99"})


@pytest.fixture
def double() -> Iterator[OpenSearchDouble]:
    server = OpenSearchDouble(credentials=("perf", "s3cret"))
    yield server
    server.close()


def test_opensearch_py_indexes_the_documents(
    run_dir: RunDir, double: OpenSearchDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVINGPERF_OPENSEARCH_USER", "perf")
    monkeypatch.setenv("SERVINGPERF_OPENSEARCH_PASSWORD", "s3cret")
    info, summary = _inputs(run_dir)
    docs = opensearch.documents(info, summary)
    assert opensearch.index_documents(docs, double.url, "servingperf-kpis") == len(docs)
    stored = double.indices["servingperf-kpis"]
    assert stored == json.loads(json.dumps(docs))
    validator = _document_validator()
    for doc in stored:
        validator.validate(doc)
    assert ("POST", "/_bulk?refresh=true") in double.requests


def test_opensearch_refusals_and_bad_credentials_are_store_errors(
    run_dir: RunDir, double: OpenSearchDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    info, summary = _inputs(run_dir)
    docs = opensearch.documents(info, summary)
    monkeypatch.delenv("SERVINGPERF_OPENSEARCH_USER", raising=False)
    with pytest.raises(StoreError, match=r"OpenSearch http://127\.0\.0\.1"):
        opensearch.index_documents(docs, double.url, "kpis")
    refusing = OpenSearchDouble(refuse=lambda doc: doc.get("metricName") == "jobSummary")
    try:
        with pytest.raises(StoreError, match="1 document"):
            opensearch.index_documents(docs, refusing.url, "kpis")
    finally:
        refusing.close()
    with pytest.raises(StoreError):
        opensearch.index_documents(docs, "http://127.0.0.1:9", "kpis", timeout_s=2)


def test_an_mlflow_run_opens_in_mlflows_own_reader(run_dir: RunDir, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        # MLflow's SQLAlchemy store uses a deprecated loader option (MLflow's, not ours)
        warnings.simplefilter("ignore", DeprecationWarning)
        from mlflow.tracking import MlflowClient

        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        info, summary = _inputs(run_dir)
        run_id = log_run(run_dir.path, info, summary, uri, "servingperf-tests")
        reader = MlflowClient(tracking_uri=uri)
        run = reader.get_run(run_id)
        experiment = reader.get_experiment_by_name("servingperf-tests")
        assert experiment is not None and run.info.experiment_id == experiment.experiment_id
        assert run.info.status == "FINISHED"
        assert run.data.tags["servingperf.run_id"] == info["run_id"]
        assert run.data.tags["servingperf.validity"] == summary["validity"]["verdict"]
        assert run.data.params["scenario"] == info["scenario"]
        assert run.data.params["label.release"] == info["labels"]["release"]
        key = next(iter(summary["instances"]))
        assert run.data.metrics[f"{key}/ttft_s.p50"] == pytest.approx(
            summary["instances"][key]["stats"]["ttft_s"]["p50"]
        )
        names = {a.path for a in reader.list_artifacts(run_id)}
        assert {"run.json", "summary.json", "llm-d"} <= names
        assert (tmp_path / "mlflow-artifacts").is_dir()  # beside the store, not under the cwd
        local = reader.download_artifacts(run_id, "summary.json", str(tmp_path / "dl"))
        assert json.loads(Path(local).read_text()) == summary


def test_a_bad_mlflow_uri_is_bad_input_or_a_store_error(run_dir: RunDir, tmp_path: Path) -> None:
    info, summary = _inputs(run_dir)
    with pytest.raises((StoreError, ConfigError)):
        log_run(run_dir.path, info, summary, "nosuchscheme://x", "e")

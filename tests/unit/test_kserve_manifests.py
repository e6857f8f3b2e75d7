"""The manifests the kserve platform sends validate against the KServe CRD schemas kept in
``src/servingperf/platforms/crds`` (strictly: a field the schema does not know is an error, where
a real API server would silently drop it)."""

from __future__ import annotations

from typing import Any

import pytest

from servingperf.errors import ConfigError
from servingperf.model.kserve_spec import (
    DeploymentMode,
    InferenceServiceOverrides,
    InferenceServiceTemplate,
)
from servingperf.platforms.kserve_manifests import (
    DEPLOYMENT_MODE_ANNOTATION,
    MANAGED_BY_LABEL,
    RUN_ID_LABEL,
    inference_service_manifest,
    namespace_manifest,
    namespace_name,
    resolve_template,
    run_labels,
    run_selector,
    serving_runtime_manifest,
    sidecar_manifest,
)
from tests.fakes.kube_api import CRD_DIR, crd_validator

ISVC_SCHEMA = crd_validator(CRD_DIR / "serving.kserve.io_inferenceservices.yaml", "v1beta1")
SR_SCHEMA = crd_validator(CRD_DIR / "serving.kserve.io_servingruntimes.yaml", "v1alpha1")

FULL = InferenceServiceTemplate.model_validate(
    {
        "model_format": {"name": "caikit", "version": "1"},
        "runtime": "caikit-tgis-runtime",
        "storage_uri": "s3://models/flan-t5-small",
        "protocol_version": "grpc-v1",
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1"}},
        "args": ["--max-batch=4"],
        "env": {"TRANSFORMERS_CACHE": "/tmp", "LOG_LEVEL": "info"},
        "annotations": {"sidecar.istio.io/inject": "true"},
        "labels": {"team": "perf"},
        "min_replicas": 1,
        "max_replicas": 1,
        "service_account": "models-sa",
    }
)
MINIMAL = InferenceServiceTemplate.model_validate(
    {"model_format": {"name": "pytorch"}, "storage_uri": "pvc://models/m"}
)
RUNTIME = {
    "apiVersion": "serving.kserve.io/v1alpha1",
    "kind": "ServingRuntime",
    "metadata": {"name": "anything", "annotations": {"prometheus.io/port": "8086"}},
    "spec": {
        "multiModel": False,
        "supportedModelFormats": [{"name": "caikit", "autoSelect": True}],
        "protocolVersions": ["grpc-v1"],
        "containers": [
            {
                "name": "kserve-container",
                "image": "quay.io/opendatahub/text-generation-inference:fast",
                "args": ["--model-name=/mnt/models/artifacts/"],
                "env": [{"name": "TRANSFORMERS_CACHE", "value": "/tmp/transformers_cache"}],
                "ports": [{"containerPort": 8085, "name": "h2c", "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "1", "memory": "2Gi"}},
            }
        ],
    },
}
LABELS = run_labels("many-model-20240117T163512Z-ab12", {"ci": "nightly"})


def errors(schema: Any, document: dict[str, Any]) -> list[str]:
    return [e.message for e in schema.iter_errors(document)]


@pytest.mark.parametrize("mode", list(DeploymentMode))
@pytest.mark.parametrize("template", [FULL, MINIMAL], ids=["full", "minimal"])
def test_inference_service_matches_the_crd(
    template: InferenceServiceTemplate, mode: DeploymentMode
) -> None:
    manifest = inference_service_manifest(
        "flan-t5-small-3", "perf-ns-01", template, "rt", mode, LABELS
    )
    assert errors(ISVC_SCHEMA, manifest) == []
    assert manifest["metadata"]["annotations"][DEPLOYMENT_MODE_ANNOTATION] == mode.value
    assert manifest["metadata"]["labels"][RUN_ID_LABEL] == "many-model-20240117T163512Z-ab12"
    assert manifest["spec"]["predictor"]["labels"][MANAGED_BY_LABEL] == "servingperf"


def test_full_template_fields_land_where_kserve_reads_them() -> None:
    manifest = inference_service_manifest(
        "m", "ns", FULL, "fallback-runtime", DeploymentMode.RAW_DEPLOYMENT, LABELS
    )
    predictor = manifest["spec"]["predictor"]
    model = predictor["model"]
    assert model["modelFormat"] == {"name": "caikit", "version": "1"}
    assert model["runtime"] == "caikit-tgis-runtime"  # the template's beats the default
    assert model["storageUri"] == "s3://models/flan-t5-small"
    assert model["resources"]["limits"] == {"cpu": "1"}
    assert model["env"] == [
        {"name": "LOG_LEVEL", "value": "info"},
        {"name": "TRANSFORMERS_CACHE", "value": "/tmp"},
    ]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 1)
    assert predictor["serviceAccountName"] == "models-sa"
    minimal = inference_service_manifest("m", "ns", MINIMAL, "rt", DeploymentMode.SERVERLESS, {})
    assert minimal["spec"]["predictor"]["model"]["runtime"] == "rt"


def test_the_schema_check_catches_a_misplaced_field() -> None:
    manifest = inference_service_manifest("m", "ns", MINIMAL, None, DeploymentMode.SERVERLESS, {})
    manifest["spec"]["predictor"]["model"]["storageURI"] = "s3://typo"
    manifest["spec"]["predictor"]["minReplicas"] = "one"
    found = errors(ISVC_SCHEMA, manifest)
    assert any("storageURI" in message for message in found)
    assert any("'one' is not of type 'integer'" in message for message in found)
    del manifest["spec"]["predictor"]
    assert any("'predictor' is a required property" in m for m in errors(ISVC_SCHEMA, manifest))


def test_serving_runtime_from_a_template_matches_the_crd() -> None:
    manifest = serving_runtime_manifest(RUNTIME, "caikit-runtime", "perf-ns-01", LABELS)
    assert errors(SR_SCHEMA, manifest) == []
    assert manifest["metadata"]["name"] == "caikit-runtime"
    assert manifest["metadata"]["namespace"] == "perf-ns-01"
    assert manifest["metadata"]["annotations"] == {"prometheus.io/port": "8086"}
    assert manifest["metadata"]["labels"][RUN_ID_LABEL] == LABELS[RUN_ID_LABEL]
    broken = serving_runtime_manifest(RUNTIME, "r", "ns", {})
    broken["spec"]["containers"][0]["ports"] = [{"name": "no-port"}]
    assert any("containerPort" in m for m in errors(SR_SCHEMA, broken))


def test_serving_runtime_template_must_be_a_serving_runtime() -> None:
    with pytest.raises(ConfigError, match="kind ServingRuntime"):
        serving_runtime_manifest({**RUNTIME, "kind": "Deployment"}, "r", "ns", {})
    with pytest.raises(ConfigError, match=r"spec\.containers"):
        serving_runtime_manifest({**RUNTIME, "spec": {"containers": []}}, "r", "ns", {})


def test_namespace_and_sidecar_carry_the_run_labels() -> None:
    namespace = namespace_manifest("perf-ns-01", LABELS)
    assert namespace["metadata"]["labels"] == LABELS
    sidecar = sidecar_manifest("perf-ns-01", LABELS, ["./*", "istio-system/*"])
    assert sidecar["apiVersion"] == "networking.istio.io/v1beta1"
    assert sidecar["metadata"]["namespace"] == "perf-ns-01"
    assert sidecar["spec"] == {"egress": [{"hosts": ["./*", "istio-system/*"]}]}


def test_names_and_selectors() -> None:
    assert namespace_name("perf", "ns-01") == "perf-ns-01"
    assert namespace_name("", "ns-01") == "ns-01"
    with pytest.raises(ConfigError, match="DNS-1035"):
        namespace_name("perf", "Upper")
    with pytest.raises(ConfigError, match="DNS-1035"):
        inference_service_manifest("9lives", "ns", MINIMAL, None, DeploymentMode.SERVERLESS, {})
    assert (
        run_selector("r-1") == "app.kubernetes.io/managed-by=servingperf,servingperf.io/run-id=r-1"
    )
    long_id = "a-very-long-scenario-name-for-the-nightly-many-model-run-20240117T163512Z-ab12"
    value = run_labels(long_id, {})[RUN_ID_LABEL]
    assert len(value) <= 63
    assert value == run_labels(long_id, {})[RUN_ID_LABEL]  # stable: clean-up finds it again
    assert run_selector(long_id).endswith(f"={value}")
    assert value != run_labels(long_id + "x", {})[RUN_ID_LABEL]
    with pytest.raises(ConfigError, match="label value"):
        run_labels("r", {"team": "not a label value"})


def test_per_model_overrides_replace_only_what_they_set() -> None:
    merged = resolve_template(
        FULL,
        InferenceServiceOverrides.model_validate(
            {"storage_uri": "s3://models/bloom-560m", "resources": {"requests": {"cpu": "2"}}}
        ),
    )
    assert merged.storage_uri == "s3://models/bloom-560m"
    assert merged.resources.requests == {"cpu": "2"}
    assert merged.resources.limits == {}
    assert merged.runtime == FULL.runtime
    assert merged.args == FULL.args
    assert resolve_template(FULL, None) is FULL

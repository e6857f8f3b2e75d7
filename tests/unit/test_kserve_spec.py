"""The KServeSpec rejects what it should, endpoints resolve as documented (with a path), and
an instance's own model id reaches its target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from servingperf.model.deployments import DeploymentRecord
from servingperf.model.kserve_spec import KServeEndpointSpec, KServeSpec, ServedModel
from servingperf.model.specs import LoadSpec, ModelSpec
from servingperf.platforms.base import Instance, InstanceRequest
from servingperf.platforms.kserve import EndpointAccess, resolve_endpoint
from servingperf.platforms.kserve_status import IsvcState, Phase
from servingperf.scenarios.targets import target_for

BASE: dict[str, Any] = {
    "inference_service": {"model_format": {"name": "pytorch"}, "storage_uri": "s3://b/m"}
}


def spec(**changes: Any) -> KServeSpec:
    return KServeSpec.model_validate({**BASE, **changes})


def test_defaults() -> None:
    default = spec()
    assert default.deployment_mode.value == "Serverless"
    assert default.watch_scope.value == "cluster"
    assert default.sidecar_egress_hosts == ["./*", "istio-system/*"]
    assert default.runtime_name is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"unknown": 1}, "Extra inputs are not permitted"),
        ({"in_cluster": True, "kubeconfig": "/k"}, "in_cluster"),
        ({"deployment_mode": "Knative"}, "Serverless"),
        ({"serving_runtime": {"name": "rt"}}, "exactly one of 'file'"),
        ({"serving_runtime": {"file": "a.yaml", "inline": {}}}, "exactly one of 'file'"),
        ({"namespace_prefix": "Perf"}, "namespace_prefix"),
        (
            {
                "inference_service": {
                    "model_format": {"name": "p"},
                    "storage_uri": "s3://b",
                    "resources": {"requests": {"memory": "lots"}},
                }
            },
            "should match pattern",
        ),
        (
            {
                "inference_service": {
                    "model_format": {"name": "p"},
                    "storage_uri": "s3://b",
                    "min_replicas": 3,
                    "max_replicas": 2,
                }
            },
            "min_replicas must not exceed max_replicas",
        ),
    ],
)
def test_bad_settings_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        spec(**changes)


def ready(url: str | None, address: str | None = None) -> IsvcState:
    return IsvcState(Phase.READY, None, url, address, None)


def test_endpoint_from_status_url() -> None:
    access = resolve_endpoint(ready("https://m-ns.apps.example.com/"), KServeEndpointSpec())
    assert access == EndpointAccess(
        url="https://m-ns.apps.example.com",
        grpc_url="m-ns.apps.example.com:443",
        status_url="https://m-ns.apps.example.com",
        host_header=None,
        tls_insecure=False,
        ca_file=None,
    )


def test_endpoint_through_an_ingress_sends_the_status_host() -> None:
    endpoint = KServeEndpointSpec(ingress_url="http://127.0.0.1:8080", tls_insecure=True)
    access = resolve_endpoint(ready("http://m-ns.example.com"), endpoint)
    assert isinstance(access, EndpointAccess)
    assert access.url == "http://127.0.0.1:8080"
    assert access.grpc_url == "127.0.0.1:8080"
    assert access.host_header == "m-ns.example.com"
    assert access.status_url == "http://m-ns.example.com"
    assert access.tls_insecure


def test_endpoint_from_the_cluster_address() -> None:
    endpoint = KServeEndpointSpec(source="address", host_header="override.example.com")
    access = resolve_endpoint(ready(None, "http://m-predictor.ns.svc.cluster.local"), endpoint)
    assert isinstance(access, EndpointAccess)
    assert access.grpc_url == "m-predictor.ns.svc.cluster.local:80"
    assert access.host_header == "override.example.com"
    assert resolve_endpoint(ready(None), endpoint) == "ready, but status.address.url is empty"
    assert "not an http(s) URL" in str(resolve_endpoint(ready("grpc://x"), KServeEndpointSpec()))


def test_endpoint_path_is_appended_to_the_status_urls_path() -> None:
    endpoint = KServeEndpointSpec(path="/openai/v1")
    access = resolve_endpoint(ready("https://m-ns.apps.example.com/"), endpoint)
    assert isinstance(access, EndpointAccess)
    assert access.url == "https://m-ns.apps.example.com/openai/v1"
    assert access.status_url == "https://m-ns.apps.example.com/openai/v1"
    assert access.grpc_url == "m-ns.apps.example.com:443"  # gRPC has no path
    through = KServeEndpointSpec(path="/openai/v1", ingress_url="http://127.0.0.1:8080/")
    access = resolve_endpoint(ready("http://gw.example.com/serving/ns/m"), through)
    assert isinstance(access, EndpointAccess)
    assert access.url == "http://127.0.0.1:8080/serving/ns/m/openai/v1"
    assert access.host_header == "gw.example.com"
    assert access.status_url == "http://gw.example.com/serving/ns/m/openai/v1"


@pytest.mark.parametrize("path", ["openai/v1", "/openai?x=1", "/open ai", "/a#b"])
def test_endpoint_path_must_be_a_path(path: str) -> None:
    with pytest.raises(ValidationError, match="path"):
        KServeEndpointSpec(path=path)


def test_served_model_defaults_to_the_scenarios_id() -> None:
    assert spec().endpoint.served_model is ServedModel.SCENARIO
    chosen = spec(endpoint={"served_model": "isvc-name"}).endpoint.served_model
    assert chosen is ServedModel.ISVC_NAME
    with pytest.raises(ValidationError, match="served_model"):
        spec(endpoint={"served_model": "name"})


def test_the_target_carries_the_instances_own_model_id() -> None:
    model = ModelSpec.model_validate(
        {"name": "flan", "model_id": "flan-t5-small", "endpoint": {"url": "http://unused"}}
    )
    record = DeploymentRecord(
        "flan-01",
        "ns",
        "flan-01",
        "kserve",
        None,
        "platform",
        None,
        None,
        None,
        None,
        None,
        None,
        "ready",
        None,
    )
    instance = Instance(InstanceRequest("flan-01", "ns", model), record, url="http://h/openai/v1")
    load = LoadSpec()
    assert target_for(instance, model, load, Path(".")).model == "flan-t5-small"
    instance.model_id = "flan-01"
    target = target_for(instance, model, load, Path("."))
    assert (target.model, target.url) == ("flan-01", "http://h/openai/v1")

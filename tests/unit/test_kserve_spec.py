"""The KServeSpec rejects what it should, and endpoints resolve as documented."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from servingperf.model.kserve_spec import KServeEndpointSpec, KServeSpec
from servingperf.platforms.kserve import EndpointAccess, resolve_endpoint
from servingperf.platforms.kserve_status import IsvcState, Phase

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

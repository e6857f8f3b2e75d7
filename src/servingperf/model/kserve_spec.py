"""What a user writes to run on KServe (``platform: {kind: kserve, kserve: {...}}``).

Proposed for :mod:`servingperf.model.specs` (it will move there; it is pure data, no I/O).
Terms: the *ServingRuntime template* is a ServingRuntime manifest the run creates in each of its
namespaces; the *InferenceService template* holds the fields every InferenceService gets, and
``models`` overrides them per model name. *Serverless* (Knative) and *RawDeployment* (plain
Deployments) are KServe's deployment modes, set by the ``serving.kserve.io/deploymentMode``
annotation. Credentials never appear here: they come from the kubeconfig or the pod's service
account.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from servingperf.model.spec_base import Spec

DNS1035 = r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"
_NUMBER = r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
# The CRDs' own pattern for resource quantities.
_QUANTITY = rf"^(\+|-)?{_NUMBER}(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?{_NUMBER}))?$"

_URL_PATH = re.compile(r"/[^?#\s]*")  # a URL path: no query, fragment or blank

Quantity = Annotated[
    str, Field(pattern=_QUANTITY, description="a Kubernetes quantity: 1, 500m, 2Gi")
]


class DeploymentMode(enum.StrEnum):
    SERVERLESS = "Serverless"
    RAW_DEPLOYMENT = "RawDeployment"


class ModelFormatSpec(Spec):
    name: str = Field(description="model format the runtime must support, e.g. pytorch, caikit")
    version: str | None = None


class ResourcesSpec(Spec):
    requests: dict[str, Quantity] = Field(default_factory=dict, description="cpu, memory...")
    limits: dict[str, Quantity] = Field(default_factory=dict)


class InferenceServiceTemplate(Spec):
    """The predictor of each InferenceService (``spec.predictor.model`` and its neighbours)."""

    model_format: ModelFormatSpec
    runtime: str | None = Field(
        default=None,
        description="ServingRuntime name; default: the serving_runtime template's, else KServe"
        " picks one that supports the model format",
    )
    storage_uri: str = Field(description="where the model is, e.g. s3://bucket/flan-t5-small")
    protocol_version: Literal["v1", "v2", "grpc-v1", "grpc-v2"] | None = None
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict, description="on the InferenceService")
    labels: dict[str, str] = Field(default_factory=dict, description="on the InferenceService")
    min_replicas: int | None = Field(default=None, ge=0, le=1000)
    max_replicas: int | None = Field(default=None, ge=1, le=1000)
    service_account: str | None = Field(default=None, description="predictor pods' account")

    @model_validator(mode="after")
    def _replicas(self) -> Self:
        if (
            self.min_replicas is not None
            and self.max_replicas is not None
            and self.min_replicas > self.max_replicas
        ):
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


class InferenceServiceOverrides(Spec):
    """Per-model changes to the template; a field left out keeps the template's value."""

    model_format: ModelFormatSpec | None = None
    runtime: str | None = None
    storage_uri: str | None = None
    protocol_version: Literal["v1", "v2", "grpc-v1", "grpc-v2"] | None = None
    resources: ResourcesSpec | None = None
    args: list[str] | None = None
    env: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    labels: dict[str, str] | None = None
    min_replicas: int | None = Field(default=None, ge=0, le=1000)
    max_replicas: int | None = Field(default=None, ge=1, le=1000)
    service_account: str | None = None


class ServingRuntimeTemplate(Spec):
    """A ServingRuntime manifest created in every namespace of the run: a YAML file (relative to
    the scenario file) or the manifest inline; ``name`` replaces its metadata.name."""

    name: str = Field(default="servingperf-runtime", pattern=DNS1035)
    file: str | None = None
    inline: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.file is None) == (self.inline is None):
            raise ValueError("give exactly one of 'file' (a YAML manifest) or 'inline'")
        return self


class EndpointSource(enum.StrEnum):
    URL = "url"  # status.url: the external (ingress) URL
    ADDRESS = "address"  # status.address.url: the cluster-local URL, for runs inside the cluster


class ServedModel(enum.StrEnum):
    """Which model id the requests to an InferenceService carry."""

    SCENARIO = "scenario"  # the scenario's (the model's model_id, else its name), for every one
    ISVC_NAME = "isvc-name"  # each InferenceService's own name (the runtimes' default)


class KServeEndpointSpec(Spec):
    """How the protocol clients reach an InferenceService once it is ready."""

    source: EndpointSource = EndpointSource.URL
    path: str = Field(
        default="",
        description="appended to the status URL's path, e.g. /openai/v1 for KServe's Hugging Face"
        " runtime (HTTP protocols only; empty: the status URL as it is)",
    )
    served_model: ServedModel = Field(
        default=ServedModel.SCENARIO,
        description="model id sent: 'scenario' (the model's model_id, else its name) or"
        " 'isvc-name' (each InferenceService's name, what vLLM-based runtimes serve by default)",
    )
    ingress_url: str | None = Field(
        default=None,
        description="connect here (the ingress gateway, e.g. https://10.0.0.5:443 or a"
        " port-forward) instead of the status URL's host; the status URL's host is then sent as"
        " the Host header",
    )
    host_header: str | None = Field(default=None, description="override the Host header sent")
    tls_insecure: bool = False
    ca_file: str | None = Field(default=None, description="CA bundle for the model endpoints")

    @field_validator("path")
    @classmethod
    def _a_path(cls, value: str) -> str:
        if value and not _URL_PATH.fullmatch(value):
            raise ValueError(f"path {value!r}: give a URL path starting with '/', e.g. /openai/v1")
        return value


class WatchScope(enum.StrEnum):
    CLUSTER = "cluster"  # one watch over all namespaces, by the run's label (needs cluster RBAC)
    NAMESPACE = "namespace"  # one watch per namespace (namespace-scoped RBAC is enough)


DEFAULT_FAIL_REASONS = ("RevisionFailed", "CrashLoopBackOff", "ModelLoadFailed", "InvalidSpec")


class KServeSpec(Spec):
    """The kserve platform's settings."""

    kubeconfig: str | None = Field(
        default=None, description="kubeconfig file; default $KUBECONFIG, else ~/.kube/config"
    )
    context: str | None = Field(default=None, description="kubeconfig context; default current")
    in_cluster: bool = Field(
        default=False, description="use the pod's service account (servingperf run as a Job)"
    )
    namespace_prefix: str = Field(
        default="servingperf",
        pattern=r"^([a-z]([-a-z0-9]{0,30}[a-z0-9])?)?$",
        description="namespace = <prefix>-<group>; empty: the group name itself",
    )
    create_namespaces: bool = Field(
        default=True, description="create (and at the end delete) the namespaces; false: they exist"
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="extra labels on everything the run creates"
    )
    namespace_labels: dict[str, str] = Field(
        default_factory=dict,
        description="labels on the namespaces only, e.g. istio-injection: enabled",
    )
    deployment_mode: DeploymentMode = DeploymentMode.SERVERLESS
    serving_runtime: ServingRuntimeTemplate | None = None
    inference_service: InferenceServiceTemplate
    models: dict[str, InferenceServiceOverrides] = Field(
        default_factory=dict, description="per model name: changes to inference_service"
    )
    istio_sidecar: bool = Field(
        default=False,
        description="create an Istio Sidecar per namespace limiting egress to sidecar_egress_hosts"
        " (the seed's tuning for 200+ models)",
    )
    sidecar_egress_hosts: list[str] = Field(
        default_factory=lambda: ["./*", "istio-system/*"], min_length=1
    )
    watch_scope: WatchScope = WatchScope.CLUSTER
    watch_timeout_s: int = Field(
        default=300, ge=5, le=3600, description="server-side length of one watch request"
    )
    api_timeout_s: float = Field(default=30.0, gt=0, le=600, description="per API request")
    delete_wait_s: float = Field(
        default=300.0,
        ge=0,
        le=3600,
        description="at the end, how long to wait for the run's namespaces to be gone (so a next"
        " run can reuse their names); 0: do not wait",
    )
    fail_reasons: list[str] = Field(
        default_factory=lambda: list(DEFAULT_FAIL_REASONS),
        description="a Ready/PredictorReady condition False with one of these reasons fails the"
        " instance at once (besides modelStatus FailedToLoad)",
    )
    endpoint: KServeEndpointSpec = Field(default_factory=KServeEndpointSpec)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.in_cluster and (self.kubeconfig or self.context):
            raise ValueError("'in_cluster' uses the service account: drop kubeconfig and context")
        return self

    @property
    def runtime_name(self) -> str | None:
        return self.serving_runtime.name if self.serving_runtime else None

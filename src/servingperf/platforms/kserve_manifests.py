"""The manifests a KServe run sends, as plain dicts, built by pure functions (no I/O).

Terms: *run labels* are put on everything a run creates: ``app.kubernetes.io/managed-by:
servingperf`` (what servingperf made) and ``servingperf.io/run-id: <run id>`` (which run), so a
clean-up finds a dead run's leftovers by label alone. The shapes follow the KServe CRDs kept in
``platforms/crds`` (the tests validate every manifest against them).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from servingperf.errors import ConfigError
from servingperf.model.kserve_spec import (
    DeploymentMode,
    InferenceServiceOverrides,
    InferenceServiceTemplate,
)
from servingperf.platforms.kube_types import (
    INFERENCE_SERVICES,
    NAMESPACES,
    SERVING_RUNTIMES,
    SIDECARS,
    JsonObject,
)

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "servingperf"
RUN_ID_LABEL = "servingperf.io/run-id"
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
SIDECAR_NAME = "default"

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


def check_label_value(value: str, what: str) -> str:
    if not _LABEL_VALUE.fullmatch(value):
        raise ConfigError(
            f"{what} {value!r} is not a valid Kubernetes label value (at most 63 letters, digits,"
            " '-', '_' or '.', starting and ending with a letter or digit)"
        )
    return value


def check_dns1035(value: str, what: str) -> str:
    """InferenceService and namespace names must be DNS-1035 labels (KServe's webhook says so)."""
    if not _DNS1035.fullmatch(value):
        raise ConfigError(
            f"{what} {value!r} must be a DNS-1035 label: lower-case letters, digits and '-', at"
            " most 63, starting with a letter"
        )
    return value


def run_label_value(run_id: str) -> str:
    """The run id as a label value: itself when it is a valid one, else (too long, odd
    characters) a readable prefix plus a hash of the whole id; the same id always gives the same
    value, so a later clean-up by run id finds the objects."""
    if _LABEL_VALUE.fullmatch(run_id):
        return run_id
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    prefix = re.sub(r"[^A-Za-z0-9_.-]", "-", run_id)[:54].strip("-_.")
    return f"{prefix}-{digest}" if prefix else digest


def run_labels(run_id: str, extra: Mapping[str, str]) -> dict[str, str]:
    labels = dict(extra)
    for key, value in labels.items():
        check_label_value(value, f"label {key!r}")
    labels[MANAGED_BY_LABEL] = MANAGED_BY_VALUE
    labels[RUN_ID_LABEL] = run_label_value(run_id)
    return labels


def run_selector(run_id: str) -> str:
    """The label selector matching exactly what one run created."""
    return f"{MANAGED_SELECTOR},{RUN_ID_LABEL}={run_label_value(run_id)}"


def namespace_name(prefix: str, group: str) -> str:
    return check_dns1035(f"{prefix}-{group}" if prefix else group, "namespace")


def namespace_manifest(name: str, labels: Mapping[str, str]) -> JsonObject:
    return {
        "apiVersion": NAMESPACES.api_version,
        "kind": NAMESPACES.kind,
        "metadata": {"name": name, "labels": dict(labels)},
    }


def sidecar_manifest(namespace: str, labels: Mapping[str, str], hosts: list[str]) -> JsonObject:
    """The seed's Sidecar: proxies in the namespace only learn about ``hosts`` (default: their own
    namespace and istio-system), which keeps istiod's push size flat as namespaces are added."""
    return {
        "apiVersion": SIDECARS.api_version,
        "kind": SIDECARS.kind,
        "metadata": {"name": SIDECAR_NAME, "namespace": namespace, "labels": dict(labels)},
        "spec": {"egress": [{"hosts": list(hosts)}]},
    }


def serving_runtime_manifest(
    template: Mapping[str, Any], name: str, namespace: str, labels: Mapping[str, str]
) -> JsonObject:
    """The template with our name, namespace and labels; its spec is sent as written."""
    kind = template.get("kind")
    if kind != SERVING_RUNTIMES.kind:
        raise ConfigError(f"the serving runtime template must be kind ServingRuntime, not {kind!r}")
    spec = template.get("spec")
    if not isinstance(spec, Mapping) or not spec.get("containers"):
        raise ConfigError("the serving runtime template needs spec.containers")
    metadata = template.get("metadata")
    metadata = dict(metadata) if isinstance(metadata, Mapping) else {}
    metadata.pop("resourceVersion", None)
    metadata.pop("uid", None)
    metadata.pop("creationTimestamp", None)
    metadata["name"] = name
    metadata["namespace"] = namespace
    metadata["labels"] = {**dict(metadata.get("labels") or {}), **labels}
    return {
        "apiVersion": SERVING_RUNTIMES.api_version,
        "kind": SERVING_RUNTIMES.kind,
        "metadata": metadata,
        "spec": dict(spec),
    }


def resolve_template(
    template: InferenceServiceTemplate, overrides: InferenceServiceOverrides | None
) -> InferenceServiceTemplate:
    """The template with the fields the overrides set replaced (validated again)."""
    if overrides is None:
        return template
    changes = overrides.model_dump(exclude_unset=True)
    merged = template.model_dump()
    merged.update(changes)
    return InferenceServiceTemplate.model_validate(merged)


def inference_service_manifest(
    name: str,
    namespace: str,
    template: InferenceServiceTemplate,
    runtime: str | None,
    mode: DeploymentMode,
    labels: Mapping[str, str],
) -> JsonObject:
    """One InferenceService; ``runtime`` is used when the template names none."""
    check_dns1035(name, "InferenceService name")
    model: JsonObject = {"modelFormat": {"name": template.model_format.name}}
    if template.model_format.version:
        model["modelFormat"]["version"] = template.model_format.version
    chosen_runtime = template.runtime or runtime
    if chosen_runtime:
        model["runtime"] = chosen_runtime
    model["storageUri"] = template.storage_uri
    if template.protocol_version:
        model["protocolVersion"] = template.protocol_version
    resources: JsonObject = {}
    if template.resources.requests:
        resources["requests"] = dict(template.resources.requests)
    if template.resources.limits:
        resources["limits"] = dict(template.resources.limits)
    if resources:
        model["resources"] = resources
    if template.args:
        model["args"] = list(template.args)
    if template.env:
        model["env"] = [{"name": k, "value": v} for k, v in sorted(template.env.items())]
    predictor: JsonObject = {"labels": dict(labels), "model": model}
    if template.min_replicas is not None:
        predictor["minReplicas"] = template.min_replicas
    if template.max_replicas is not None:
        predictor["maxReplicas"] = template.max_replicas
    if template.service_account:
        predictor["serviceAccountName"] = template.service_account
    annotations = dict(template.annotations)
    annotations[DEPLOYMENT_MODE_ANNOTATION] = mode.value
    return {
        "apiVersion": INFERENCE_SERVICES.api_version,
        "kind": INFERENCE_SERVICES.kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {**template.labels, **labels},
            "annotations": annotations,
        },
        "spec": {"predictor": predictor},
    }

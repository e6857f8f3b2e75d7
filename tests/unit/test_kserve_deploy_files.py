"""deploy/kserve stays in step with the code: the ClusterRole grants every call the platform
makes, and the Job's scenario is a valid KServeSpec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from servingperf.model.kserve_spec import EndpointSource, KServeSpec

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kserve"

# (API group, resource, verb) for every call in platforms/kserve.py and kube_watch.py.
CALLS = {
    ("", "namespaces", "create"),
    ("", "namespaces", "delete"),
    ("", "namespaces", "list"),
    ("serving.kserve.io", "inferenceservices", "create"),
    ("serving.kserve.io", "inferenceservices", "delete"),
    ("serving.kserve.io", "inferenceservices", "list"),
    ("serving.kserve.io", "inferenceservices", "watch"),
    ("serving.kserve.io", "servingruntimes", "create"),
    ("serving.kserve.io", "servingruntimes", "delete"),
    ("serving.kserve.io", "servingruntimes", "list"),
    ("networking.istio.io", "sidecars", "create"),
    ("networking.istio.io", "sidecars", "delete"),
    ("networking.istio.io", "sidecars", "list"),
}


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def test_the_cluster_role_grants_exactly_the_calls_made() -> None:
    (role,) = [d for d in documents("rbac.yaml") if d["kind"] == "ClusterRole"]
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == CALLS
    (binding,) = [d for d in documents("rbac.yaml") if d["kind"] == "ClusterRoleBinding"]
    (account,) = [d for d in documents("rbac.yaml") if d["kind"] == "ServiceAccount"]
    assert binding["subjects"][0]["name"] == account["metadata"]["name"]


def test_the_job_runs_a_valid_in_cluster_scenario() -> None:
    config_map, job = documents("job.yaml")
    scenario = yaml.safe_load(config_map["data"]["scenario.yaml"])
    spec = KServeSpec.model_validate(scenario["platform"]["kserve"])
    assert spec.in_cluster
    assert spec.endpoint.source is EndpointSource.ADDRESS
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "servingperf"
    assert job["spec"]["backoffLimit"] == 0
    assert pod["containers"][0]["args"][:2] == ["run", "/config/scenario.yaml"]

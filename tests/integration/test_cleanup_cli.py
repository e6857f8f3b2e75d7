"""``servingperf cleanup --kserve`` removes a dead run's cluster objects by label, through the real
client against the Kubernetes API double, and leaves other runs' objects alone."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from servingperf.model.kserve_spec import DeploymentMode, InferenceServiceTemplate
from servingperf.platforms.kserve_manifests import (
    inference_service_manifest,
    namespace_manifest,
    run_labels,
    run_selector,
)
from servingperf.platforms.kube_client import connect
from servingperf.platforms.kube_types import INFERENCE_SERVICES, NAMESPACES
from tests.fakes.kube_api import INFERENCE_SERVICE, NAMESPACE, FakeKubeApiServer

TEMPLATE = {"model_format": {"name": "caikit"}, "storage_uri": "s3://models/flan-t5-small"}


async def test_cleanup_command_deletes_only_the_named_runs_objects(tmp_path: Path) -> None:
    async with FakeKubeApiServer() as server:
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
        api = await connect(
            kubeconfig=str(kubeconfig), context=None, in_cluster=False, request_timeout_s=10
        )
        template = InferenceServiceTemplate.model_validate(TEMPLATE)
        try:
            for run in ("dead-run", "live-run"):
                labels = run_labels(run, {})
                namespace = f"sp-{run}"
                await api.create(NAMESPACES, None, namespace_manifest(namespace, labels))
                body = inference_service_manifest(
                    "m", namespace, template, "rt", DeploymentMode.SERVERLESS, labels
                )
                await api.create(INFERENCE_SERVICES, namespace, body)
        finally:
            await api.close()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "servingperf",
            "cleanup",
            "--kserve",
            "--run-id",
            "dead-run",
            "--kubeconfig",
            str(kubeconfig),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode == 0, stderr.decode()
        assert "deleted InferenceService/sp-dead-run/m" in stdout.decode()
        assert server.store.count(NAMESPACE) == 1
        assert server.store.count(INFERENCE_SERVICE, run_selector("live-run")) == 1
        assert server.store.count(INFERENCE_SERVICE, run_selector("dead-run")) == 0

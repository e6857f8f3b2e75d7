"""The seed's many-model shape through the kserve platform: 12 namespaces x 17 InferenceServices
(204) against the Kubernetes API double, deployed namespace after namespace as the seed did, with
readiness from one cluster-wide watch. (The 2,000-instance run is benchmarks/bench_kserve_watch.py.)
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from servingperf.model.kserve_spec import KServeSpec
from servingperf.model.specs import ModelSpec
from servingperf.platforms.base import Instance, InstanceRequest
from servingperf.platforms.kserve import KServePlatform
from servingperf.platforms.kserve_manifests import MANAGED_SELECTOR
from tests.fakes.kube_api import KINDS, FakeKServeController, FakeKubeApiServer

NAMESPACES = 12
PER_NAMESPACE = 17

pytestmark = pytest.mark.slow


async def test_204_instances_become_ready_through_one_watch(tmp_path: Path) -> None:
    async with FakeKubeApiServer() as server:
        FakeKServeController(server, seed=204, delay_s=(0.05, 0.6))
        spec = KServeSpec.model_validate(
            {
                "kubeconfig": str(server.write_kubeconfig(tmp_path / "kubeconfig")),
                "inference_service": {
                    "model_format": {"name": "caikit"},
                    "storage_uri": "s3://models/flan-t5-small",
                    "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}},
                },
                "istio_sidecar": True,
            }
        )
        platform = KServePlatform(spec, "many-model-test", time.monotonic(), tmp_path)
        model = ModelSpec.model_validate({"name": "flan-t5-small", "endpoint": {"url": "http://x"}})
        instances: list[Instance] = []
        try:
            for group in range(NAMESPACES):
                batch = await asyncio.gather(
                    *(
                        platform.deploy(
                            InstanceRequest(
                                name=f"flan-t5-small-{i}", namespace=f"ns-{group:02d}", model=model
                            )
                        )
                        for i in range(PER_NAMESPACE)
                    )
                )
                instances += batch
                await asyncio.gather(*(platform.wait_ready(i, 120) for i in batch))
            get_requests = server.store.counts["http.GET"]
        finally:
            await platform.close()
        assert len(instances) == 204
        assert all(i.record.ready_at is not None and i.url for i in instances)
        assert len({i.record.namespace for i in instances}) == NAMESPACES
        assert platform.tracker_counts.ready == 204
        stats = platform.watch_stats
        assert stats.lists == 1  # one cluster-wide list-then-watch...
        assert stats.watches <= 3
        assert stats.gone == 0
        assert stats.duplicates == 0
        # ...and no per-object polling: the API served a handful of GETs for 204 instances.
        assert get_requests < 10
        assert all(server.store.count(kind, MANAGED_SELECTOR) == 0 for kind in KINDS)

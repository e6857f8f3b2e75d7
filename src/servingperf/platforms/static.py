"""The static platform: already-running servers given by URL. Nothing is deployed or deleted;
an instance is ready at once and the protocol client's probe checks that it answers.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from servingperf.errors import DeployError
from servingperf.model.deployments import DeploymentRecord, DeploymentStatus
from servingperf.platforms.base import Instance, InstanceRequest


class StaticPlatform:
    name = "static"

    def __init__(self, t0: float) -> None:
        self._t0 = t0

    async def deploy(self, request: InstanceRequest) -> Instance:
        endpoint = request.model.endpoint
        if endpoint is None:
            raise DeployError(f"{request.name}: the static platform needs an 'endpoint'")
        now = datetime.now(UTC)
        offset = time.monotonic() - self._t0
        record = DeploymentRecord(
            instance=request.name,
            namespace=request.namespace,
            model=request.model.request_model,
            platform=self.name,
            endpoint=endpoint.url,
            clock_source="harness",
            created_at=now,
            ready_at=now,
            t_created_s=offset,
            t_ready_s=offset,
            t_first_validated_s=None,
            t_deleted_s=None,
            status=DeploymentStatus.READY.value,
            failure_reason=None,
        )
        return Instance(request=request, record=record, url=endpoint.url)

    async def wait_ready(self, instance: Instance, timeout_s: float) -> None:
        return None

    async def delete(self, instance: Instance) -> None:
        return None

    async def close(self) -> None:
        return None

"""The static platform: already-running servers given by address. Nothing is deployed or deleted.

An endpoint gives an HTTP base URL (``url``: OpenAI, KServe v2 REST), a gRPC address
(``grpc_address``: caikit, TGIS, KServe v2 gRPC; ``grpcs://`` or a CA file for TLS), or both; an
instance carries both, and the protocol client dials the one its protocol speaks.

Each instance still gets a deployment record, so that a static run directory has the same files
as any other (``deployments.parquet``) and readers never special-case it. The record says only
what the harness knows:

- ``created_at`` / ``t_created_s`` are null: the server existed before the run, and its creation
  is not ours to know, so no load time (ready - created) is ever computed for it;
- ``ready_at`` / ``t_ready_s`` are when the run took the endpoint into use (``deploy``), on the
  harness clock: the platform has no readiness signal of its own, the endpoint is taken as ready
  at once, and the scenario's protocol probe that follows checks that it answers (a failed probe
  marks the record ``failed`` with the reason);
- ``t_deleted_s`` stays null and the status stays ``ready`` after the run: ``delete``,
  ``close`` and ``release`` leave the server as found (the platform holds no connection of its
  own: the protocol clients own theirs).
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
        self._instances: list[Instance] = []

    @property
    def instances(self) -> list[Instance]:
        """Every instance taken into use, in order (their records go to ``deployments.parquet``)."""
        return list(self._instances)

    async def deploy(self, request: InstanceRequest) -> Instance:
        endpoint = request.model.endpoint
        if endpoint is None:
            raise DeployError(f"{request.name}: the static platform needs an 'endpoint'")
        grpc = request.model.protocol.value.endswith("-grpc")
        address = endpoint.grpc_address if grpc else endpoint.url
        if address is None:
            field = "endpoint.grpc_address" if grpc else "endpoint.url"
            raise DeployError(
                f"{request.name}: protocol {request.model.protocol.value!r} needs {field}"
            )
        record = DeploymentRecord(
            instance=request.name,
            namespace=request.namespace,
            model=request.model.request_model,
            platform=self.name,
            endpoint=address,
            clock_source="harness",
            created_at=None,  # not created by us: see the module docstring
            ready_at=datetime.now(UTC),
            t_created_s=None,
            t_ready_s=time.monotonic() - self._t0,
            t_first_validated_s=None,
            t_deleted_s=None,
            status=DeploymentStatus.READY.value,
            failure_reason=None,
        )
        instance = Instance(
            request=request, record=record, url=endpoint.url, grpc_url=endpoint.grpc_address
        )
        self._instances.append(instance)
        return instance

    async def wait_ready(self, instance: Instance, timeout_s: float) -> None:
        return None

    async def delete(self, instance: Instance) -> None:
        return None  # the server is not ours: left as found

    async def close(self) -> None:
        return None

    async def release(self) -> None:
        return None  # no session or watch of its own to end

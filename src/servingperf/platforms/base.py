"""The ``Platform`` protocol and the instance types every platform shares.

Terms: an *instance* is one deployed copy of a model (a process, an InferenceService, a URL);
*created* is when the platform accepted it, *ready* when its readiness check first passed. Each
instance carries its :class:`DeploymentRecord`, updated in place as events happen, so a run that is
interrupted still has every deployment fact gathered so far. An instance's *model id* is the id
requests to it carry: the scenario's (``model.request_model``) unless the platform knows the
server names the model otherwise (``Instance.model_id``: KServe runtimes that serve under the
InferenceService's name). *Releasing* a platform object ends its own connections and watches and
leaves its instances running (a run that keeps its instances deployed); *closing* it removes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from servingperf.model.deployments import DeploymentRecord
from servingperf.model.specs import ModelSpec


@dataclass(frozen=True, slots=True)
class InstanceRequest:
    """What to deploy: a model spec under an instance name, in a namespace (a group of instances)."""

    name: str
    namespace: str
    model: ModelSpec
    seed: int = 0
    # Model ids of every instance the scenario places on this instance's emulated device
    # (``model.emulator.device``), this one's included. The local platform serves them all from
    # one emulator process (one batching engine), started by the first of them deployed; empty:
    # the instance gets a server of its own, whatever its device.
    device_model_ids: tuple[str, ...] = ()


@dataclass(slots=True)
class Instance:
    request: InstanceRequest
    record: DeploymentRecord
    url: str | None = None  # base URL (HTTP) or host:port (gRPC) once ready
    grpc_url: str | None = None
    # how to reach it, when the platform knows better than the scenario (an ingress gateway)
    host_header: str | None = None
    tls_insecure: bool = False
    ca_file: str | None = None
    # The model id this instance serves, when the platform knows it is not the scenario's
    # (``request.model.request_model``); None: the scenario's. Set by ``deploy``.
    model_id: str | None = None
    handle: object | None = field(default=None, repr=False)  # platform-private state


class Platform(Protocol):
    """Deploys and removes instances; every method is safe to call during interruption."""

    name: str

    @property
    def instances(self) -> list[Instance]:
        """Every instance taken into use, in order, failed ones included (their records go to
        ``deployments.parquet``)."""
        ...

    async def deploy(self, request: InstanceRequest) -> Instance:
        """Create the instance and return at once (status ``created``); DeployError on refusal."""
        ...

    async def wait_ready(self, instance: Instance, timeout_s: float) -> None:
        """Return when ready (status ``ready``, ``url`` set); else mark it failed, raise DeployError."""
        ...

    async def delete(self, instance: Instance) -> None:
        """Remove the instance; idempotent."""
        ...

    async def close(self) -> None:
        """Remove everything this platform object created that is still there."""
        ...

    async def release(self) -> None:
        """Close this object's own sessions and watches and leave its instances running: called
        instead of ``close`` when a run keeps its instances deployed (the user removes them
        later). Idempotent; ``close`` after it removes nothing. What a platform cannot leave
        running (a local server dies with the harness process) its own docstring says."""
        ...

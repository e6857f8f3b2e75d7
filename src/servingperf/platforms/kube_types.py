"""The seam between the KServe platform and a Kubernetes API server: resource types, the
:class:`KubeApi` protocol, and the one error it raises.

Terms: a *resource* is one REST collection of the API (group, version, plural), e.g.
``serving.kserve.io/v1beta1 inferenceservices``; an *object* is one JSON document in it, handled
as a plain ``dict`` (the platform reads a handful of fields, so typed models would cost more than
they give). A *resourceVersion* is the server's opaque version of an object or a list; it is only
ever compared for equality and handed back to the server. A *watch event* is one line of a watch
stream: ``ADDED``, ``MODIFIED``, ``DELETED``, ``BOOKMARK`` (only a newer resourceVersion) or
``ERROR`` (a ``Status`` object, e.g. code 410 when the resourceVersion asked for is compacted).

Everything talking to a real cluster goes through :class:`KubeApi`, so tests run the same code
against the API double in ``tests/fakes/kube_api.py`` over HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from servingperf.errors import DeployError

JsonObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Resource:
    """One REST collection: ``group`` is empty for the core API (``/api/v1``)."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The URL path of the collection (name None) or of one object; namespace None on a
        namespaced resource means all namespaces (list and watch only)."""
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        parts = [root]
        if self.namespaced and namespace is not None:
            parts.append(f"namespaces/{quote(namespace, safe='')}")
        parts.append(self.plural)
        if name is not None:
            parts.append(quote(name, safe=""))
        return "/".join(parts)


NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
INFERENCE_SERVICES = Resource(
    "serving.kserve.io", "v1beta1", "inferenceservices", "InferenceService"
)
SERVING_RUNTIMES = Resource("serving.kserve.io", "v1alpha1", "servingruntimes", "ServingRuntime")
SIDECARS = Resource("networking.istio.io", "v1beta1", "sidecars", "Sidecar")


class KubeApiError(DeployError):
    """A request to the Kubernetes API failed: ``status`` is the HTTP code (0 when no answer came:
    connection refused, reset, timed out), ``reason`` the Status reason (``NotFound``,
    ``AlreadyExists``, ``Expired``...)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"Kubernetes API: {status} {reason}: {message}" if status else message)
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class ObjectList:
    items: list[JsonObject]
    resource_version: str


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str  # ADDED | MODIFIED | DELETED | BOOKMARK | ERROR
    object: JsonObject


class KubeApi(Protocol):
    """The few API calls the platform makes. Every failure is a :class:`KubeApiError`."""

    async def create(
        self, resource: Resource, namespace: str | None, body: Mapping[str, Any]
    ) -> JsonObject: ...

    async def list(
        self, resource: Resource, namespace: str | None, label_selector: str
    ) -> ObjectList: ...

    async def delete(self, resource: Resource, namespace: str | None, name: str) -> None:
        """Delete with background propagation; KubeApiError(404) if it is not there."""
        ...

    def watch(
        self,
        resource: Resource,
        namespace: str | None,
        label_selector: str,
        resource_version: str,
        timeout_s: int,
    ) -> AsyncGenerator[WatchEvent, None]:
        """Stream events after ``resource_version`` (bookmarks asked for) until the server ends
        the stream (its ``timeoutSeconds``); a refused watch raises KubeApiError (e.g. 410)."""
        ...

    async def close(self) -> None: ...


def status_error(body: Mapping[str, Any], http_status: int) -> KubeApiError:
    """A KubeApiError from a ``Status`` object (an error body, or an ERROR event's object)."""
    code = body.get("code")
    status = int(code) if isinstance(code, int) else http_status
    return KubeApiError(
        status, str(body.get("reason") or "Unknown"), str(body.get("message") or "")
    )

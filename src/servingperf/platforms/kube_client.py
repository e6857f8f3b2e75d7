"""The :class:`KubeApi` on a real cluster, through ``kubernetes_asyncio`` (the optional extra
``kserve``; imported here, lazily, so the core never needs it).

We use the library for what is hard to get right (kubeconfig contexts, exec and OIDC credential
plugins, in-cluster service-account tokens that rotate, client certificates, TLS) and its
``ApiClient.call_api`` for the requests themselves, reading the raw aiohttp response: the platform
handles objects as plain dicts and parses watch lines itself, so no generated model classes are
built and a 410 is seen as a 410 rather than retried blindly (the library's own ``Watch`` retries a
410 once with the same, expired resourceVersion).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import aiohttp

from servingperf.platforms.kube_types import (
    JsonObject,
    KubeApiError,
    ObjectList,
    Resource,
    WatchEvent,
    status_error,
)

_JSON = "application/json"
_DELETE_OPTIONS = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
# A watch stream that stays silent this long past its own timeoutSeconds is presumed dead.
_WATCH_GRACE_S = 30.0


def _library(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise KubeApiError(
            0,
            "MissingDependency",
            "the kserve platform needs kubernetes_asyncio: pip install 'servingperf[kserve]'",
        ) from exc


def _kubeconfig_path(kubeconfig: str | None) -> str | None:
    """The file to read: the one given, else the first of $KUBECONFIG, else (None) the
    library's default, ~/.kube/config."""
    path = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    if not path:
        return None
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        # The library would go on with an empty configuration and a puzzling error.
        raise KubeApiError(0, "BadConfig", f"the kubeconfig {path} does not exist")
    return path


async def connect(
    *,
    kubeconfig: str | None,
    context: str | None,
    in_cluster: bool,
    request_timeout_s: float,
    max_connections: int = 100,
) -> ClientKubeApi:
    """A KubeApi for the cluster named by a kubeconfig (its file, else ``$KUBECONFIG``, else
    ``~/.kube/config``; ``context`` or the current one) or, with ``in_cluster``, the pod's own
    service account. Raises KubeApiError when the configuration cannot be loaded."""
    client = _library("kubernetes_asyncio.client")
    config = _library("kubernetes_asyncio.config")
    configuration = client.Configuration()
    refresher: asyncio.Task[None] | None = None
    try:
        if in_cluster:
            config.load_incluster_config(client_configuration=configuration)
        else:
            loader = await config.load_kube_config(
                config_file=_kubeconfig_path(kubeconfig),
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
            # Exec / GCP credential plugins hand out short-lived tokens (EKS: 15 min) while a
            # many-model run lasts longer: refresh them in the background (returns at once
            # when the user has neither).
            refresher = asyncio.create_task(config.refresh_token(loader, configuration))
    except (OSError, ValueError, KeyError, config.ConfigException) as exc:
        raise KubeApiError(
            0, "BadConfig", f"cannot load the Kubernetes configuration: {exc}"
        ) from exc
    configuration.connection_pool_maxsize = max_connections
    return ClientKubeApi(client.ApiClient(configuration), request_timeout_s, refresher)


class ClientKubeApi:
    """KubeApi over one ``kubernetes_asyncio.client.ApiClient`` (one aiohttp session)."""

    def __init__(
        self, api_client: Any, request_timeout_s: float, refresher: asyncio.Task[None] | None
    ) -> None:
        self._api = api_client
        self._timeout_s = request_timeout_s
        self._refresher = refresher

    async def _send(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None = None,
        body: Mapping[str, Any] | None = None,
        request_timeout: Any = None,
    ) -> Any:
        """The raw aiohttp response (caller reads and releases it); transport errors translated."""
        try:
            return await self._api.call_api(
                path,
                method,
                query_params=query or [],
                header_params={"Accept": _JSON, "Content-Type": _JSON},
                body=dict(body) if body is not None else None,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=request_timeout
                if request_timeout is not None
                else self._timeout_s,
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise KubeApiError(0, "Unreachable", f"{method} {path}: {exc!r}") from exc

    async def _json(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> JsonObject:
        response = await self._send(method, path, query, body)
        try:
            raw = await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise KubeApiError(0, "Unreachable", f"{method} {path}: {exc!r}") from exc
        finally:
            response.release()
        try:
            document = json.loads(raw) if raw else {}
        except ValueError:
            document = {"message": raw[:200].decode(errors="replace")}
        if not 200 <= response.status <= 299:
            raise status_error(document if isinstance(document, dict) else {}, response.status)
        if not isinstance(document, dict):
            raise KubeApiError(response.status, "BadResponse", f"{method} {path}: not an object")
        return document

    async def create(
        self, resource: Resource, namespace: str | None, body: Mapping[str, Any]
    ) -> JsonObject:
        return await self._json("POST", resource.path(namespace), body=body)

    async def list(
        self, resource: Resource, namespace: str | None, label_selector: str
    ) -> ObjectList:
        query = [("labelSelector", label_selector)] if label_selector else []
        document = await self._json("GET", resource.path(namespace), query)
        items = document.get("items") or []
        version = str((document.get("metadata") or {}).get("resourceVersion") or "")
        return ObjectList([i for i in items if isinstance(i, dict)], version)

    async def delete(self, resource: Resource, namespace: str | None, name: str) -> None:
        await self._json("DELETE", resource.path(namespace, name), body=_DELETE_OPTIONS)

    async def watch(
        self,
        resource: Resource,
        namespace: str | None,
        label_selector: str,
        resource_version: str,
        timeout_s: int,
    ) -> AsyncGenerator[WatchEvent, None]:
        query = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout_s)),
        ]
        if label_selector:
            query.append(("labelSelector", label_selector))
        if resource_version:
            query.append(("resourceVersion", resource_version))
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self._timeout_s, sock_read=timeout_s + _WATCH_GRACE_S
        )
        path = resource.path(namespace)
        response = await self._send("GET", path, query, request_timeout=timeout)
        try:
            if response.status != 200:
                raw = await response.read()
                try:
                    document = json.loads(raw) if raw else {}
                except ValueError:
                    document = {}
                raise status_error(document if isinstance(document, dict) else {}, response.status)
            async for line in response.content:
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError as exc:
                    raise KubeApiError(200, "BadWatchLine", f"{path}: {line[:120]!r}") from exc
                obj = event.get("object") if isinstance(event, dict) else None
                if not isinstance(obj, dict):
                    raise KubeApiError(200, "BadWatchLine", f"{path}: event without object")
                yield WatchEvent(str(event.get("type")), obj)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise KubeApiError(0, "Unreachable", f"watch {path}: {exc!r}") from exc
        finally:
            response.close()  # an unfinished stream's connection is dropped, not pooled

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refresher
            self._refresher = None
        await self._api.close()

"""The KServe platform: each model instance is an InferenceService on a Kubernetes cluster.

What a run creates, all labelled with the run labels (:mod:`kserve_manifests`): per namespace
group a Namespace, optionally an Istio Sidecar and a ServingRuntime from a template; per instance an
InferenceService. Readiness comes from one list-then-watch (cluster-wide by the run's label, or
one per namespace), never from polling objects. Clock source: the platform. ``created_at`` is the
object's ``creationTimestamp``, ``ready_at`` its Ready condition's ``lastTransitionTime`` (both
the API server's clock, 1 s resolution); ``t_created_s`` is when the create call returned and
``t_ready_s`` when the watch delivered the ready object (the harness's monotonic clock,
sub-second). The endpoint is ``status.url`` (or ``status.address.url``) with ``endpoint.path``
appended, optionally reached through an ingress address with the status URL's host as the Host
header. The model id requests carry is the scenario's, or with ``endpoint.served_model:
isvc-name`` the InferenceService's name (``Instance.model_id``), which is what vLLM-based runtimes
serve by default.

``close()`` removes everything the run made, also after an interruption: the namespaces it
created (which takes their contents), the objects it made elsewhere, and, by label, anything a
create that was cut off may still have made. :func:`cleanup_stale` does the same for a dead run.
``release()`` (a run that keeps its instances) stops the watches and closes the API client, and
removes nothing: the objects stay, findable by the run label, for ``servingperf cleanup``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from servingperf.errors import ConfigError, DeployError
from servingperf.model.deployments import DeploymentRecord, DeploymentStatus
from servingperf.model.kserve_spec import (
    EndpointSource,
    KServeEndpointSpec,
    KServeSpec,
    ServedModel,
    WatchScope,
)
from servingperf.platforms.base import Instance, InstanceRequest
from servingperf.platforms.kserve_manifests import (
    inference_service_manifest,
    namespace_manifest,
    namespace_name,
    resolve_template,
    run_labels,
    run_selector,
    serving_runtime_manifest,
    sidecar_manifest,
)
from servingperf.platforms.kserve_status import IsvcState, parse_time
from servingperf.platforms.kserve_watch import ReadinessTracker, TrackerCounts, Waiter
from servingperf.platforms.kube_types import (
    INFERENCE_SERVICES,
    NAMESPACES,
    SERVING_RUNTIMES,
    SIDECARS,
    KubeApi,
    KubeApiError,
    Resource,
)
from servingperf.platforms.kube_watch import ListWatch, WatchStats

_CLEANUP_CONCURRENCY = 16
_NAMESPACE_POLL_S = 1.0


@dataclass(frozen=True, slots=True)
class EndpointAccess:
    """How to reach a ready instance: ``url`` is what clients connect to, ``status_url`` the
    endpoint as KServe names it (its reported URL, ``endpoint.path`` appended); ``host_header``
    set when connecting through an ingress address."""

    url: str
    grpc_url: str
    status_url: str
    host_header: str | None
    tls_insecure: bool
    ca_file: str | None


@dataclass(slots=True)
class KServeHandle:
    """The platform's private state of one instance (``Instance.handle``)."""

    namespace: str
    name: str
    waiter: Waiter
    created: bool = False
    deleted: bool = False
    uid: str | None = None
    access: EndpointAccess | None = None


def resolve_endpoint(state: IsvcState, spec: KServeEndpointSpec) -> EndpointAccess | str:
    """The endpoint of a ready InferenceService, or why there is none (a message).

    ``spec.path`` is appended to the status URL's own path (a runtime serving its API below the
    root, which the status URL does not say); the gRPC target (host:port) has no path."""
    field = "url" if spec.source is EndpointSource.URL else "address.url"
    reported = state.url if spec.source is EndpointSource.URL else state.address_url
    if not reported:
        return f"ready, but status.{field} is empty"
    status = urlsplit(reported)
    if status.scheme not in ("http", "https") or not status.hostname:
        return f"ready, but status.{field} {reported!r} is not an http(s) URL"
    host_header = spec.host_header
    base, hostname = status, status.hostname
    if spec.ingress_url:
        base = urlsplit(spec.ingress_url)
        if base.scheme not in ("http", "https") or not base.hostname:
            return f"endpoint.ingress_url {spec.ingress_url!r} is not an http(s) URL"
        hostname = base.hostname
        host_header = host_header or status.netloc
    path = status.path.rstrip("/") + spec.path
    url = urlunsplit((base.scheme, base.netloc, path, "", "")).rstrip("/")
    port = base.port or (443 if base.scheme == "https" else 80)
    host = f"[{hostname}]" if ":" in hostname else hostname
    status_url = urlunsplit((status.scheme, status.netloc, path, "", "")).rstrip("/")
    return EndpointAccess(
        url=url,
        grpc_url=f"{host}:{port}",
        status_url=status_url,
        host_header=host_header,
        tls_insecure=spec.tls_insecure,
        ca_file=spec.ca_file,
    )


def load_runtime_template(spec: KServeSpec, base_dir: Path) -> dict[str, Any] | None:
    """The ServingRuntime template as a manifest dict (file read now: bad input fails early)."""
    template = spec.serving_runtime
    if template is None:
        return None
    if template.inline is not None:
        document: object = template.inline
    else:
        assert template.file is not None
        path = (base_dir / template.file).expanduser()
        try:
            document = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read the serving runtime template {path}: {exc}") from exc
    if not isinstance(document, dict):
        raise ConfigError("the serving runtime template must be one YAML mapping (a manifest)")
    # Validate its shape now, with placeholder names, rather than at the first namespace.
    serving_runtime_manifest(document, template.name, "check", {})
    return document


async def cleanup_stale(
    api: KubeApi, selector: str, namespaces: Sequence[str] | None = None
) -> list[str]:
    """Delete every InferenceService, ServingRuntime, Sidecar and Namespace matching the label
    ``selector`` (e.g. ``servingperf.io/run-id=<id>``, or ``app.kubernetes.io/managed-by=
    servingperf`` for all runs); returns ``Kind/namespace/name`` of each deleted. With
    ``namespaces``, only those are searched (namespace-scoped rights suffice) and no Namespace is
    deleted. A resource type the cluster does not have (no Istio: no Sidecars) is skipped."""
    if not selector.strip():
        raise ConfigError("cleanup needs a label selector; refusing to delete everything")
    scopes: Sequence[str | None] = [None] if namespaces is None else list(namespaces)
    kinds = [INFERENCE_SERVICES, SERVING_RUNTIMES, SIDECARS]
    deleted: list[str] = []
    for resource in kinds if namespaces is not None else [*kinds, NAMESPACES]:
        for scope in scopes if resource.namespaced else [None]:
            try:
                listed = await api.list(resource, scope, selector)
            except KubeApiError as exc:
                if exc.status == 404:
                    continue
                raise
            for item in listed.items:
                meta = item.get("metadata") or {}
                name = str(meta.get("name") or "")
                namespace = meta.get("namespace")
                if not name or (resource is NAMESPACES and meta.get("deletionTimestamp")):
                    continue
                try:
                    await api.delete(resource, namespace, name)
                except KubeApiError as exc:
                    if exc.status != 404:
                        raise
                    continue
                where = f"{namespace}/{name}" if namespace else name
                deleted.append(f"{resource.kind}/{where}")
    return deleted


ApiFactory = Callable[[KServeSpec], Awaitable[KubeApi]]


async def _connect_cluster(spec: KServeSpec) -> KubeApi:
    from servingperf.platforms.kube_client import connect

    return await connect(
        kubeconfig=spec.kubeconfig,
        context=spec.context,
        in_cluster=spec.in_cluster,
        request_timeout_s=spec.api_timeout_s,
    )


class KServePlatform:
    """The Platform protocol on KServe. ``api``: an already connected KubeApi (its owner closes
    it); by default one is connected on first use from the spec and closed by ``close()``."""

    name = "kserve"

    def __init__(
        self,
        spec: KServeSpec,
        run_id: str,
        t0: float,
        base_dir: Path,
        api: KubeApi | None = None,
        api_factory: ApiFactory = _connect_cluster,
    ) -> None:
        self._spec = spec
        self._run_id = run_id
        self._t0 = t0
        self._labels = run_labels(run_id, spec.labels)
        self._selector = run_selector(run_id)
        self._runtime_template = load_runtime_template(spec, base_dir)
        self._api = api
        self._owns_api = api is None
        self._api_factory = api_factory
        self._connecting: asyncio.Task[KubeApi] | None = None
        self._namespace_setup: dict[str, asyncio.Task[None]] = {}
        self._watch_setup: dict[str | None, asyncio.Task[ListWatch]] = {}
        self._watch_tasks: list[asyncio.Task[None]] = []
        self._owned_namespaces: list[str] = []
        self._owned_objects: list[tuple[Resource, str, str]] = []
        self._instances: list[Instance] = []
        self._tracker = ReadinessTracker(spec.fail_reasons, self._on_ready)
        self._closed = False
        # True once a create may have landed without us knowing (cut off, no answer, 5xx):
        # close() then sweeps by label even if it owns nothing.
        self._uncertain = False

    # -- what others read -------------------------------------------------------------------

    @property
    def instances(self) -> list[Instance]:
        return list(self._instances)

    @property
    def selector(self) -> str:
        """The label selector of everything this run creates."""
        return self._selector

    @property
    def watch_stats(self) -> WatchStats:
        total = WatchStats()
        for task in self._watch_setup.values():
            if task.done() and not task.cancelled() and task.exception() is None:
                total.add(task.result().stats)
        return total

    @property
    def tracker_counts(self) -> TrackerCounts:
        return self._tracker.counts

    @staticmethod
    def access(instance: Instance) -> EndpointAccess | None:
        """Host header and TLS settings of a ready instance, for the protocol client's Target."""
        handle = instance.handle
        return handle.access if isinstance(handle, KServeHandle) else None

    # -- Platform protocol ------------------------------------------------------------------

    async def deploy(self, request: InstanceRequest) -> Instance:
        if self._closed:
            raise DeployError(f"{request.name}: the kserve platform is closed")
        namespace = namespace_name(self._spec.namespace_prefix, request.namespace)
        template = resolve_template(
            self._spec.inference_service, self._spec.models.get(request.model.name)
        )
        manifest = inference_service_manifest(
            request.name,
            namespace,
            template,
            self._spec.runtime_name,
            self._spec.deployment_mode,
            self._labels,
        )
        api = await self._connect()
        await self._ensure_namespace(api, namespace)
        await self._ensure_watch(api, namespace)
        model_id = None
        if self._spec.endpoint.served_model is ServedModel.ISVC_NAME:
            model_id = request.name  # the InferenceService's name: see the module docstring
        record = DeploymentRecord(
            instance=request.name,
            namespace=namespace,
            model=model_id or request.model.request_model,
            platform=self.name,
            clock_source="platform",
        )
        instance = Instance(request=request, record=record, model_id=model_id)
        waiter = self._tracker.register(namespace, request.name, instance)
        handle = KServeHandle(namespace, request.name, waiter)
        instance.handle = handle
        self._instances.append(instance)
        try:
            created = await self._create(api, INFERENCE_SERVICES, namespace, manifest)
        except KubeApiError as exc:
            self._tracker.unregister(namespace, request.name)
            hint = (
                " (left by an earlier run? see `servingperf cleanup`)" if exc.status == 409 else ""
            )
            reason = f"the API server refused the InferenceService: {exc}{hint}"
            record.status = DeploymentStatus.FAILED.value
            record.failure_reason = reason
            raise DeployError(f"{request.name}: {reason}") from exc
        record.t_created_s = time.monotonic() - self._t0
        handle.created = True
        meta = created.get("metadata") or {}
        handle.uid = meta.get("uid")
        record.created_at = parse_time(meta.get("creationTimestamp"))
        return instance

    async def wait_ready(self, instance: Instance, timeout_s: float) -> None:
        handle = _handle(instance)
        waiter = handle.waiter
        try:
            await asyncio.wait_for(waiter.done.wait(), timeout_s)
        except TimeoutError:
            last = waiter.state.reason if waiter.state is not None else "never seen by the watch"
            self._tracker.give_up(waiter, f"not ready after {timeout_s:g} s (last: {last})")
        if waiter.failure is not None:
            raise DeployError(f"{instance.request.name}: {waiter.failure}")

    async def delete(self, instance: Instance) -> None:
        handle = _handle(instance)
        if handle.deleted:
            return
        self._tracker.unregister(handle.namespace, handle.name)
        if handle.created:
            api = await self._connect()
            try:
                await api.delete(INFERENCE_SERVICES, handle.namespace, handle.name)
            except KubeApiError as exc:
                if exc.status != 404:
                    raise DeployError(f"{handle.name}: cannot delete: {exc}") from exc
        self._mark_deleted(instance)

    async def close(self) -> None:
        """Remove all the run made (see the module docstring); DeployError listing what could not
        be removed, with the selector to remove it later."""
        if self._closed:
            return
        self._closed = True
        await self._stop_background()
        if self._api is None:
            return  # never connected: nothing was created
        created_any = any(_handle(i).created for i in self._instances)
        if not (created_any or self._owned_namespaces or self._owned_objects or self._uncertain):
            if self._owns_api:
                await self._api.close()
            return  # every create was refused: nothing to remove
        problems: list[str] = []
        try:
            await self._remove_all(self._api, problems)
        finally:
            if self._owns_api:
                await self._api.close()
        if problems:
            raise DeployError(
                f"clean-up incomplete ({'; '.join(problems[:5])}); remove the rest with the"
                f" label selector {self._selector}"
            )

    async def release(self) -> None:
        """Leave every InferenceService (and namespace, runtime, Sidecar) as it is; stop the
        watches and close the API client this object connected. Afterwards ``close()`` removes
        nothing: remove them with ``servingperf cleanup --kserve --run-id <run id>`` (or the label
        selector :attr:`selector`). An instance still waiting to become ready is failed: no
        watch will report it any more."""
        if self._closed:
            return
        self._closed = True
        await self._stop_background()
        self._tracker.on_watch_failed(
            "the kserve platform was released (its watch stopped) before the instance was ready"
        )
        if self._api is not None and self._owns_api:
            await self._api.close()

    # -- internals --------------------------------------------------------------------------

    async def _stop_background(self) -> None:
        """Cancel namespace set-ups and watches; finish a connection under way (so that its
        client is closed by the caller: ``self._api`` is then set)."""
        pending: list[asyncio.Future[Any]] = [
            *self._namespace_setup.values(),
            *self._watch_setup.values(),
            *self._watch_tasks,
        ]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        connecting = self._connecting
        if self._api is None and connecting is not None:
            # A deploy cut off while connecting: finish connecting so the client is closed.
            with contextlib.suppress(Exception):
                self._api = await connecting

    async def _connect(self) -> KubeApi:
        if self._api is not None:
            return self._api
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._api_factory(self._spec))
        api = await asyncio.shield(self._connecting)
        self._api = api
        return api

    def _on_ready(self, instance: Instance, state: IsvcState) -> str | None:
        access = resolve_endpoint(state, self._spec.endpoint)
        if isinstance(access, str):
            return access
        _handle(instance).access = access
        instance.url = access.url
        instance.grpc_url = access.grpc_url
        instance.host_header = access.host_header
        instance.tls_insecure = access.tls_insecure
        instance.ca_file = access.ca_file
        instance.record.endpoint = access.status_url
        return None

    async def _create(
        self, api: KubeApi, resource: Resource, namespace: str | None, body: dict[str, Any]
    ) -> dict[str, Any]:
        """api.create, remembering when its outcome is unknown (see ``_uncertain``)."""
        try:
            return await api.create(resource, namespace, body)
        except KubeApiError as exc:
            if not 400 <= exc.status < 500:
                self._uncertain = True
            raise
        except BaseException:
            self._uncertain = True
            raise

    async def _ensure_namespace(self, api: KubeApi, namespace: str) -> None:
        task = self._namespace_setup.get(namespace)
        if task is None:
            task = asyncio.ensure_future(self._setup_namespace(api, namespace))
            self._namespace_setup[namespace] = task
        await asyncio.shield(task)

    async def _setup_namespace(self, api: KubeApi, namespace: str) -> None:
        spec = self._spec
        try:
            if spec.create_namespaces:
                labels = {**self._labels, **spec.namespace_labels}
                await self._create(api, NAMESPACES, None, namespace_manifest(namespace, labels))
                self._owned_namespaces.append(namespace)
            if spec.istio_sidecar:
                body = sidecar_manifest(namespace, self._labels, spec.sidecar_egress_hosts)
                await self._create_owned(api, SIDECARS, namespace, body, exists_ok=True)
            if self._runtime_template is not None and spec.serving_runtime is not None:
                body = serving_runtime_manifest(
                    self._runtime_template, spec.serving_runtime.name, namespace, self._labels
                )
                await self._create_owned(api, SERVING_RUNTIMES, namespace, body)
        except KubeApiError as exc:
            hint = ""
            if exc.status == 409:
                hint = " (left by an earlier run? `servingperf cleanup`; or set create_namespaces:"
                hint += " false to use existing namespaces)"
            raise DeployError(f"cannot prepare namespace {namespace}: {exc}{hint}") from exc

    async def _create_owned(
        self,
        api: KubeApi,
        resource: Resource,
        namespace: str,
        body: dict[str, Any],
        exists_ok: bool = False,
    ) -> None:
        name = str(body["metadata"]["name"])
        try:
            await self._create(api, resource, namespace, body)
        except KubeApiError as exc:
            if exc.status == 409 and exists_ok:
                return  # the user's own: used as it is, and not deleted at the end
            raise
        if namespace not in self._owned_namespaces:
            self._owned_objects.append((resource, namespace, name))

    async def _ensure_watch(self, api: KubeApi, namespace: str) -> None:
        scope = namespace if self._spec.watch_scope is WatchScope.NAMESPACE else None
        task = self._watch_setup.get(scope)
        if task is None:
            task = asyncio.ensure_future(self._start_watch(api, scope))
            self._watch_setup[scope] = task
        try:
            await asyncio.shield(task)
        except KubeApiError as exc:
            hint = " (is KServe installed?)" if exc.status == 404 else ""
            raise DeployError(f"cannot watch InferenceServices: {exc}{hint}") from exc

    async def _start_watch(self, api: KubeApi, scope: str | None) -> ListWatch:
        watch = ListWatch(
            api,
            INFERENCE_SERVICES,
            scope,
            self._selector,
            self._tracker,
            lambda: time.monotonic() - self._t0,
            self._spec.watch_timeout_s,
        )
        await watch.start()
        self._watch_tasks.append(asyncio.ensure_future(watch.run()))
        return watch

    def _mark_deleted(self, instance: Instance) -> None:
        handle = _handle(instance)
        handle.deleted = True
        record = instance.record
        if record.t_deleted_s is None:
            record.t_deleted_s = time.monotonic() - self._t0
        if record.status != DeploymentStatus.FAILED.value:
            record.status = DeploymentStatus.DELETED.value

    async def _remove_all(self, api: KubeApi, problems: list[str]) -> None:
        limit = asyncio.Semaphore(_CLEANUP_CONCURRENCY)
        owned = set(self._owned_namespaces)

        async def remove(resource: Resource, namespace: str | None, name: str) -> None:
            async with limit:
                try:
                    await api.delete(resource, namespace, name)
                except KubeApiError as exc:
                    if exc.status != 404:
                        problems.append(f"{resource.kind} {namespace}/{name}: {exc}")

        removals: list[Awaitable[None]] = []
        for instance in self._instances:
            handle = _handle(instance)
            if handle.deleted:
                continue
            if handle.created and handle.namespace not in owned:
                removals.append(remove(INFERENCE_SERVICES, handle.namespace, handle.name))
            self._mark_deleted(instance)  # a namespace we delete takes it along
        removals += [remove(r, ns, name) for r, ns, name in reversed(self._owned_objects)]
        removals += [remove(NAMESPACES, None, ns) for ns in self._owned_namespaces]
        await asyncio.gather(*removals)
        # Creates cut off by an interruption may still have landed: sweep by label, then wait
        # for the namespaces to be gone (sweeping again, for one that was created late).
        await self._sweep(api, problems)
        if not (self._owned_namespaces or (self._uncertain and self._spec.create_namespaces)):
            return
        deadline = time.monotonic() + self._spec.delete_wait_s
        while self._spec.delete_wait_s > 0:
            try:
                left = (await api.list(NAMESPACES, None, self._selector)).items
            except KubeApiError as exc:
                problems.append(f"cannot list namespaces: {exc}")
                break
            if not left:
                break
            if time.monotonic() >= deadline:
                names = ", ".join(str((n.get("metadata") or {}).get("name")) for n in left[:5])
                problems.append(f"namespaces still terminating after the wait: {names}")
                break
            await self._sweep(api, problems)
            await asyncio.sleep(_NAMESPACE_POLL_S)

    async def _sweep(self, api: KubeApi, problems: list[str]) -> None:
        namespaces = None
        if self._spec.watch_scope is WatchScope.NAMESPACE and not self._spec.create_namespaces:
            namespaces = sorted(self._namespace_setup)  # namespace-scoped rights only
        try:
            await cleanup_stale(api, self._selector, namespaces)
        except KubeApiError as exc:
            problems.append(f"the clean-up sweep by label failed: {exc}")


def _handle(instance: Instance) -> KServeHandle:
    handle = instance.handle
    if not isinstance(handle, KServeHandle):
        raise DeployError(f"{instance.request.name}: not deployed by this kserve platform")
    return handle

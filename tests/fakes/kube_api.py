"""The one Kubernetes API test double, shared by every test and benchmark (never copied), plus a
test-side fake KServe controller and :class:`FakeIngress` (the model endpoints behind the
status URLs: one emulator behind a Host-header router).

What it is: an aiohttp server on 127.0.0.1 speaking the Kubernetes REST conventions that the
kserve platform and its client library rely on, over real HTTP:

- resources: core ``v1 namespaces``; ``serving.kserve.io`` ``v1beta1 inferenceservices`` and
  ``v1alpha1 servingruntimes`` (validated against the CRD schemas kept in
  ``src/servingperf/platforms/crds``, strictly: an unknown field is a 422, where a real server
  would prune it silently); ``networking.istio.io/v1beta1 sidecars`` (not validated);
- verbs: create (201), get, list, replace (PUT), merge patch, delete; the ``status`` subresource
  (status is ignored on create and on main-resource writes, as for a CRD with that subresource);
- ``labelSelector`` (equality and set-based), ``watch=true`` (any case) with ``resourceVersion``,
  ``timeoutSeconds`` and ``allowWatchBookmarks``; one global, increasing revision stamped as every
  object's ``resourceVersion``, plus ``uid``, ``generation`` and ``creationTimestamp`` (the
  server's clock, whole seconds, optionally offset so tests can tell it from the harness's);
- a bounded event history (``history_limit``) and explicit compaction: a watch from a compacted
  resourceVersion gets *410 Gone*, as an ERROR event in a 200 stream (what kube-apiserver does)
  or, with ``gone_as_http``, as an HTTP 410; ``drop_watches`` ends open streams, optionally with an
  ERROR 410 event; ``watch_gate`` holds new watch requests (to make the world move while a client
  is disconnected);
- namespaces: objects need an existing namespace; deleting one deletes its contents (after
  ``namespace_finalize_s`` in ``Terminating``, during which creates in it are refused);
- bearer-token authentication (401 without the token the kubeconfig carries).

Costs stay flat: objects are kept per resource in dicts, a request costs O(1) apart from the
lists and watch replays it asks for, and no request log is kept (only counters).

What it does NOT prove: no scheduling, pods, images, admission webhooks (KServe's validating
webhook included: only the CRD schema is checked), RBAC authorisation, API priority and fairness,
server-side apply, strategic merge patch, field selectors (refused with 400), pagination
(``limit``/``continue``), the watch cache's exact sizing, etcd latency, or KServe's reconciler:
the :class:`FakeKServeController` only moves objects through plausible statuses, and
:class:`FakeIngress` is a Host lookup in front of emulator front ends on one shared engine (no
TLS, no activator; of the runtimes' conventions only the served model id and an API path).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import copy
import json
import random
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

JsonObject = dict[str, Any]
CRD_DIR = Path(__file__).resolve().parents[2] / "src" / "servingperf" / "platforms" / "crds"
DEFAULT_TOKEN = "servingperf-test-token"
MANAGED_SELECTOR = "app.kubernetes.io/managed-by=servingperf"  # every servingperf object


# -- resource types ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Kind:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    status_subresource: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


NAMESPACE = Kind("", "v1", "namespaces", "Namespace", namespaced=False)
INFERENCE_SERVICE = Kind("serving.kserve.io", "v1beta1", "inferenceservices", "InferenceService")
SERVING_RUNTIME = Kind(
    "serving.kserve.io", "v1alpha1", "servingruntimes", "ServingRuntime", status_subresource=False
)
SIDECAR = Kind("networking.istio.io", "v1beta1", "sidecars", "Sidecar", status_subresource=False)
KINDS = (NAMESPACE, INFERENCE_SERVICE, SERVING_RUNTIME, SIDECAR)


# -- errors and schemas --------------------------------------------------------------------


class ApiStatus(Exception):
    """A failure answered as a Kubernetes ``Status`` object."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message

    def body(self) -> JsonObject:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


def _strict(schema: Any) -> Any:
    """The schema with ``additionalProperties: false`` wherever it lists properties and does not
    preserve unknown fields (a real server prunes such fields; we reject them, to catch them)."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: _strict(value) for key, value in schema.items()}
    if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        result.setdefault("additionalProperties", False)
    return result


def crd_validator(crd_file: Path, version: str) -> Any:
    """A jsonschema validator for one version of a CRD kept in the repository (strict)."""
    import jsonschema

    crd = yaml.safe_load(crd_file.read_text())
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            return jsonschema.Draft202012Validator(_strict(entry["schema"]["openAPIV3Schema"]))
    raise KeyError(f"{crd_file.name} has no version {version}")


def kserve_validators() -> dict[Kind, Any]:
    return {
        INFERENCE_SERVICE: crd_validator(
            CRD_DIR / "serving.kserve.io_inferenceservices.yaml", "v1beta1"
        ),
        SERVING_RUNTIME: crd_validator(
            CRD_DIR / "serving.kserve.io_servingruntimes.yaml", "v1alpha1"
        ),
    }


# -- label selectors ------------------------------------------------------------------------

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_VALUE = r"[-A-Za-z0-9_.]*"
_EXISTS = re.compile(rf"\s*(!?)\s*({_KEY})\s*")
_EQUALS = re.compile(rf"\s*({_KEY})\s*(==|=|!=)\s*({_VALUE})\s*")
_SET = re.compile(rf"\s*({_KEY})\s+(in|notin)\s+\(([^)]*)\)\s*")


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: str  # = != in notin exists !exists
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        return not present or value not in self.values  # != and notin


def parse_selector(text: str) -> tuple[Requirement, ...]:
    terms: list[str] = []
    depth, start = 0, 0
    for index, char in enumerate(text):
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append(text[start:index])
            start = index + 1
    terms.append(text[start:])
    requirements: list[Requirement] = []
    for term in terms:
        if not term.strip():
            if len(terms) > 1:
                raise ValueError(f"empty term in selector {text!r}")
            continue
        if match := _SET.fullmatch(term):
            values = frozenset(v.strip() for v in match.group(3).split(",") if v.strip())
            requirements.append(Requirement(match.group(1), match.group(2), values))
        elif match := _EQUALS.fullmatch(term):
            op = "!=" if match.group(2) == "!=" else "="
            requirements.append(Requirement(match.group(1), op, frozenset({match.group(3)})))
        elif match := _EXISTS.fullmatch(term):
            op = "!exists" if match.group(1) else "exists"
            requirements.append(Requirement(match.group(2), op))
        else:
            raise ValueError(f"unparseable selector term {term!r}")
    return tuple(requirements)


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def _selected(requirements: tuple[Requirement, ...], labels: Mapping[str, str]) -> bool:
    return all(r.matches(labels) for r in requirements)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# -- the store ------------------------------------------------------------------------------

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
Listener = Callable[[str, Kind, JsonObject], None]


@dataclass(slots=True, eq=False)  # identity: a set of open watches
class _Watch:
    kind: Kind
    namespace: str | None
    selector: tuple[Requirement, ...]
    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)


class Store:
    """Objects, revisions, history and open watches. Every operation is synchronous, so an
    operation and the events it emits are atomic with respect to watch registration."""

    def __init__(
        self,
        *,
        seed: int = 0,
        history_limit: int | None = None,
        clock_offset_s: float = 0.0,
        validators: Mapping[Kind, Any] | None = None,
        namespace_finalize_s: float = 0.0,
    ) -> None:
        self.revision = 1000
        self.compacted = 0  # a watch from a resourceVersion below this gets 410 Gone
        self.history_limit = history_limit
        self.clock_offset_s = clock_offset_s
        self.namespace_finalize_s = namespace_finalize_s
        self._validators = dict(validators or {})
        self._objects: dict[Kind, dict[tuple[str, str], JsonObject]] = {k: {} for k in KINDS}
        self._history: collections.deque[tuple[int, Kind, str, Mapping[str, str], bytes]] = (
            collections.deque()
        )
        self._watches: set[_Watch] = set()
        self._rng = random.Random(seed)
        self.listeners: list[Listener] = []
        self.counts: collections.Counter[str] = collections.Counter()

    # time and identity
    def now(self) -> str:
        moment = datetime.now(UTC) + timedelta(seconds=self.clock_offset_s)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    def _uid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _next_version(self) -> str:
        self.revision += 1
        return str(self.revision)

    # events
    def _emit(self, event_type: str, kind: Kind, obj: JsonObject) -> None:
        meta = obj["metadata"]
        line = json.dumps({"type": event_type, "object": obj}).encode() + b"\n"
        namespace = meta.get("namespace") or ""
        labels = dict(meta.get("labels") or {})
        self._history.append((int(meta["resourceVersion"]), kind, namespace, labels, line))
        if self.history_limit is not None:
            while len(self._history) > self.history_limit:
                self.compacted = self._history.popleft()[0]
        for watch in self._watches:
            if (
                watch.kind is kind
                and watch.namespace in (None, namespace)
                and _selected(watch.selector, labels)
            ):
                watch.queue.put_nowait(line)
        self.counts[f"event.{event_type}"] += 1
        for listener in self.listeners:
            listener(event_type, kind, obj)

    def compact(self) -> None:
        """Forget the whole history: a watch from any older resourceVersion now gets 410."""
        self._history.clear()
        self.compacted = self.revision

    def open_watch(
        self,
        kind: Kind,
        namespace: str | None,
        selector: tuple[Requirement, ...],
        resource_version: str,
    ) -> tuple[_Watch, list[bytes]]:
        """Register a watch and return the lines it starts with (synthetic ADDED events for a
        watch without a resourceVersion, else the history after it); ApiStatus(410) if that
        history is compacted."""
        if resource_version in ("", "0"):
            initial = [
                json.dumps({"type": "ADDED", "object": obj}).encode() + b"\n"
                for obj in self._select(kind, namespace, selector)
            ]
        else:
            try:
                since = int(resource_version)
            except ValueError as exc:
                raise ApiStatus(
                    400, "BadRequest", f"invalid resourceVersion {resource_version!r}"
                ) from exc
            if since < self.compacted:
                raise ApiStatus(
                    410, "Expired", f"too old resource version: {since} ({self.compacted})"
                )
            initial = [
                line
                for rev, k, ns, labels, line in self._history
                if rev > since
                and k is kind
                and namespace in (None, ns)
                and _selected(selector, labels)
            ]
        watch = _Watch(kind, namespace, selector)
        self._watches.add(watch)
        self.counts["watches.opened"] += 1
        return watch, initial

    def close_watch(self, watch: _Watch) -> None:
        self._watches.discard(watch)

    def drop_watches(self, error_410: bool = False) -> int:
        """End every open watch stream (after an ERROR 410 event if asked); how many."""
        dropped = 0
        for watch in list(self._watches):
            if error_410:
                status = ApiStatus(410, "Expired", "watch expired by the test double").body()
                line = json.dumps({"type": "ERROR", "object": status}).encode() + b"\n"
                watch.queue.put_nowait(line)
            watch.queue.put_nowait(None)
            self._watches.discard(watch)
            dropped += 1
        return dropped

    def bookmark(self, kind: Kind) -> bytes:
        obj = {
            "kind": kind.kind,
            "apiVersion": kind.api_version,
            "metadata": {"resourceVersion": str(self.revision)},
        }
        return json.dumps({"type": "BOOKMARK", "object": obj}).encode() + b"\n"

    # reads
    def _select(
        self, kind: Kind, namespace: str | None, selector: tuple[Requirement, ...]
    ) -> list[JsonObject]:
        return [
            obj
            for (ns, _), obj in self._objects[kind].items()
            if namespace in (None, ns) and _selected(selector, _labels(obj))
        ]

    def list(
        self, kind: Kind, namespace: str | None, selector: tuple[Requirement, ...]
    ) -> JsonObject:
        self.counts["list"] += 1
        return {
            "apiVersion": kind.api_version,
            "kind": f"{kind.kind}List",
            "metadata": {"resourceVersion": str(self.revision)},
            "items": self._select(kind, namespace, selector),
        }

    def get(self, kind: Kind, namespace: str, name: str) -> JsonObject:
        try:
            return self._objects[kind][(namespace, name)]
        except KeyError:
            raise ApiStatus(404, "NotFound", f'{kind.plural} "{name}" not found') from None

    def count(self, kind: Kind, selector: str = "") -> int:
        return len(self._select(kind, None, parse_selector(selector)))

    # writes
    def _check(self, kind: Kind, obj: JsonObject) -> None:
        validator = self._validators.get(kind)
        if validator is None:
            return
        errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
        if errors:
            where = "/".join(str(p) for p in errors[0].absolute_path) or "(root)"
            raise ApiStatus(422, "Invalid", f"{kind.kind} is invalid: {where}: {errors[0].message}")

    def _namespace_usable(self, namespace: str) -> None:
        ns = self._objects[NAMESPACE].get(("", namespace))
        if ns is None:
            raise ApiStatus(404, "NotFound", f'namespaces "{namespace}" not found')
        if ns["metadata"].get("deletionTimestamp"):
            raise ApiStatus(
                403,
                "Forbidden",
                f"unable to create new content in namespace {namespace} because it is being"
                " terminated",
            )

    def create(self, kind: Kind, namespace: str, body: JsonObject) -> JsonObject:
        self.counts["create"] += 1
        if not isinstance(body, dict):
            raise ApiStatus(400, "BadRequest", "the body must be a JSON object")
        obj = copy.deepcopy(body)
        if obj.get("kind", kind.kind) != kind.kind or obj.get("apiVersion", kind.api_version) != (
            kind.api_version
        ):
            raise ApiStatus(400, "BadRequest", f"the body is not a {kind.api_version} {kind.kind}")
        obj["kind"], obj["apiVersion"] = kind.kind, kind.api_version
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if not isinstance(name, str) or len(name) > 253 or not _NAME.fullmatch(name):
            raise ApiStatus(422, "Invalid", f"metadata.name {name!r} is not a DNS-1123 subdomain")
        if kind.namespaced:
            if meta.get("namespace", namespace) != namespace:
                raise ApiStatus(
                    400, "BadRequest", "the namespace of the object does not match the request"
                )
            meta["namespace"] = namespace
            self._namespace_usable(namespace)
        else:
            meta.pop("namespace", None)
            namespace = ""
        if (namespace, name) in self._objects[kind]:
            raise ApiStatus(409, "AlreadyExists", f'{kind.plural} "{name}" already exists')
        if kind.status_subresource:
            obj.pop("status", None)
        if kind is NAMESPACE:
            obj["status"] = {"phase": "Active"}
        self._check(kind, obj)
        for key in ("deletionTimestamp", "resourceVersion", "uid", "creationTimestamp"):
            meta.pop(key, None)
        meta.update(
            uid=self._uid(),
            resourceVersion=self._next_version(),
            creationTimestamp=self.now(),
            generation=1,
        )
        self._objects[kind][(namespace, name)] = obj
        self._emit("ADDED", kind, obj)
        return obj

    def _write(
        self, kind: Kind, namespace: str, name: str, new: JsonObject, subresource: str | None
    ) -> JsonObject:
        old = self.get(kind, namespace, name)
        if subresource not in (None, "status") or (subresource and not kind.status_subresource):
            raise ApiStatus(404, "NotFound", f"no subresource {subresource!r} on {kind.plural}")
        result = copy.deepcopy(old)
        if subresource == "status":
            result["status"] = copy.deepcopy(new.get("status"))
        else:
            keep_status = kind.status_subresource
            result = {
                k: copy.deepcopy(v) for k, v in new.items() if not (keep_status and k == "status")
            }
            if keep_status and "status" in old:
                result["status"] = copy.deepcopy(old["status"])
            meta = result.setdefault("metadata", {})
            for key in ("uid", "creationTimestamp", "namespace", "name", "generation"):
                if key in old["metadata"]:
                    meta[key] = old["metadata"][key]
            if result.get("spec") != old.get("spec"):
                meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
        result["kind"], result["apiVersion"] = kind.kind, kind.api_version
        self._check(kind, result)
        result["metadata"]["resourceVersion"] = self._next_version()
        self._objects[kind][(namespace, name)] = result
        self._emit("MODIFIED", kind, result)
        return result

    def replace(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        body: JsonObject,
        subresource: str | None = None,
    ) -> JsonObject:
        self.counts["replace"] += 1
        old = self.get(kind, namespace, name)
        given = (body.get("metadata") or {}).get("resourceVersion")
        if given and given != old["metadata"]["resourceVersion"]:
            raise ApiStatus(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {kind.plural} "{name}": the object has been'
                " modified; please apply your changes to the latest version and try again",
            )
        return self._write(kind, namespace, name, body, subresource)

    def patch(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        patch: JsonObject,
        subresource: str | None = None,
    ) -> JsonObject:
        self.counts["patch"] += 1
        old = self.get(kind, namespace, name)
        return self._write(kind, namespace, name, merge_patch(old, patch), subresource)

    def set_status(self, kind: Kind, namespace: str, name: str, status: JsonObject) -> JsonObject:
        """What a controller does with PUT .../status (used in-process by the fake controller)."""
        return self._write(kind, namespace, name, {"status": status}, "status")

    def delete(self, kind: Kind, namespace: str, name: str) -> JsonObject:
        self.counts["delete"] += 1
        obj = self.get(kind, namespace, name)
        if kind is NAMESPACE:
            return self._delete_namespace(name)
        del self._objects[kind][(namespace, name)]
        gone = copy.deepcopy(obj)
        gone["metadata"]["resourceVersion"] = self._next_version()
        self._emit("DELETED", kind, gone)
        return gone

    def _delete_namespace(self, name: str) -> JsonObject:
        current = self._objects[NAMESPACE][("", name)]
        if current["metadata"].get("deletionTimestamp"):
            return current
        terminating = copy.deepcopy(current)
        terminating["metadata"]["deletionTimestamp"] = self.now()
        terminating["status"] = {"phase": "Terminating"}
        terminating["metadata"]["resourceVersion"] = self._next_version()
        self._objects[NAMESPACE][("", name)] = terminating
        self._emit("MODIFIED", NAMESPACE, terminating)
        if self.namespace_finalize_s > 0:
            asyncio.get_running_loop().call_later(
                self.namespace_finalize_s, self._finalize_namespace, name
            )
        else:
            self._finalize_namespace(name)
        return terminating

    def _finalize_namespace(self, name: str) -> None:
        for kind in KINDS:
            if kind.namespaced:
                for ns, obj_name in [k for k in self._objects[kind] if k[0] == name]:
                    self.delete(kind, ns, obj_name)
        obj = self._objects[NAMESPACE].pop(("", name), None)
        if obj is not None:
            gone = copy.deepcopy(obj)
            gone["metadata"]["resourceVersion"] = self._next_version()
            self._emit("DELETED", NAMESPACE, gone)


# -- the HTTP front end --------------------------------------------------------------------


def _route(path: str) -> tuple[Kind, str | None, str | None, str | None]:
    """(kind, namespace, name, subresource) of an API path; ApiStatus(404) if unknown."""
    parts = [p for p in path.split("/") if p]
    not_found = ApiStatus(404, "NotFound", "the server could not find the requested resource")
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise not_found
    by_plural = {k.plural: k for k in KINDS if k.group == group and k.version == version}
    namespace: str | None = None
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] in by_plural:
        kind = by_plural[rest[2]]
        if not kind.namespaced:
            raise not_found
        namespace, rest = rest[1], rest[2:]
    if not rest or rest[0] not in by_plural or len(rest) > 3:
        raise not_found
    kind = by_plural[rest[0]]
    name = rest[1] if len(rest) > 1 else None
    subresource = rest[2] if len(rest) > 2 else None
    if kind.namespaced and name is not None and namespace is None:
        raise not_found
    return kind, namespace, name, subresource


def _true(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


class FakeKubeApiServer:
    """The double: ``async with FakeKubeApiServer() as server`` listens on 127.0.0.1 (port
    chosen by the OS) and stops, ending open watches, on exit."""

    def __init__(
        self,
        *,
        seed: int = 0,
        history_limit: int | None = None,
        clock_offset_s: float = 0.0,
        gone_as_http: bool = False,
        bookmark_interval_s: float | None = None,
        token: str | None = DEFAULT_TOKEN,
        validate: bool = True,
        namespace_finalize_s: float = 0.0,
    ) -> None:
        self.store = Store(
            seed=seed,
            history_limit=history_limit,
            clock_offset_s=clock_offset_s,
            validators=kserve_validators() if validate else None,
            namespace_finalize_s=namespace_finalize_s,
        )
        self.gone_as_http = gone_as_http
        self.bookmark_interval_s = bookmark_interval_s
        self.token = token
        self.watch_gate = asyncio.Event()
        self.watch_gate.set()
        self.controller: FakeKServeController | None = None
        self.ingress: FakeIngress | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> FakeKubeApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, port: int = 0) -> None:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
        self.watch_gate.set()
        self.store.drop_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def write_kubeconfig(self, path: Path, context: str = "fake") -> Path:
        """A kubeconfig pointing at this server (with its token), as a test or a Job would use."""
        user: JsonObject = {"token": self.token} if self.token else {}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": user}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": "fake"}}],
            "current-context": context,
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # handlers
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.store.counts[f"http.{request.method}"] += 1
        try:
            if request.path.startswith("/_servingperf/"):
                return await self._control(request)
            if request.path == "/metrics" and self.controller is not None:
                # the controller manager's metrics endpoint (its own port in a cluster; here the
                # double's), unauthenticated as Prometheus scrapes it in the tests
                return web.Response(
                    text=self.controller.metrics_text(),
                    content_type="text/plain",
                    charset="utf-8",
                )
            if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
                raise ApiStatus(401, "Unauthorized", "Unauthorized")
            kind, namespace, name, subresource = _route(request.path)
            query = request.query
            if "fieldSelector" in query:
                raise ApiStatus(400, "BadRequest", "the test double does not do fieldSelector")
            try:
                selector = parse_selector(query.get("labelSelector", ""))
            except ValueError as exc:
                raise ApiStatus(400, "BadRequest", str(exc)) from exc
            store = self.store
            method = request.method
            if method == "GET" and name is None:
                if _true(query.get("watch")):
                    return await self._watch(request, kind, namespace, selector)
                return web.json_response(store.list(kind, namespace, selector))
            if method == "POST" and name is None:
                if kind.namespaced and namespace is None:
                    raise ApiStatus(405, "MethodNotAllowed", "create needs a namespace in the path")
                body = await self._body(request)
                return web.json_response(store.create(kind, namespace or "", body), status=201)
            if name is None:
                raise ApiStatus(405, "MethodNotAllowed", f"{method} on a collection")
            ns = namespace or ""
            if method == "GET" and subresource in (None, "status"):
                return web.json_response(store.get(kind, ns, name))
            if method == "PUT":
                body = await self._body(request)
                return web.json_response(store.replace(kind, ns, name, body, subresource))
            if method == "PATCH":
                if request.content_type != "application/merge-patch+json":
                    raise ApiStatus(
                        415,
                        "UnsupportedMediaType",
                        f"the double only does merge patch, not {request.content_type}",
                    )
                body = await self._body(request)
                return web.json_response(store.patch(kind, ns, name, body, subresource))
            if method == "DELETE" and subresource is None:
                return web.json_response(store.delete(kind, ns, name))
            raise ApiStatus(405, "MethodNotAllowed", f"{method} {request.path}")
        except ApiStatus as status:
            return web.json_response(status.body(), status=status.code)

    @staticmethod
    async def _body(request: web.Request) -> JsonObject:
        try:
            body = json.loads(await request.read())
        except ValueError as exc:
            raise ApiStatus(400, "BadRequest", f"the body is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise ApiStatus(400, "BadRequest", "the body must be a JSON object")
        return body

    async def _watch(
        self,
        request: web.Request,
        kind: Kind,
        namespace: str | None,
        selector: tuple[Requirement, ...],
    ) -> web.StreamResponse:
        await self.watch_gate.wait()
        query = request.query
        try:
            timeout_s = float(query["timeoutSeconds"]) if "timeoutSeconds" in query else None
        except ValueError as exc:
            raise ApiStatus(400, "BadRequest", "bad timeoutSeconds") from exc
        bookmarks = _true(query.get("allowWatchBookmarks")) and self.bookmark_interval_s
        loop = asyncio.get_running_loop()
        try:
            watch, initial = self.store.open_watch(
                kind, namespace, selector, query.get("resourceVersion", "")
            )
        except ApiStatus as status:
            if status.code != 410:
                raise
            self.store.counts["gone"] += 1
            if self.gone_as_http:
                raise
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            line = json.dumps({"type": "ERROR", "object": status.body()}).encode() + b"\n"
            await response.write(line)
            await response.write_eof()
            return response
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        try:
            await response.prepare(request)
            for line in initial:
                await response.write(line)
            deadline = loop.time() + timeout_s if timeout_s is not None else None
            while True:
                wait_s = None if deadline is None else deadline - loop.time()
                if wait_s is not None and wait_s <= 0:
                    break
                if bookmarks:
                    assert self.bookmark_interval_s is not None
                    wait_s = min(wait_s or self.bookmark_interval_s, self.bookmark_interval_s)
                try:
                    event = await asyncio.wait_for(watch.queue.get(), wait_s)
                except TimeoutError:
                    if bookmarks and watch.queue.empty():
                        await response.write(self.store.bookmark(kind))
                    continue
                if event is None:
                    break
                await response.write(event)
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client went away
        finally:
            self.store.close_watch(watch)
        return response

    async def _control(self, request: web.Request) -> web.StreamResponse:
        """Test-only endpoints for a double running in another process (the benchmark)."""
        if request.path == "/_servingperf/release" and self.controller is not None:
            return web.json_response({"released": self.controller.release()})
        if request.path == "/_servingperf/stats":
            counts = dict(self.store.counts)
            if self.controller is not None:
                counts.update({f"controller.{k}": v for k, v in self.controller.counts.items()})
            if self.ingress is not None:
                counts.update(self.ingress.stats())
            for kind in KINDS:  # what a servingperf run left behind
                counts[f"left.{kind.kind}"] = self.store.count(kind, MANAGED_SELECTOR)
            return web.json_response(counts)
        raise ApiStatus(404, "NotFound", request.path)


# -- the fake KServe controller --------------------------------------------------------------


def _condition(
    kind: str, status: str, when: str, reason: str = "", message: str = ""
) -> JsonObject:
    condition: JsonObject = {"type": kind, "status": status, "lastTransitionTime": when}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


# controller-runtime's buckets: work-queue latency (client-go: 1e-8 .. 1e1 s) and reconcile time
WORKQUEUE_BUCKETS = tuple(10.0**e for e in range(-8, 2))
RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45,
                     0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0,
                     4.5, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0,
                     60.0)  # fmt: skip


class _Histogram:
    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        index = next((i for i, b in enumerate(self.bounds) if value <= b), len(self.bounds))
        self.counts[index] += 1
        self.sum += value

    def lines(self, name: str, labels: str) -> list[str]:
        out = [f"# TYPE {name} histogram"]
        cumulative = 0
        for bound, count in zip((*self.bounds, None), self.counts, strict=True):
            cumulative += count
            le = "+Inf" if bound is None else repr(float(bound))
            out.append(f'{name}_bucket{{{labels},le="{le}"}} {cumulative}')
        out.append(f"{name}_sum{{{labels}}} {self.sum}")
        out.append(f"{name}_count{{{labels}}} {cumulative}")
        return out


class FakeKServeController:
    """Moves each new InferenceService to Loading, then to Ready after a random delay (seeded per
    namespace/name, so the same run gets the same delays in any creation order), or, for the names
    in ``fail``, to a failure: ``"FailedToLoad"`` (model status, as KServe reports a failed storage
    initializer or model load) or ``"CrashLoop"`` (only a ``PredictorReady=False`` condition whose
    message names CrashLoopBackOff, as older KServe reports a crash-looping predictor).
    ``url_for(name, namespace)`` gives status.url. With ``hold`` nothing moves until
    :meth:`release`.

    Work queue. With ``workers``, a new InferenceService is a key added to a work queue that
    ``workers`` reconcilers drain (controller-runtime's MaxConcurrentReconciles), each reconcile
    taking ``reconcile_s``; its status moves only once reconciled (the delays count from then), so
    InferenceServices created faster than the controller reconciles wait, and their load times
    grow. Without ``workers`` every key is reconciled at once (0 s). Either way the controller
    exposes controller-runtime's metrics, under their names (:meth:`metrics_text`, served at
    ``GET /metrics`` of the API double): ``workqueue_depth``, ``workqueue_adds_total``,
    ``workqueue_queue_duration_seconds``, ``controller_runtime_reconcile_total`` (result
    ``success``), ``controller_runtime_reconcile_errors_total`` and
    ``controller_runtime_reconcile_time_seconds``, labelled ``name`` / ``controller``
    ``inferenceservice``."""

    def __init__(
        self,
        server: FakeKubeApiServer,
        *,
        seed: int = 0,
        delay_s: tuple[float, float] = (0.05, 0.5),
        fail: Mapping[str, str] | None = None,
        url_for: Callable[[str, str], str] | None = None,
        hold: bool = False,
        workers: int | None = None,
        reconcile_s: float = 0.0,
    ) -> None:
        self._store = server.store
        self._seed = seed
        self._delay_s = delay_s
        self._fail = dict(fail or {})
        self._url_for = url_for or (lambda name, ns: f"http://{name}-{ns}.example.com")
        self._hold = hold
        self._held: list[tuple[str, str, str]] = []
        self._handles: set[asyncio.TimerHandle] = set()
        self.counts: collections.Counter[str] = collections.Counter()
        self._workers = workers
        self._reconcile_s = reconcile_s
        self._queue: collections.deque[tuple[str, str, str, float]] = collections.deque()
        self._queued = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.adds = 0
        self.reconciles = 0
        self.queue_duration = _Histogram(WORKQUEUE_BUCKETS)
        self.reconcile_time = _Histogram(RECONCILE_BUCKETS)
        server.controller = self
        self._store.listeners.append(self._on_event)

    def delay_of(self, namespace: str, name: str) -> float:
        low, high = self._delay_s
        return random.Random(f"{self._seed}/{namespace}/{name}").uniform(low, high)

    def release(self) -> int:
        held, self._held, self._hold = self._held, [], False
        for key in held:
            self._enqueue(*key)
        return len(held)

    def stop(self) -> None:
        for handle in self._handles:
            handle.cancel()
        self._handles.clear()
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()

    def _on_event(self, event_type: str, kind: Kind, obj: JsonObject) -> None:
        if kind is not INFERENCE_SERVICE or event_type != "ADDED":
            return
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"], meta["uid"])
        if self._hold:
            self._held.append(key)
        else:
            self._enqueue(*key)

    def _enqueue(self, namespace: str, name: str, uid: str) -> None:
        self.adds += 1
        loop = asyncio.get_running_loop()
        if self._workers is None:
            self.queue_duration.observe(0.0)
            self._reconciled(0.0)
            self._schedule(namespace, name, uid)
            return
        self._queue.append((namespace, name, uid, loop.time()))
        self._queued.set()
        while len(self._tasks) < self._workers:
            self._tasks.append(loop.create_task(self._reconciler()))

    async def _reconciler(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                self._queued.clear()
                await self._queued.wait()
            namespace, name, uid, added = self._queue.popleft()
            began = loop.time()
            self.queue_duration.observe(began - added)
            await asyncio.sleep(self._reconcile_s)
            self._reconciled(loop.time() - began)
            self._schedule(namespace, name, uid)

    def _reconciled(self, seconds: float) -> None:
        self.reconciles += 1
        self.reconcile_time.observe(seconds)

    def metrics_text(self) -> str:
        """controller-runtime's metrics of this controller (Prometheus text format)."""
        q = 'name="inferenceservice"'
        c = 'controller="inferenceservice"'
        lines = [
            "# TYPE workqueue_depth gauge",
            f"workqueue_depth{{{q}}} {len(self._queue)}",
            "# TYPE workqueue_adds_total counter",
            f"workqueue_adds_total{{{q}}} {self.adds}",
            "# TYPE controller_runtime_reconcile_total counter",
            f'controller_runtime_reconcile_total{{{c},result="success"}} {self.reconciles}',
            f'controller_runtime_reconcile_total{{{c},result="error"}} 0',
            "# TYPE controller_runtime_reconcile_errors_total counter",
            f"controller_runtime_reconcile_errors_total{{{c}}} 0",
            *self.queue_duration.lines("workqueue_queue_duration_seconds", q),
            *self.reconcile_time.lines("controller_runtime_reconcile_time_seconds", c),
        ]
        return "\n".join(lines) + "\n"

    def _schedule(self, namespace: str, name: str, uid: str) -> None:
        loop = asyncio.get_running_loop()
        delay = self.delay_of(namespace, name)
        for when, step in ((delay * 0.3, self._loading), (delay, self._finish)):
            handle = loop.call_later(when, self._run, step, namespace, name, uid)
            self._handles.add(handle)

    def _run(
        self, step: Callable[[JsonObject, str], JsonObject], namespace: str, name: str, uid: str
    ) -> None:
        try:
            obj = self._store.get(INFERENCE_SERVICE, namespace, name)
        except ApiStatus:
            return  # deleted meanwhile
        if obj["metadata"]["uid"] != uid:
            return  # deleted and created again: not this object's timer any more
        self._store.set_status(INFERENCE_SERVICE, namespace, name, step(obj, self._store.now()))

    def _mode(self, obj: JsonObject) -> str:
        annotations = obj["metadata"].get("annotations") or {}
        return str(annotations.get("serving.kserve.io/deploymentMode", "Serverless"))

    def _loading(self, obj: JsonObject, now: str) -> JsonObject:
        self.counts["loading"] += 1
        return {
            "conditions": [
                _condition("PredictorReady", "Unknown", now, "Loading", "the model is loading"),
                _condition("Ready", "Unknown", now, "Loading", "the model is loading"),
            ],
            "modelStatus": {
                "transitionStatus": "InProgress",
                "states": {"activeModelState": "Loading", "targetModelState": "Loaded"},
                "copies": {"failedCopies": 0, "totalCopies": 1},
            },
            "deploymentMode": self._mode(obj),
            "observedGeneration": obj["metadata"]["generation"],
        }

    def _finish(self, obj: JsonObject, now: str) -> JsonObject:
        name, namespace = obj["metadata"]["name"], obj["metadata"]["namespace"]
        failure = self._fail.get(name)
        status = self._loading(obj, now)
        self.counts["loading"] -= 1
        if failure == "FailedToLoad":
            self.counts["failed"] += 1
            message = f"storage-initializer: cannot fetch {name}: 404 Not Found"
            status["conditions"] = [
                _condition("PredictorReady", "False", now, "RevisionFailed", message),
                _condition("Ready", "False", now, "RevisionFailed", message),
            ]
            status["modelStatus"] = {
                "transitionStatus": "BlockedByFailedLoad",
                "states": {"activeModelState": "FailedToLoad", "targetModelState": "FailedToLoad"},
                "lastFailureInfo": {"reason": "ModelLoadFailed", "message": message, "exitCode": 1},
                "copies": {"failedCopies": 1, "totalCopies": 1},
            }
            return status
        if failure == "CrashLoop":
            self.counts["failed"] += 1
            message = "back-off 40s restarting failed container=kserve-container (CrashLoopBackOff)"
            status["conditions"] = [
                _condition("PredictorReady", "False", now, "ContainerNotReady", message),
                _condition("Ready", "False", now, "ContainerNotReady", message),
            ]
            status.pop("modelStatus")
            return status
        self.counts["ready"] += 1
        url = self._url_for(name, namespace)
        address = f"http://{name}-predictor.{namespace}.svc.cluster.local"
        status["conditions"] = [
            _condition("IngressReady", "True", now),
            _condition("PredictorReady", "True", now),
            _condition("Ready", "True", now),
        ]
        status["url"] = url
        status["address"] = {"url": address}
        status["components"] = {
            "predictor": {
                "latestCreatedRevision": f"{name}-predictor-00001",
                "latestReadyRevision": f"{name}-predictor-00001",
                "url": url,
            }
        }
        status["modelStatus"] = {
            "transitionStatus": "UpToDate",
            "states": {"activeModelState": "Loaded", "targetModelState": "Loaded"},
            "copies": {"failedCopies": 0, "totalCopies": 1},
        }
        return status


# -- the ingress gateway and the model servers behind it ---------------------------------------


def served_model_ids(obj: Mapping[str, Any]) -> tuple[str, ...]:
    """The model ids a vLLM runtime serves for an InferenceService: its template passes
    ``--served-model-name={{.Name}}`` (OpenShift AI's; KServe's Hugging Face runtime passes
    ``--model_name={{.Name}}``) before the InferenceService's own ``args``, and the last
    ``--served-model-name`` wins (``=NAME`` or ``NAME [NAME ...]``); so: the names of the last
    such flag in ``spec.predictor.model.args``, else the InferenceService's name."""
    model = ((obj.get("spec") or {}).get("predictor") or {}).get("model") or {}
    args = [str(a) for a in model.get("args") or []]
    ids: tuple[str, ...] = (str(obj["metadata"]["name"]),)
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg.startswith("--served-model-name="):
            ids = (arg.partition("=")[2],)
        elif arg == "--served-model-name":
            names = []
            while index < len(args) and not args[index].startswith("-"):
                names.append(args[index])
                index += 1
            ids = tuple(names) or ids
    return ids


class FakeIngress:
    """The cluster's ingress gateway with the model servers behind it, as far as a harness sees
    them: emulator OpenAI front ends (:mod:`servingperf.emulator`, ready at once) on 127.0.0.1,
    all on one shared engine, behind a router on the ``Host`` header, as Istio routes a
    Serverless InferenceService's external URL. :meth:`url_for` is the controller's status.url,
    ``http://<name>.<namespace>.<domain>`` (Knative's default domain template). A request whose
    Host is such a name reaches a front end only while that InferenceService exists and is Ready,
    otherwise it gets the 404 Istio gives for a host it has no route to. ``requests`` counts the
    requests routed per (namespace, name), ``rejected`` the others per Host. Reach it with the
    platform's ``endpoint.ingress_url`` set to :attr:`url`: the harness connects there and sends
    the status URL's host as the Host header.

    Runtime conventions modelled: each InferenceService serves the model ids its vLLM runtime
    would give it (:func:`served_model_ids`: its own name unless its ``args`` pin another), and
    only those (``/v1/models`` lists them; another id gets the emulator's 404 "does not exist");
    with ``path`` (e.g. ``/openai``, as KServe's Hugging Face runtime) the OpenAI API is served
    below that path only, which the status URL does not say.

    ``GET /metrics`` through a Ready InferenceService's Host answers the shared engine's vLLM
    metrics (:mod:`servingperf.emulator.vllm_metrics`) of that InferenceService's served ids only,
    as its own vLLM would; those scrapes are counted in ``scrapes``, not in ``requests``.

    Costs: one dict lookup per request for the route; one front end (an aiohttp router, about
    6 KB) per distinct served id set, made at its first request, all on the one engine: 2,000
    InferenceServices under their own names cost about 12 MB."""

    def __init__(
        self,
        server: FakeKubeApiServer,
        *,
        path: str = "",
        domain: str = "example.com",
        profile: str = "instant",
        seed: int = 0,
    ) -> None:
        if path and (not path.startswith("/") or path.endswith("/")):
            raise ValueError(f"path {path!r}: give it as /a/b (or empty)")
        self._store = server.store
        self._path = path
        self._profile = profile
        self._seed = seed
        self.domain = domain
        self.requests: collections.Counter[tuple[str, str]] = collections.Counter()
        self.scrapes: collections.Counter[tuple[str, str]] = collections.Counter()
        self.rejected: collections.Counter[str] = collections.Counter()
        self.url = ""
        self.ground_truth: list[Any] = []  # the emulator's GroundTruthRecords, once started
        self._runner: web.AppRunner | None = None
        self._engine: Any = None
        self._log: Any = None
        self._front_ends: dict[tuple[str, ...], web.Application] = {}
        self._metrics: Any = None
        server.ingress = self

    def url_for(self, name: str, namespace: str) -> str:
        return f"http://{name}.{namespace}.{self.domain}"

    def route_of(self, host: str) -> tuple[str, str] | None:
        """(namespace, name) of the Ready InferenceService that ``host`` names, else None."""
        found = self._ready_object(host)
        if found is None:
            return None
        meta = found["metadata"]
        return (str(meta["namespace"]), str(meta["name"]))

    def _ready_object(self, host: str) -> JsonObject | None:
        stem = host.rsplit(":", 1)[0].removesuffix(f".{self.domain}")
        name, _, namespace = stem.partition(".")
        if stem == host.rsplit(":", 1)[0] or not name or not namespace or "." in namespace:
            return None
        try:
            obj = self._store.get(INFERENCE_SERVICE, namespace, name)
        except ApiStatus:
            return None
        conditions = (obj.get("status") or {}).get("conditions") or []
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        return obj if ready else None

    def stats(self) -> dict[str, int]:
        return {
            "ingress.requests": sum(self.requests.values()),
            "ingress.routes": len(self.requests),
            "ingress.rejected": sum(self.rejected.values()),
            "ingress.front_ends": len(self._front_ends),
        }

    async def start(self, port: int = 0) -> None:
        from servingperf.emulator.engine import Engine
        from servingperf.emulator.groundtruth import GroundTruthLog
        from servingperf.emulator.http import MAX_BODY_BYTES
        from servingperf.emulator.profiles import resolve_profile
        from servingperf.emulator.vllm_metrics import EngineMetrics

        self._engine = Engine(resolve_profile(self._profile, {}))
        self._metrics = EngineMetrics(self._engine, []).attach()
        self._log = GroundTruthLog()
        self.ground_truth = self._log.records
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        # handler_cancellation: a client that goes away frees its sequence (see the emulator).
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=2.0
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port, backlog=4096).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        try:
            if self._engine is not None:
                await self._engine.aclose()
        finally:
            if self._runner is not None:
                await self._runner.cleanup()
                self._runner = None

    async def __aenter__(self) -> FakeIngress:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _front_end(self, model_ids: tuple[str, ...]) -> web.Application:
        """The (never started) app of a front end serving ``model_ids`` on the shared engine:
        only its router is used, to find the handler of a request."""
        app = self._front_ends.get(model_ids)
        if app is None:
            from servingperf.emulator.http import OpenAIFrontEnd

            front_end = OpenAIFrontEnd(
                dict.fromkeys(model_ids, self._engine),
                ground_truth=self._log,
                load_time_s=0.0,
                seed=self._seed,
            )
            front_end.mark_listening()
            app = self._front_ends[model_ids] = front_end.build_app()
            self._metrics.add_models(model_ids)
        return app

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        host = request.host or ""
        obj = self._ready_object(host)
        if obj is None:
            self.rejected[host] += 1
            return web.Response(status=404, text=f"no route to host {host!r}")
        meta = obj["metadata"]
        key = (str(meta["namespace"]), str(meta["name"]))
        path = request.rel_url.path
        if path == "/metrics" and request.method == "GET":
            self.scrapes[key] += 1
            served = served_model_ids(obj)
            self._front_end(served)
            from servingperf.emulator.vllm_metrics import CONTENT_TYPE

            response = web.Response(body=self._metrics.render(served))
            response.headers["Content-Type"] = CONTENT_TYPE
            return response
        self.requests[key] += 1
        if self._path:  # the runtime serves its API below this path only
            if not path.startswith(f"{self._path}/"):
                return web.Response(status=404, text=f"{path}: not found")
            path = path.removeprefix(self._path)
        inner = request.clone(rel_url=request.rel_url.with_path(path))
        match = await self._front_end(served_model_ids(obj)).router.resolve(inner)
        if match.http_exception is not None:
            return web.Response(status=match.http_exception.status, text=f"{path}: not served")
        return await match.handler(inner)


# -- run it alone (the benchmark starts it as a separate process) --------------------------


def _announce(server: FakeKubeApiServer, args: argparse.Namespace) -> None:
    if server.ingress is not None and args.ingress_url_file:
        Path(args.ingress_url_file).write_text(server.ingress.url)
    if args.kubeconfig:
        server.write_kubeconfig(Path(args.kubeconfig))
    if args.port_file:
        Path(args.port_file).write_text(server.url)


async def _serve(args: argparse.Namespace) -> None:
    server = FakeKubeApiServer(seed=args.seed, validate=not args.no_validate)
    ingress = None
    if args.ingress_url_file:
        ingress = FakeIngress(server, path=args.ingress_path, seed=args.seed)
    fail = dict(item.split("=", 1) for item in args.fail or [])
    FakeKServeController(
        server,
        seed=args.seed,
        delay_s=(args.min_delay, args.max_delay),
        hold=args.hold,
        fail=fail,
        url_for=ingress.url_for if ingress is not None else None,
    )
    await server.start(args.port)
    if ingress is not None:
        await ingress.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    _announce(server, args)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), args.max_lifetime)
    try:
        await server.stop()
    finally:
        if ingress is not None:
            await ingress.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="The Kubernetes API test double, alone.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", help="write the server URL here once listening")
    parser.add_argument("--kubeconfig", help="write a kubeconfig for it here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-delay", type=float, default=0.05)
    parser.add_argument("--max-delay", type=float, default=0.5)
    parser.add_argument(
        "--hold", action="store_true", help="controller waits for /_servingperf/release"
    )
    parser.add_argument("--no-validate", action="store_true")
    parser.add_argument(
        "--ingress-url-file",
        help="also serve the model endpoints (FakeIngress); write its URL here (before --port-file)",
    )
    parser.add_argument(
        "--ingress-path", default="", help="serve the OpenAI API below this path, e.g. /openai"
    )
    parser.add_argument("--fail", action="append", help="NAME=FailedToLoad|CrashLoop")
    parser.add_argument("--max-lifetime", type=float, default=900.0, help="exit after this (s)")
    asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()

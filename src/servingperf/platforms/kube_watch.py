"""List-then-watch: keep a consumer informed of every change to a set of objects, with one
stream for the whole set (one namespace, or all namespaces, filtered by a label selector).

Terms (Kubernetes' own, as client-go's informers use them): a *list* returns the objects and the
list's resourceVersion; a *watch* from that version streams every later change. A watch ends when
its server-side ``timeoutSeconds`` runs out (reconnect from the last resourceVersion seen, which
bookmarks keep fresh) or when the version asked for is no longer kept (*410 Gone*, "expired":
the server compacted its history), after which the only safe move is a new list.

No event is missed or counted twice: the watcher remembers each object's ``(uid,
resourceVersion)`` and passes an object on only when that pair changes, so a re-list after a 410
hands on exactly the objects that changed while the watch was down (and reports the ones that
vanished as deleted), and a replayed event is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from servingperf.platforms.kube_types import (
    JsonObject,
    KubeApi,
    KubeApiError,
    Resource,
    status_error,
)

# Codes that retrying cannot fix: the caller lacks the right, or the resource does not exist.
_FATAL_STATUS = frozenset({400, 401, 403, 404, 422})
_MAX_BACKOFF_S = 10.0
# A stream that ends this soon without an event counts as a failure (so a server closing every
# watch at once cannot make the loop spin).
_MIN_HEALTHY_STREAM_S = 1.0


class ObjectSink(Protocol):
    def on_object(self, obj: JsonObject, observed_s: float) -> None: ...

    def on_deleted(self, namespace: str, name: str, observed_s: float) -> None: ...

    def on_watch_failed(self, reason: str) -> None: ...


@dataclass(slots=True)
class WatchStats:
    """What the watch did; the tests and the benchmark read it."""

    lists: int = 0
    watches: int = 0  # watch requests opened
    events: int = 0  # watch lines received, bookmarks included
    bookmarks: int = 0
    delivered: int = 0  # objects passed on (changed) from lists and events
    duplicates: int = 0  # objects skipped: same uid and resourceVersion as already passed on
    gone: int = 0  # 410 Gone answers (an HTTP 410 or an ERROR event with code 410)
    errors: int = 0  # other failed requests, retried

    def add(self, other: WatchStats) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def _key(obj: JsonObject) -> tuple[str, str, str, str]:
    meta = obj.get("metadata") or {}
    return (
        str(meta.get("namespace") or ""),
        str(meta.get("name") or ""),
        str(meta.get("uid") or ""),
        str(meta.get("resourceVersion") or ""),
    )


class ListWatch:
    """One list-then-watch loop; ``start()`` does the first list (errors raise), ``run()`` then
    watches until cancelled, or until a failure retrying cannot fix (reported to the sink)."""

    def __init__(
        self,
        api: KubeApi,
        resource: Resource,
        namespace: str | None,
        label_selector: str,
        sink: ObjectSink,
        clock: Callable[[], float],
        timeout_s: int,
        max_retries: int = 6,
        backoff_s: float = 0.5,
    ) -> None:
        self._api = api
        self._resource = resource
        self._namespace = namespace
        self._selector = label_selector
        self._sink = sink
        self._clock = clock
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self._backoff_s = backoff_s
        self._seen: dict[tuple[str, str], tuple[str, str]] = {}
        self._version = ""
        self.stats = WatchStats()

    @property
    def resource_version(self) -> str:
        return self._version

    async def start(self) -> None:
        await self._relist()

    async def run(self) -> None:
        relist = False
        failures = 0
        while True:
            try:
                if relist:
                    await self._relist()
                    relist = False
                started = self._clock()
                received = await self._watch_once()
                if received == 0 and self._clock() - started < _MIN_HEALTHY_STREAM_S:
                    raise KubeApiError(0, "EmptyWatch", "the watch ended at once, with no event")
                failures = 0
            except KubeApiError as exc:
                if exc.status == 410:
                    self.stats.gone += 1
                    relist = True
                    continue
                self.stats.errors += 1
                failures += 1
                if exc.status in _FATAL_STATUS or failures > self._max_retries:
                    self._sink.on_watch_failed(f"watching {self._resource.plural} failed: {exc}")
                    return
                await asyncio.sleep(min(self._backoff_s * 2 ** (failures - 1), _MAX_BACKOFF_S))

    async def _relist(self) -> None:
        listed = await self._api.list(self._resource, self._namespace, self._selector)
        self.stats.lists += 1
        now = self._clock()
        present: set[tuple[str, str]] = set()
        for item in listed.items:
            namespace, name, uid, version = _key(item)
            key = (namespace, name)
            present.add(key)
            if self._seen.get(key) == (uid, version):
                self.stats.duplicates += 1
                continue
            self._seen[key] = (uid, version)
            self.stats.delivered += 1
            self._sink.on_object(item, now)
        for key in [k for k in self._seen if k not in present]:
            del self._seen[key]
            self._sink.on_deleted(key[0], key[1], now)
        self._version = listed.resource_version

    async def _watch_once(self) -> int:
        """Follow one watch stream to its end; the number of events it carried."""
        self.stats.watches += 1
        received = 0
        stream = self._api.watch(
            self._resource, self._namespace, self._selector, self._version, self._timeout_s
        )
        async with contextlib.aclosing(stream):
            async for event in stream:
                received += 1
                self.stats.events += 1
                if event.type == "ERROR":
                    raise status_error(event.object, 500)
                namespace, name, uid, version = _key(event.object)
                if event.type == "BOOKMARK":
                    self.stats.bookmarks += 1
                elif event.type == "DELETED":
                    if self._seen.pop((namespace, name), None) is not None:
                        self._sink.on_deleted(namespace, name, self._clock())
                    else:
                        self.stats.duplicates += 1
                elif self._seen.get((namespace, name)) == (uid, version):
                    self.stats.duplicates += 1
                else:
                    self._seen[(namespace, name)] = (uid, version)
                    self.stats.delivered += 1
                    self._sink.on_object(event.object, self._clock())
                if version:
                    self._version = version
        return received

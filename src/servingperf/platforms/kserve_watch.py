"""Readiness of many InferenceServices from one watch: the watch hands every changed object to
the :class:`ReadinessTracker`, which finds the waiting instance by ``(namespace, name)`` in a dict
and settles it. The cost per event is constant, so tracking N instances costs O(N) in all, never
a poll per object.

Terms: a *waiter* is the tracker's slot for one deployed instance; it is *settled* once, when the
instance is first seen ready (or failed): later events about it are ignored, so a re-delivered or
re-listed object can never count twice. The harness's observation time of that event (monotonic
seconds since the run's ``t0``) becomes ``t_ready_s``; the API server's ``lastTransitionTime``
becomes ``ready_at``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from servingperf.model.deployments import DeploymentStatus
from servingperf.platforms.base import Instance
from servingperf.platforms.kserve_status import IsvcState, Phase, isvc_state
from servingperf.platforms.kube_types import JsonObject

# Given a ready instance's state: set its endpoint, or say why it cannot be used.
ReadyHook = Callable[[Instance, IsvcState], str | None]


@dataclass(slots=True)
class Waiter:
    instance: Instance
    done: asyncio.Event = field(default_factory=asyncio.Event)
    state: IsvcState | None = None  # the last state seen
    failure: str | None = None
    settled: bool = False


@dataclass(slots=True)
class TrackerCounts:
    ready: int = 0  # instances settled ready
    failed: int = 0  # instances settled failed (by status, deletion or watch failure)
    unknown: int = 0  # objects seen that no waiter is registered for


class ReadinessTracker:
    """The watch's sink: settles waiters; ``fail_reasons`` as in :func:`isvc_state`."""

    def __init__(self, fail_reasons: Collection[str], on_ready: ReadyHook) -> None:
        self._fail_reasons = frozenset(fail_reasons)
        self._on_ready = on_ready
        self._waiters: dict[tuple[str, str], Waiter] = {}
        self._watch_failure: str | None = None
        self.counts = TrackerCounts()

    def register(self, namespace: str, name: str, instance: Instance) -> Waiter:
        """A waiter for an instance about to be created (register first: the watch may report
        the object before the create call returns)."""
        waiter = Waiter(instance)
        self._waiters[(namespace, name)] = waiter
        if self._watch_failure is not None:
            self._settle_failed(waiter, self._watch_failure)
        return waiter

    def unregister(self, namespace: str, name: str) -> None:
        self._waiters.pop((namespace, name), None)

    def on_object(self, obj: JsonObject, observed_s: float) -> None:
        meta = obj.get("metadata") or {}
        waiter = self._waiters.get((str(meta.get("namespace") or ""), str(meta.get("name") or "")))
        if waiter is None:
            self.counts.unknown += 1
            return
        if waiter.settled:
            return
        state = isvc_state(obj, self._fail_reasons)
        waiter.state = state
        if state.phase is Phase.READY:
            self._settle_ready(waiter, state, observed_s)
        elif state.phase is Phase.FAILED:
            self._settle_failed(waiter, state.reason or "failed")

    def on_deleted(self, namespace: str, name: str, observed_s: float) -> None:
        waiter = self._waiters.get((namespace, name))
        if waiter is not None and not waiter.settled:
            self._settle_failed(waiter, "the InferenceService was deleted while starting")

    def on_watch_failed(self, reason: str) -> None:
        """No more news will come: fail every waiter still open, and any registered later."""
        self._watch_failure = reason
        for waiter in self._waiters.values():
            if not waiter.settled:
                self._settle_failed(waiter, reason)

    def give_up(self, waiter: Waiter, reason: str) -> None:
        """Settle a waiter as failed from outside (wait_ready's timeout)."""
        if not waiter.settled:
            self._settle_failed(waiter, reason)

    def _settle_ready(self, waiter: Waiter, state: IsvcState, observed_s: float) -> None:
        problem = self._on_ready(waiter.instance, state)
        if problem is not None:
            self._settle_failed(waiter, problem)
            return
        record = waiter.instance.record
        record.ready_at = state.ready_at
        record.t_ready_s = observed_s
        record.status = DeploymentStatus.READY.value
        waiter.settled = True
        self.counts.ready += 1
        waiter.done.set()

    def _settle_failed(self, waiter: Waiter, reason: str) -> None:
        record = waiter.instance.record
        record.status = DeploymentStatus.FAILED.value
        record.failure_reason = reason
        waiter.failure = reason
        waiter.settled = True
        self.counts.failed += 1
        waiter.done.set()

"""The error breaker: a stop condition that ends a run whose error rate passes a bound.

Terms. A phase's *finished* requests are those that ended ok or in error (``cut`` requests,
still in flight when the phase stopped, are neither, DESIGN.md §3); its *error rate* is errors /
finished. The breaker *trips* when, with at least ``min_requests`` finished, the error rate is
above ``max_error_rate``: it sets the run's stop event (the phase stops issuing and cuts what is
in flight, as on Ctrl-C) and keeps a one-line *reason* for ``run.json``'s ``status_reason``.

It watches the live counters the engine already gives its progress sink (summed over worker
processes when there are several), so it needs no hook inside the engine and sees every request of
the phase wherever it ran. A check happens on every progress tick (every 0.5 s by default) and once
more when the phase ends, so a trip stops the run within a tick.
"""

from __future__ import annotations

import asyncio

from servingperf.errors import TargetError
from servingperf.load.sinks import LoadCounters, ProgressSink
from servingperf.model.specs import BreakerSpec


def breaker_reason(spec: BreakerSpec, counters: LoadCounters) -> str | None:
    """Why ``counters`` trip a breaker configured by ``spec``, or None if they do not. Pure."""
    finished = counters.ok + counters.errors
    if finished < spec.min_requests or finished == 0:
        return None
    rate = counters.errors / finished
    if rate <= spec.max_error_rate:
        return None
    return (
        f"error breaker tripped on instance {counters.instance!r} phase {counters.phase!r}:"
        f" {counters.errors} of {finished} finished requests failed ({rate:.1%} > max_error_rate"
        f" {spec.max_error_rate:.1%}); the run was stopped (records and report show the errors)"
    )


class ErrorBreaker:
    """One phase's breaker. Wrap the phase's progress sink with :meth:`watch`; after the phase,
    :meth:`raise_if_tripped` turns a trip into a ``TargetError`` (exit code 3)."""

    def __init__(self, spec: BreakerSpec, stop: asyncio.Event) -> None:
        self._spec = spec
        self._stop = stop
        self.reason: str | None = None

    @classmethod
    def of(cls, spec: BreakerSpec | None, stop: asyncio.Event) -> ErrorBreaker | None:
        """A breaker for ``spec``, or None when the scenario configures none."""
        return None if spec is None else cls(spec, stop)

    @property
    def tripped(self) -> bool:
        return self.reason is not None

    def check(self, counters: LoadCounters) -> bool:
        """Trip (set the stop event) if ``counters`` pass the bound; True once tripped."""
        if self.reason is None:
            reason = breaker_reason(self._spec, counters)
            if reason is not None:
                self.reason = reason
                self._stop.set()
        return self.reason is not None

    def watch(self, progress: ProgressSink) -> ProgressSink:
        """``progress``, with this breaker checking the counters at every tick and at the end."""
        return _Watching(self, progress)

    def raise_if_tripped(self) -> None:
        if self.reason is not None:
            raise TargetError(self.reason)


class _Watching:
    """A progress sink that forwards everything and lets the breaker look at the counters."""

    __slots__ = ("_breaker", "_inner")

    def __init__(self, breaker: ErrorBreaker, inner: ProgressSink) -> None:
        self._breaker = breaker
        self._inner = inner

    def phase_started(self, counters: LoadCounters, duration_s: float) -> None:
        self._inner.phase_started(counters, duration_s)

    def tick(self, counters: LoadCounters, elapsed_s: float) -> None:
        self._breaker.check(counters)
        self._inner.tick(counters, elapsed_s)

    def phase_ended(self, counters: LoadCounters) -> None:
        self._breaker.check(counters)
        self._inner.phase_ended(counters)

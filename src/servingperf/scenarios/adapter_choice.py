"""Which LoRA adapter a request names: drawn by weight from the adapters active at the time.

Terms (:class:`~servingperf.model.workload_spec.AdaptersSpec`). Adapters are in name order. With
*churn*, the *active set* is ``active`` adapters starting at position ``(k * active) mod n`` during
rotation k, the k-th ``every_s`` seconds since the phase's first request (wrapping); without it
every adapter is active. A request draws among the active adapters with probability proportional
to their weights, from a generator seeded per user (or arrival stream), so a rerun sends the same
adapter sequence whatever the timing, churn aside (the rotation follows the clock).
"""

from __future__ import annotations

import bisect
import itertools
import random
import time
from collections.abc import Callable

from servingperf.model.workload_spec import AdaptersSpec


class AdapterChoice:
    __slots__ = ("_clock", "_every_s", "_names", "_origin", "_rngs", "_seed", "_size", "_weights")

    def __init__(
        self, spec: AdaptersSpec, seed: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._names = sorted(spec.weights)
        self._weights = [spec.weights[n] for n in self._names]
        self._size = spec.churn.active if spec.churn else len(self._names)
        self._every_s = spec.churn.every_s if spec.churn else None
        self._seed = seed
        self._clock = clock
        self._origin: float | None = None
        self._rngs: dict[int, random.Random] = {}

    def active(self, elapsed_s: float) -> list[str]:
        """The adapters taking requests ``elapsed_s`` after the first request."""
        if self._every_s is None:
            return list(self._names)
        n = len(self._names)
        first = (int(elapsed_s // self._every_s) * self._size) % n
        return [self._names[(first + i) % n] for i in range(self._size)]

    def choose(self, stream: int) -> str:
        now = self._clock()
        if self._origin is None:
            self._origin = now
        rng = self._rngs.get(stream)
        if rng is None:
            rng = self._rngs[stream] = random.Random(f"servingperf-adapter:{self._seed}:{stream}")
        names = self.active(now - self._origin)
        weights = [self._weights[self._names.index(n)] for n in names]
        cumulative = list(itertools.accumulate(weights))
        return names[bisect.bisect_right(cumulative, rng.random() * cumulative[-1])]

"""Emulated LoRA adapter slots: which adapters are loaded, and what a miss costs.

Terms, as vLLM's LoRA serving has them. At most ``max_resident`` adapters are loaded at once; a
sequence asking for an adapter that is not loaded must wait for a *load*, which costs ``load_s``
of the step that admits it (vLLM loads the weights in the engine step, so every running sequence
sees that step grow). A loaded adapter that no running sequence uses may be *evicted* (least
recently used first) to make room; when every loaded adapter is in use the sequence stays queued
until one frees. Counters: loads (misses), hits, evictions.
"""

from __future__ import annotations

from collections import Counter, OrderedDict


class AdapterSlots:
    __slots__ = ("_in_use", "_loaded", "evictions", "hits", "load_s", "loads", "max_resident")

    def __init__(self, max_resident: int, load_s: float) -> None:
        if max_resident < 1 or load_s < 0:
            raise ValueError("adapter slots need max_resident >= 1 and load_s >= 0")
        self.max_resident = max_resident
        self.load_s = load_s
        self._loaded: OrderedDict[str, None] = OrderedDict()
        self._in_use: Counter[str] = Counter()
        self.loads = 0
        self.hits = 0
        self.evictions = 0

    def admit(self, adapter: str) -> float | None:
        """Take ``adapter`` for one sequence: the load cost it adds to this step (0 when it is
        loaded already), or None when it cannot be loaded now (every slot busy)."""
        if adapter in self._loaded:
            self._loaded.move_to_end(adapter)
            self._in_use[adapter] += 1
            self.hits += 1
            return 0.0
        if len(self._loaded) >= self.max_resident:
            idle = next((a for a in self._loaded if not self._in_use[a]), None)
            if idle is None:
                return None
            del self._loaded[idle]
            self.evictions += 1
        self._loaded[adapter] = None
        self._in_use[adapter] += 1
        self.loads += 1
        return self.load_s

    def release(self, adapter: str) -> None:
        """One sequence of ``adapter`` left the batch."""
        if self._in_use[adapter] > 0:
            self._in_use[adapter] -= 1

    @property
    def loaded(self) -> tuple[str, ...]:
        return tuple(self._loaded)

    @property
    def running(self) -> int:
        """Adapters used by at least one running sequence."""
        return sum(1 for count in self._in_use.values() if count)

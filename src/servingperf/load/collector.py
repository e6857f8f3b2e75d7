"""The cyclic garbage collector's settings for the length of a load phase.

A load phase allocates a few hundred objects per request (parsed chunks, the exchange, its
record), and the records wait for the writer thread, so with the collector's defaults (a
*young-generation* collection every 700 net allocations, and *full* collections whose cost grows
with every live object) a load process spent about 7 % of its CPU collecting at 20,000
requests/s. For the phase, the objects that existed before it are *frozen* (``gc.freeze``:
out of the collector's sight) and the young generation's threshold is raised; both are undone
after. Phases that overlap in one process (several instances loaded at once) share the first
one's settings: only the phase that changed them restores them.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

YOUNG_THRESHOLD = 10_000


@contextlib.contextmanager
def collector_for_load(young_threshold: int = YOUNG_THRESHOLD) -> Iterator[None]:
    """Raise the young-generation threshold and freeze the existing objects, for the block."""
    before = gc.get_threshold()
    if before[0] >= young_threshold:  # already raised (an overlapping phase, or the user)
        yield
        return
    gc.freeze()
    gc.set_threshold(young_threshold, before[1], before[2])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()

"""Background threads give way to the event loop.

The load generator's event loop shares its process, and under ``taskset`` its one core, with
threads that write records and metrics and draw the progress line. Those threads may be late;
the loop may not: an open-loop send waits for whatever holds the core (measured: trace-replay
lateness p99 2.2 ms with the record writer at normal priority, 0.48 ms at the lowest; the table
is in docs/benchmarks.md). Linux gives each thread its own nice value, so a background thread
lowers its own priority when it starts; the loop's thread keeps the process's.
"""

from __future__ import annotations

import os
import threading

LOWEST_NICE = 19


def lower_thread_priority(thread_id: int | None = None) -> bool:
    """Run the calling thread (or the thread of native id ``thread_id``) at the lowest CPU
    priority; False where the OS does not allow it (then nothing changed)."""
    try:
        os.setpriority(os.PRIO_PROCESS, thread_id or threading.get_native_id(), LOWEST_NICE)
    except (AttributeError, OSError):
        return False
    return True

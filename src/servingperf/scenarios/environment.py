"""Facts about where a run ran, stored in ``run.json`` so runs are comparable only when they should be."""

from __future__ import annotations

import os
import platform
import socket
import sys
from typing import Any

from servingperf import __version__


def environment() -> dict[str, Any]:
    try:
        memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory_bytes = None
    return {
        "servingperf": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_bytes": memory_bytes,
    }

"""Background threads give way to the load loop: the record and metric writers run at the
lowest CPU priority (Linux: a thread's own nice value), the loop's thread keeps the process's;
and the open-loop dispatcher's wait spin is left out of the CPU share validity reads."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from servingperf.analysis.validity import window_validity
from servingperf.load.health import LoadHealth
from servingperf.results.background import LOWEST_NICE, lower_thread_priority
from servingperf.results.record_writer import ParquetRecordWriter

pytestmark = pytest.mark.skipif(not hasattr(os, "getpriority"), reason="no per-thread nice")


def nice_of(native_id: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, native_id)


def test_a_thread_lowers_its_own_priority_and_only_its_own() -> None:
    before = nice_of(threading.get_native_id())
    seen: list[int] = []

    def body() -> None:
        assert lower_thread_priority()
        seen.append(nice_of(threading.get_native_id()))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [LOWEST_NICE]
    assert nice_of(threading.get_native_id()) == before  # the caller's thread is unchanged


def test_the_record_writer_thread_runs_at_the_lowest_priority(tmp_path: Path) -> None:
    writer = ParquetRecordWriter(tmp_path)
    try:
        native = writer._thread.native_id
        assert native is not None
        for _ in range(200):  # the thread lowers itself as it starts (bounded wait)
            if nice_of(native) == LOWEST_NICE:
                break
            threading.Event().wait(0.01)
        assert nice_of(native) == LOWEST_NICE
    finally:
        writer.close()


def test_the_wait_spin_is_not_counted_as_work() -> None:
    spinning = LoadHealth(0, 10.0, 9.5, 0.0, 0.001, 0.002, 500, 0.0, 0, wait_spin_s=6.0)
    assert spinning.cpu_share == pytest.approx(0.35)
    entry = {"counts": {"issued": 100, "ok": 100, "measured": 100}}
    spun = window_validity("m/load", entry, [spinning.to_json()], None)
    assert spun.evidence["cpu_share_max"] == pytest.approx(0.35)
    assert not any("of a core" in reason for reason in spun.reasons)
    working = LoadHealth(0, 10.0, 9.5, 0.0, 0.001, 0.002, 500, 0.0, 0)
    busy = window_validity("m/load", entry, [working.to_json()], None)
    assert any("used 95% of a core" in reason for reason in busy.reasons)

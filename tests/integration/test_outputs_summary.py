"""``summary.json`` as a run and ``servingperf summarize`` write it: streamed from the run
directory's segments (``summarize_run_dir``), with exactly the figures of summarising the whole
table in memory (``summarize_run``), also for a run that was never closed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from servingperf.analysis.summary import summarize_run
from servingperf.model.specs import SloSpec
from servingperf.results.record_writer import write_segment
from servingperf.results.rundir import PhaseWindow, RunDir, RunInfo
from servingperf.scenarios.outputs import UNFINISHED_REASON, write_summary
from tests.fakes.runs import RAMP_S, synthetic_run

SLO = {"ttft_s": 0.05, "tpot_s": 0.01}


def _run_dir(path: Path, info: RunInfo, records: pa.Table, segments: int) -> RunDir:
    """A run directory whose records are shuffled over ``segments`` Parquet segments."""
    run_dir = RunDir(path)
    run_dir.create()
    run_dir.write_info(info)
    order = pa.array(sorted(range(records.num_rows), key=lambda i: (i * 7919) % records.num_rows))
    shuffled = records.take(order)
    size = -(-records.num_rows // segments)
    for k in range(segments):
        part = shuffled.slice(k * size, size)
        write_segment(part, run_dir.records_dir / f"part-w{k + 1}-000001.parquet")
    return run_dir


def _synthetic(status: str = "complete") -> tuple[RunInfo, pa.Table]:
    run_info, _, records = synthetic_run(
        models=("flan-t5-small", "flan-t5-large", "bloom-560m"), requests_per_instance=400
    )
    info = RunInfo.from_json({**run_info, "status": status}, "synthetic")
    info.config = {**info.config, "slo": SLO}
    return info, records


def _figures(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary without what ``write_summary`` adds beyond the figures (trust: validity and
    the fingerprint, which need run.json's environment and load_health.json)."""
    assert summary["validity"]["verdict"] in ("valid", "suspect", "invalid")
    assert summary["fingerprint"]["fingerprint.version"] == "1"
    return {k: v for k, v in summary.items() if k not in ("validity", "fingerprint")}


def test_streamed_summary_equals_the_in_memory_one(tmp_path: Path) -> None:
    info, records = _synthetic()
    run_dir = _run_dir(tmp_path / "run", info, records, segments=3)
    streamed = write_summary(run_dir)
    in_memory = summarize_run(info, run_dir.read_records(), SloSpec.model_validate(SLO))
    assert _figures(streamed) == in_memory
    assert streamed == run_dir.read_summary()
    assert all(e["throughput"]["goodput_rps"] is not None for e in streamed["instances"].values())
    assert "sweep" not in streamed


def test_a_never_closed_run_gets_windows_from_its_records_the_same_way(tmp_path: Path) -> None:
    info, records = _synthetic(status="running")
    unclosed = info.phases.pop()  # the harness died before it closed the last phase
    run_dir = _run_dir(tmp_path / "run", info, records, segments=4)
    streamed = write_summary(run_dir)
    assert streamed["status"] == "incomplete"
    assert streamed["status_reason"] == UNFINISHED_REASON
    mine = records.filter(pc.equal(records["instance"], unclosed.instance))
    ends = pc.fill_null(mine["t_end_s"], mine["t_scheduled_s"])
    start = pc.min(mine["t_scheduled_s"]).as_py()
    end = max(pc.max(ends).as_py(), pc.max(mine["t_scheduled_s"]).as_py())
    expected_window = PhaseWindow(
        unclosed.instance, unclosed.phase, start, min(start + RAMP_S, end), end, end
    )
    closed = RunInfo.from_json(info.to_json(), "synthetic")
    closed.phases = [*closed.phases, expected_window]
    closed.status = "incomplete"
    expected: dict[str, Any] = summarize_run(
        closed, run_dir.read_records(), SloSpec.model_validate(SLO)
    )
    expected["status_reason"] = UNFINISHED_REASON
    assert _figures(streamed) == expected
    assert streamed["instances"][unclosed.instance]["counts"]["measured"] > 0
    assert run_dir.read_info().status == "running"  # run.json is left as found

"""The synthetic-run helper of the report tests (``tests.fakes.runs``), tested itself so that a
broken helper cannot pass silently."""

from __future__ import annotations

from pathlib import Path

from servingperf.results.rundir import RunDir
from tests.fakes.runs import synthetic_deployments, synthetic_run, write_run_dir


def test_synthetic_run_is_consistent() -> None:
    _, summary, records = synthetic_run(requests_per_instance=120)
    assert records.num_rows == 240
    assert set(records.column("status").to_pylist()) == {"ok", "error", "cut"}
    for entry in summary["instances"].values():
        counts = entry["counts"]
        assert counts["error"] > 0
        assert entry["stats"]["e2e_s"]["n"] == counts["measured"] > 0


def test_written_run_dir_reads_back(tmp_path: Path) -> None:
    run_info, summary, records = synthetic_run(requests_per_instance=40)
    run_dir = write_run_dir(
        tmp_path / "run", run_info, summary, records, synthetic_deployments(6, 2.0)
    )
    assert isinstance(run_dir, RunDir)
    assert run_dir.read_info().run_id == run_info["run_id"]
    assert run_dir.read_records().num_rows == records.num_rows
    assert run_dir.read_summary() == summary
    assert run_dir.read_deployments().num_rows == 6

"""Record segments of every format version: an old run directory is still read (its records
upgraded on read), a segment newer than this build is refused, and new records round-trip.

``tests/data/records-v1.parquet`` was written by servingperf's format 1 record writer (before
the token counts of issue #22): five records, a usage that agrees with the stream, one that does
not (6 against 4 streamed), one without usage, a non-streamed call and an HTTP 429.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from servingperf.analysis.summary import summarize_run_dir
from servingperf.errors import RunDirError
from servingperf.results.record_writer import records_to_table, write_segment
from servingperf.results.rundir import PhaseWindow, RunDir, RunInfo
from servingperf.results.schema import REQUEST_SCHEMA, RUN_FORMAT_VERSION
from tests.fakes.records import record

V1_SEGMENT = Path(__file__).parents[1] / "data" / "records-v1.parquet"


def _run_dir(tmp_path: Path, version: int) -> RunDir:
    run_dir = RunDir(tmp_path / "run")
    run_dir.create()
    info = RunInfo(
        run_id="old",
        scenario="s",
        kind="single-model",
        started_at="2024-01-01T00:00:00+00:00",
        t0_monotonic=0.0,
        labels={},
        config={},
        environment={},
        status="complete",
        phases=[PhaseWindow("m", "load", 0.0, 0.0, 20.0, 20.0)],
        format_version=version,
    )
    run_dir.write_info(info)
    return run_dir


def test_the_old_file_is_version_1() -> None:
    schema = pq.read_schema(V1_SEGMENT)
    assert (schema.metadata or {})[b"servingperf.format_version"] == b"1"
    assert "stream_output_tokens" not in schema.names


def test_a_version_1_run_is_read_with_its_counts_derived(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path, 1)
    shutil.copy(V1_SEGMENT, run_dir.records_dir / "part-w001-0-000001.parquet")
    table = run_dir.read_records()
    assert table.schema.names == REQUEST_SCHEMA.names
    rows = {row["request_id"]: row for row in table.to_pylist()}
    assert (rows["v1-usage"]["stream_output_tokens"], rows["v1-usage"]["usage_output_tokens"]) == (
        4,
        4,
    )
    mismatch = rows["v1-mismatch"]
    assert (mismatch["stream_output_tokens"], mismatch["usage_output_tokens"]) == (4, 6)
    assert mismatch["output_tokens"] == 6  # N as version 1 recorded it
    assert (
        rows["v1-stream"]["stream_output_tokens"],
        rows["v1-stream"]["usage_output_tokens"],
    ) == (
        3,
        None,
    )
    assert rows["v1-whole"]["stream_output_tokens"] is None
    assert rows["v1-whole"]["usage_output_tokens"] == 4
    # version 1 did not say how it counted chunks: no comparison is claimed
    assert {row["token_mismatch"] for row in rows.values()} == {None}
    assert {row["chunk_token_source"] for row in rows.values()} == {None}
    assert rows["v1-429"]["error_kind"] == "http_status"  # kept as recorded
    summary = summarize_run_dir(run_dir)
    entry = summary["instances"]["m"]
    assert entry["counts"]["ok"] == 4
    assert entry["counts"]["errors_by_kind"] == {"http_status": 1}


def test_a_segment_newer_than_this_build_is_refused(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path, RUN_FORMAT_VERSION)
    table = records_to_table([record(request_id="future", t_end_s=1.0)])
    newer = {b"servingperf.format_version": str(RUN_FORMAT_VERSION + 1).encode()}
    pq.write_table(table.replace_schema_metadata(newer), run_dir.records_dir / "part-x.parquet")
    with pytest.raises(RunDirError, match="newer servingperf"):
        run_dir.read_records()
    with pytest.raises(RunDirError, match="newer servingperf"):
        summarize_run_dir(run_dir)


def test_current_records_round_trip_their_counts(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path, RUN_FORMAT_VERSION)
    written = record(
        request_id="now",
        t_end_s=1.0,
        output_tokens=21,
        stream_output_tokens=16,
        usage_output_tokens=21,
        chunk_token_source="server",
        token_mismatch=True,
    )
    write_segment(records_to_table([written]), run_dir.records_dir / "part-w001-x-000001.parquet")
    (row,) = run_dir.read_records().to_pylist()
    assert (row["stream_output_tokens"], row["usage_output_tokens"]) == (16, 21)
    assert (row["chunk_token_source"], row["token_mismatch"]) == ("server", True)
    schema = pq.read_schema(run_dir.records_dir / "part-w001-x-000001.parquet")
    assert (schema.metadata or {})[b"servingperf.format_version"] == str(
        RUN_FORMAT_VERSION
    ).encode()


def test_a_version_1_run_json_is_still_read(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path, 1)
    assert run_dir.read_info().format_version == 1


def test_an_unknown_column_request_names_the_file(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path, 1)
    broken = pa.table({"status": ["ok"]}).replace_schema_metadata(
        {b"servingperf.format_version": b"1"}
    )
    pq.write_table(broken, run_dir.records_dir / "part-bad.parquet")
    with pytest.raises(RunDirError, match=r"part-bad\.parquet"):
        run_dir.read_records()


V2_SEGMENT = Path(__file__).parents[1] / "data" / "records-v2.parquet"


def test_a_version_2_run_reads_no_reasoning_count_and_no_session(tmp_path: Path) -> None:
    """``tests/data/records-v2.parquet``: two records in format 2 (before #18's columns)."""
    assert (pq.read_schema(V2_SEGMENT).metadata or {})[b"servingperf.format_version"] == b"2"
    run_dir = _run_dir(tmp_path, 2)
    shutil.copy(V2_SEGMENT, run_dir.records_dir / "part-w001-0-000001.parquet")
    table = run_dir.read_records()
    assert table.schema.names == REQUEST_SCHEMA.names
    assert table.column("request_id").to_pylist() == ["v2-a", "v2-b"]
    for name in ("reasoning_tokens", "session", "turn"):
        assert table.column(name).null_count == 2

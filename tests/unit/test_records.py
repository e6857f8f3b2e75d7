"""Freezing an exchange into a record: offsets, token source, cut and failure rules."""

from __future__ import annotations

from servingperf.model.records import (
    ErrorKind,
    Exchange,
    GenerationRequest,
    RequestContext,
    freeze,
)

CTX = RequestContext("i", "m", "load", 0, 3, 7, 16)


def _exchange(stream: bool = True) -> Exchange:
    return Exchange(GenerationRequest("id-1", "m", "hi", 16, stream=stream), mono_scheduled=100.0)


def test_streamed_exchange_becomes_offsets_from_t0_and_sent() -> None:
    ex = _exchange()
    ex.mono_sent = 100.5
    ex.token_chunk(100.7, 1, content=False)  # a reasoning token: first token, not first content
    ex.token_chunk(100.8, 2)
    ex.token_chunk(100.9, 0)  # empty chunk: ignored
    ex.succeed(101.0)
    rec = freeze(ex, CTX, t0=100.0)
    assert rec.t_scheduled_s == 0.0
    assert rec.t_sent_s == 0.5
    assert abs(rec.t_first_token_s - 0.7) < 1e-9  # type: ignore[operator]
    assert abs(rec.t_first_content_s - 0.8) < 1e-9  # type: ignore[operator]
    assert [round(x, 9) for x in rec.chunk_offsets_s] == [0.2, 0.3]
    assert rec.chunk_tokens == [1, 2]
    assert (rec.output_tokens, rec.token_source) == (3, "stream")
    assert rec.status == "ok" and rec.user == 3 and rec.prompt_index == 7


def test_usage_count_wins_over_streamed_count() -> None:
    ex = _exchange()
    ex.mono_sent = 100.0
    ex.token_chunk(100.1, 1)
    ex.usage_output_tokens = 5
    ex.succeed(100.2)
    rec = freeze(ex, CTX, t0=100.0)
    assert (rec.output_tokens, rec.token_source) == (5, "usage")


def test_pending_exchange_is_cut_and_keeps_what_it_gathered() -> None:
    ex = _exchange()
    ex.mono_sent = 100.0
    ex.token_chunk(100.1, 1)
    rec = freeze(ex, CTX, t0=100.0)
    assert rec.status == "cut" and rec.error_kind == "cut"
    assert rec.t_end_s is None and rec.chunk_tokens == [1]


def test_first_failure_wins() -> None:
    ex = _exchange()
    ex.fail(1.0, ErrorKind.CONNECT, "refused")
    ex.fail(2.0, ErrorKind.TIMEOUT, "later")
    rec = freeze(ex, CTX, t0=0.0)
    assert (rec.status, rec.error_kind, rec.error_message, rec.t_end_s) == (
        "error",
        "connect",
        "refused",
        1.0,
    )
    assert rec.t_sent_s is None and rec.output_tokens is None


def test_two_writers_of_the_same_worker_number_never_overwrite_each_other(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from servingperf.results.record_writer import ParquetRecordWriter
    from servingperf.results.rundir import RunDir
    from servingperf.results.schema import REQUEST_SCHEMA
    from tests.fakes.records import record

    (tmp_path / "records").mkdir()
    for phase in ("first", "second"):  # e.g. two models, each loaded by worker 1
        writer = ParquetRecordWriter(tmp_path / "records", worker=1)
        writer.write(record(request_id=phase, phase=phase))
        writer.close()
    table = RunDir(tmp_path).read_records()
    assert sorted(table.column("request_id").to_pylist()) == ["first", "second"]
    assert table.schema.names == REQUEST_SCHEMA.names

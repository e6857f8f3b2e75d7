"""Freezing an exchange into a record: offsets, token source, cut and failure rules."""

from __future__ import annotations

from servingperf.model.records import (
    ChunkTokenSource,
    ErrorKind,
    Exchange,
    GenerationRequest,
    RequestContext,
    TokenSource,
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


def test_both_counts_are_kept_and_a_mismatch_is_flagged() -> None:
    ex = _exchange()
    ex.mono_sent = 100.0
    ex.token_chunk(100.1, 4, source=ChunkTokenSource.SERVER)
    ex.token_chunk(100.2, 4, source=ChunkTokenSource.SERVER)
    ex.tokens_without_text = 1  # an end-of-sequence token without text
    ex.usage_output_tokens = 12
    ex.succeed(100.3)
    rec = freeze(ex, CTX, t0=100.0)
    assert (rec.stream_output_tokens, rec.usage_output_tokens) == (9, 12)
    assert rec.token_mismatch is True
    assert rec.chunk_token_source == "server"
    assert (rec.output_tokens, rec.token_source) == (12, "usage")
    from_stream = RequestContext("i", "m", "load", 0, 3, 7, 16, TokenSource.STREAM)
    rec = freeze(ex, from_stream, t0=100.0)
    assert (rec.output_tokens, rec.token_source) == (9, "stream")


def test_agreeing_counts_are_not_a_mismatch_and_failures_are_not_compared() -> None:
    ex = _exchange()
    ex.mono_sent = 100.0
    ex.token_chunk(100.1, 3)
    ex.usage_output_tokens = 3
    ex.succeed(100.2)
    assert freeze(ex, CTX, t0=100.0).token_mismatch is False
    ex = _exchange()
    ex.mono_sent = 100.0
    ex.token_chunk(100.1, 3)
    ex.usage_output_tokens = 5
    ex.fail(100.2, ErrorKind.PROTOCOL, "stream ended without [DONE]")
    assert freeze(ex, CTX, t0=100.0).token_mismatch is None  # an incomplete stream


def test_mixed_chunk_sources_say_so_and_whole_calls_have_no_stream_count() -> None:
    ex = _exchange()
    ex.mono_sent = 100.0
    ex.token_chunk(100.1, 1, source=ChunkTokenSource.SERVER)
    ex.token_chunk(100.2, 1, source=ChunkTokenSource.CHUNKS)
    ex.succeed(100.3)
    assert freeze(ex, CTX, t0=100.0).chunk_token_source == "mixed"
    whole = _exchange(stream=False)
    whole.mono_sent = 100.0
    whole.usage_output_tokens = 8
    whole.succeed(101.0)
    rec = freeze(whole, RequestContext("i", "m", "load", 0, 3, 7, 16, TokenSource.STREAM), 100.0)
    assert (rec.stream_output_tokens, rec.token_mismatch, rec.chunk_token_source) == (
        None,
        None,
        None,
    )
    assert (rec.output_tokens, rec.token_source) == (8, "usage")  # the only count there is

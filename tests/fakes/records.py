"""Hand-made request records for tests of pure analysis code: one builder, shared."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from servingperf.model.records import RequestRecord
from servingperf.results.record_writer import records_to_table


def record(**fields: Any) -> RequestRecord:
    """A record with sensible defaults; chunk offsets are relative to t_sent_s."""
    base: dict[str, Any] = {
        "request_id": "r",
        "instance": "m",
        "model": "m",
        "phase": "load",
        "worker": 0,
        "user": 0,
        "prompt_index": 0,
        "streamed": True,
        "requested_output_tokens": None,
        "input_tokens": None,
        "output_tokens": None,
        "token_source": "usage",
        "t_scheduled_s": fields.get("t_sent_s", 0.0) or 0.0,
        "t_sent_s": 0.0,
        "t_first_token_s": None,
        "t_first_content_s": None,
        "t_end_s": None,
        "chunk_offsets_s": [],
        "chunk_tokens": [],
        "status": "ok",
        "error_kind": None,
        "error_message": None,
        "finish_reason": None,
    }
    base.update(fields)
    return RequestRecord(**base)


def table(*records: RequestRecord) -> pa.Table:
    return records_to_table(list(records))

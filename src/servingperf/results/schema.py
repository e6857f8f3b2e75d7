"""Arrow schemas of the stored record files, and the version of the run-directory format.

Version history (each step is upgraded on read, never rewritten in place):
  1. first format.
"""

from __future__ import annotations

import pyarrow as pa

RUN_FORMAT_VERSION = 1

REQUEST_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("instance", pa.string()),
        ("model", pa.string()),
        ("phase", pa.string()),
        ("worker", pa.int32()),
        ("user", pa.int32()),
        ("prompt_index", pa.int32()),
        ("streamed", pa.bool_()),
        ("requested_output_tokens", pa.int32()),
        ("input_tokens", pa.int32()),
        ("output_tokens", pa.int32()),
        ("token_source", pa.string()),
        ("t_scheduled_s", pa.float64()),
        ("t_sent_s", pa.float64()),
        ("t_first_token_s", pa.float64()),
        ("t_first_content_s", pa.float64()),
        ("t_end_s", pa.float64()),
        ("chunk_offsets_s", pa.list_(pa.float64())),
        ("chunk_tokens", pa.list_(pa.int32())),
        ("status", pa.string()),
        ("error_kind", pa.string()),
        ("error_message", pa.string()),
        ("finish_reason", pa.string()),
    ],
    metadata={"servingperf.format_version": str(RUN_FORMAT_VERSION)},
)

DEPLOYMENT_SCHEMA = pa.schema(
    [
        ("instance", pa.string()),
        ("namespace", pa.string()),
        ("model", pa.string()),
        ("platform", pa.string()),
        ("endpoint", pa.string()),
        ("clock_source", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("ready_at", pa.timestamp("us", tz="UTC")),
        ("t_created_s", pa.float64()),
        ("t_ready_s", pa.float64()),
        ("t_first_validated_s", pa.float64()),
        ("t_deleted_s", pa.float64()),
        ("status", pa.string()),
        ("failure_reason", pa.string()),
        ("validations_ok", pa.int32()),
        ("validations_failed", pa.int32()),
    ],
    metadata={"servingperf.format_version": str(RUN_FORMAT_VERSION)},
)

"""Arrow schemas of the stored record files, and the version of the run-directory format.

Version history (each step is upgraded on read, never rewritten in place; see
:mod:`servingperf.results.record_versions`):
  1. first format.
  2. request records gain the two token counts and how they compare (``stream_output_tokens``,
     ``usage_output_tokens``, ``chunk_token_source``, ``token_mismatch``); ``error_kind`` may be
     ``rate_limited``. Version 1 records are read with the counts derived from what they kept and
     the comparison unknown (null). ``run.json`` and ``deployments.parquet`` are unchanged.
  3. request records gain ``reasoning_tokens`` (streamed tokens of reasoning chunks), and the
     multi-turn ``session`` and ``turn``; older records read them as null (unknown, and no
     session).
"""

from __future__ import annotations

import pyarrow as pa

RUN_FORMAT_VERSION = 3

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
        ("stream_output_tokens", pa.int32()),
        ("usage_output_tokens", pa.int32()),
        ("chunk_token_source", pa.string()),
        ("token_mismatch", pa.bool_()),
        ("reasoning_tokens", pa.int32()),
        ("session", pa.string()),
        ("turn", pa.int32()),
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

# --- server metrics (metrics/*.parquet): a source beside the records --------------------------
#
# Their own version, in the same metadata key: a file newer than the code is refused.
#   1. first format.
METRICS_FORMAT_VERSION = 1
_METRICS_META = {"servingperf.format_version": str(METRICS_FORMAT_VERSION)}

# One row per sample: scraped from an instance's endpoint (source "scrape") or returned by a
# Prometheus range query (source "prometheus", ``name`` = the query's name). ``labels`` is the
# sample's label set as JSON with sorted keys, without ``le``; ``le`` is a histogram bucket's
# upper bound (+inf for the last), null for every other sample: histograms are kept as buckets.
METRIC_SAMPLE_SCHEMA = pa.schema(
    [
        ("t_s", pa.float64()),
        ("source", pa.string()),
        ("instance", pa.string()),
        ("name", pa.string()),
        ("labels", pa.string()),
        ("le", pa.float64()),
        ("value", pa.float64()),
    ],
    metadata=_METRICS_META,
)

# One row per scrape attempt: a failed one (``ok`` false, ``error`` says why) is a gap.
SCRAPE_SCHEMA = pa.schema(
    [
        ("t_s", pa.float64()),
        ("instance", pa.string()),
        ("url", pa.string()),
        ("ok", pa.bool_()),
        ("duration_s", pa.float64()),
        ("samples", pa.int32()),
        ("error", pa.string()),
    ],
    metadata=_METRICS_META,
)

# One row per Prometheus query run: which window, what came back.
QUERY_SCHEMA = pa.schema(
    [
        ("name", pa.string()),
        ("query_set", pa.string()),
        ("promql", pa.string()),
        ("phase", pa.string()),
        ("instance", pa.string()),
        ("t_start_s", pa.float64()),
        ("t_end_s", pa.float64()),
        ("step_s", pa.float64()),
        ("ok", pa.bool_()),
        ("series", pa.int32()),
        ("error", pa.string()),
    ],
    metadata=_METRICS_META,
)

# One row per server span received over OTLP: ``span_request_id`` as the server named the request
# (vLLM: ``gen_ai.request.id``), the phase durations it reported, times on the run's clock.
SPAN_SCHEMA = pa.schema(
    [
        ("trace_id", pa.string()),
        ("span_id", pa.string()),
        ("name", pa.string()),
        ("service", pa.string()),
        ("span_request_id", pa.string()),
        ("t_start_s", pa.float64()),
        ("t_end_s", pa.float64()),
        ("queue_s", pa.float64()),
        ("prefill_s", pa.float64()),
        ("decode_s", pa.float64()),
        ("inference_s", pa.float64()),
        ("ttft_s", pa.float64()),
        ("e2e_s", pa.float64()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("attributes", pa.string()),
    ],
    metadata=_METRICS_META,
)

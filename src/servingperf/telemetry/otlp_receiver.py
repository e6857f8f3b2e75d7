"""An OTLP/gRPC trace receiver on loopback: the servers' own spans, one per request, kept beside
the records (``metrics/spans-*.parquet``) to be joined with them by request id.

Terms. A server started with ``--otlp-traces-endpoint grpc://HOST:PORT`` (vLLM) exports its spans
here (``opentelemetry.proto.collector.trace.v1.TraceService/Export``, the messages of the
``opentelemetry-proto`` package). A *request span* carries the server's request id in
``gen_ai.request.id`` (vLLM names it ``cmpl-<X-Request-Id>-<n>`` for completions,
``chatcmpl-<X-Request-Id>`` for chat); other spans (start-up, model loading) are counted and
dropped. The phase durations the server reports (``gen_ai.latency.time_in_queue``,
``..._model_prefill``, ``..._model_decode``, ``..._model_inference``, ``time_to_first_token``,
``e2e``) are kept as columns, every attribute as JSON; span times (Unix nanoseconds) are mapped
to the run's clock with the run's clock anchor.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from servingperf.results.metric_writer import MetricWriter

REQUEST_ID_ATTRIBUTE = "gen_ai.request.id"
_DURATIONS = {
    "gen_ai.latency.time_in_queue": "queue_s",
    "gen_ai.latency.time_in_model_prefill": "prefill_s",
    "gen_ai.latency.time_in_model_decode": "decode_s",
    "gen_ai.latency.time_in_model_inference": "inference_s",
    "gen_ai.latency.time_to_first_token": "ttft_s",
    "gen_ai.latency.e2e": "e2e_s",
}
_TOKENS = {
    "gen_ai.usage.prompt_tokens": "prompt_tokens",
    "gen_ai.usage.completion_tokens": "completion_tokens",
}


def _plain(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_plain(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _plain(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def span_rows(
    request: trace_service_pb2.ExportTraceServiceRequest, anchor_unix: float
) -> tuple[list[dict[str, Any]], int]:
    """The request spans of one export as SPAN_SCHEMA rows, and how many other spans it had."""
    rows: list[dict[str, Any]] = []
    dropped = 0
    for resource_spans in request.resource_spans:
        service = ""
        for kv in resource_spans.resource.attributes:
            if kv.key == "service.name":
                service = str(_plain(kv.value))
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                attributes = {kv.key: _plain(kv.value) for kv in span.attributes}
                request_id = attributes.get(REQUEST_ID_ATTRIBUTE)
                if not isinstance(request_id, str):
                    dropped += 1
                    continue
                row: dict[str, Any] = {
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "name": span.name,
                    "service": service,
                    "span_request_id": request_id,
                    "t_start_s": span.start_time_unix_nano / 1e9 - anchor_unix,
                    "t_end_s": span.end_time_unix_nano / 1e9 - anchor_unix,
                    "attributes": json.dumps(attributes, separators=(",", ":"), default=str),
                }
                for key, column in _DURATIONS.items():
                    value = attributes.get(key)
                    row[column] = float(value) if isinstance(value, int | float) else None
                for key, column in _TOKENS.items():
                    value = attributes.get(key)
                    row[column] = int(value) if isinstance(value, int | float) else None
                rows.append(row)
    return rows, dropped


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: object
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._receiver.received(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpReceiver:
    """The receiver of one run: :meth:`start` binds (loopback), :meth:`close` stops it."""

    def __init__(self, writer: MetricWriter, anchor_unix: float, host: str = "127.0.0.1") -> None:
        self._writer = writer
        self._anchor = anchor_unix
        self._host = host
        self._server: grpc.aio.Server | None = None
        self.port: int | None = None
        self.request_spans = 0
        self.other_spans = 0

    @property
    def endpoint(self) -> str:
        """What to give a server's ``--otlp-traces-endpoint``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"grpc://{host}:{self.port}"

    async def start(self, port: int = 0) -> None:
        server = grpc.aio.server()
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _TraceService(self), server
        )
        bound = server.add_insecure_port(f"{self._host}:{port}")
        if bound == 0:
            raise OSError(f"cannot listen on {self._host}:{port} for OTLP spans")
        await server.start()
        self._server = server
        self.port = bound

    def received(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        rows, dropped = span_rows(request, self._anchor)
        self.request_spans += len(rows)
        self.other_spans += dropped
        if rows:
            self._writer.put_spans(rows)

    async def close(self, grace_s: float = 1.0) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace_s)

"""Server-side telemetry: a source beside the request records, never part of the load engine.

The scraper reads instances' Prometheus endpoints, the Prometheus client queries a cluster's
Prometheus over its HTTP API, and the OTLP receiver takes the servers' spans; all three write to
``metrics/*.parquet`` in the run directory (:mod:`servingperf.results.metric_writer`), and the
analysis joins them with the records by time window and by request id.
"""

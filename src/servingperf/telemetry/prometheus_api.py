"""A client of the Prometheus HTTP API (a cluster's Prometheus, OpenShift's Thanos querier):
range queries over a run's phase windows, written to ``metrics/prometheus-*.parquet``.

Terms. A *window* is one phase's [start, end] on the run's clock; the client maps it to Unix
time with the run's *clock anchor* (the wall-clock time of monotonic ``t0``, from ``run.json``)
and asks ``/api/v1/query_range`` (POST, form-encoded: long PromQL stays out of URLs and logs)
for every query at ``step_s``. Each sample's ``t_s`` is mapped back, so server series and request
records share one time axis. The bearer token (from the environment variable the scenario names)
is sent in the ``Authorization`` header and nowhere else: errors carry the server's message,
redacted, never the request headers.

Failure is data: a Prometheus that is down, refuses the token or rejects a query yields a
:class:`QueryOutcome` with the reason (a row of ``metrics/queries-*.parquet`` and a warning in
the summary), never an exception that fails the run.
"""

from __future__ import annotations

import asyncio
import json
import math
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from servingperf.results.metric_writer import MetricWriter
from servingperf.telemetry.http_body import read_body
from servingperf.telemetry.query_sets import PromQuery

_ERROR_CHARS = 300
MAX_BODY_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Window:
    """One phase of one instance (or of the run: instance "") to query, on the run's clock."""

    phase: str
    instance: str
    start_s: float
    end_s: float


@dataclass(slots=True)
class QueryOutcome:
    query: PromQuery
    window: Window
    ok: bool
    series: int = 0
    error: str | None = None
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)


def _keep(text: str) -> str:
    return text


class PrometheusClient:
    """Range queries against one Prometheus HTTP API base URL."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout_s: float = 30.0,
        tls_insecure: bool = False,
        ca_file: str | None = None,
        redact: Callable[[str], str] = _keep,
    ) -> None:
        self._base = url.rstrip("/")
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._ssl: ssl.SSLContext | bool = True
        if tls_insecure:
            self._ssl = False
        elif ca_file:
            self._ssl = ssl.create_default_context(cafile=ca_file)
        self._redact = redact

    async def range_query(
        self, promql: str, start_unix: float, end_unix: float, step_s: float
    ) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        """The series of a range query: (labels, [(unix time, value)]). Raises
        :class:`PrometheusError` (message redacted) when the API does not answer with data."""
        form = {
            "query": promql,
            "start": f"{start_unix:.3f}",
            "end": f"{end_unix:.3f}",
            "step": f"{step_s:g}",
        }
        url = f"{self._base}/api/v1/query_range"
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout) as session,
                session.post(url, data=form, headers=self._headers, ssl=self._ssl) as response,
            ):
                whole = await read_body(response, MAX_BODY_BYTES)
                status = response.status
        except TimeoutError as exc:
            raise PrometheusError(f"{self._redact(url)}: no answer in time") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise PrometheusError(self._redact(f"{url}: {type(exc).__name__}: {exc}")) from exc
        if whole is None:
            raise PrometheusError(f"{self._redact(url)}: answer over {MAX_BODY_BYTES} bytes")
        body = whole
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if status != 200 or not isinstance(data, dict) or data.get("status") != "success":
            detail = data.get("error") if isinstance(data, dict) else body[:_ERROR_CHARS]
            raise PrometheusError(self._redact(f"{url}: HTTP {status}: {detail!s:.300}"))
        result = data.get("data", {}).get("result")
        if data.get("data", {}).get("resultType") != "matrix" or not isinstance(result, list):
            raise PrometheusError(f"{self._redact(url)}: not a range-query matrix")
        series = []
        for item in result:
            labels = {str(k): str(v) for k, v in (item.get("metric") or {}).items()}
            points = [(float(t), _value(v)) for t, v in item.get("values") or ()]
            series.append((labels, points))
        return series


class PrometheusError(Exception):
    """A query that did not return data (becomes a failed QueryOutcome, never a failed run)."""


def _value(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        return math.nan


async def run_queries(
    client: PrometheusClient,
    queries: list[PromQuery],
    windows: list[Window],
    *,
    anchor_unix: float,
    step_s: float,
    writer: MetricWriter | None,
    concurrency: int = 4,
) -> list[QueryOutcome]:
    """Every query over every window; rows and outcomes go to ``writer`` as they come.

    ``anchor_unix`` is the Unix time of the run's ``t0``: a window [a, b] on the run's clock is
    [anchor + a, anchor + b] in Unix time, and a sample at Unix time u gets ``t_s`` = u - anchor.
    """
    slots = asyncio.Semaphore(concurrency)

    async def one(query: PromQuery, window: Window) -> QueryOutcome:
        async with slots:
            try:
                series = await client.range_query(
                    query.promql,
                    anchor_unix + window.start_s,
                    anchor_unix + window.end_s,
                    step_s,
                )
            except PrometheusError as exc:
                outcome = QueryOutcome(query, window, ok=False, error=str(exc)[:_ERROR_CHARS])
            else:
                rows = [
                    {
                        "t_s": t - anchor_unix,
                        "source": "prometheus",
                        "instance": window.instance,
                        "name": query.name,
                        "labels": json.dumps(dict(sorted(labels.items())), separators=(",", ":")),
                        "le": None,
                        "value": v,
                    }
                    for labels, points in series
                    for t, v in points
                ]
                outcome = QueryOutcome(query, window, ok=True, series=len(series), rows=rows)
        if writer is not None:
            if outcome.rows:
                writer.put_samples(outcome.rows)
            writer.put_query(
                {
                    "name": query.name,
                    "query_set": query.query_set,
                    "promql": query.promql,
                    "phase": window.phase,
                    "instance": window.instance,
                    "t_start_s": window.start_s,
                    "t_end_s": window.end_s,
                    "step_s": step_s,
                    "ok": outcome.ok,
                    "series": outcome.series,
                    "error": outcome.error,
                }
            )
        return outcome

    return list(await asyncio.gather(*(one(q, w) for w in windows for q in queries)))

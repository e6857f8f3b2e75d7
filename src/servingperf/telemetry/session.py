"""The server metrics of one run: the scraper, the OTLP receiver and the Prometheus queries
behind one object that the scenarios drive (:class:`ServerMetrics`).

Terms. An instance is *attached* once it is ready (its baseline scrape is awaited, so it exists
before any request), marked at every *phase boundary* (a forced scrape, awaited: every phase is
bracketed by a scrape on each side whatever the interval) and *detached* before it is deleted
(one last scrape). :meth:`ServerMetrics.finish` runs the Prometheus range queries over the
phase windows (after ``settle_s``: a cluster's Prometheus ingests with a delay; at once when the
run was interrupted), stops everything, and writes ``metrics/session.json``: the clock anchor
(Unix time of the run's ``t0``), what was scraped, the gaps, the queries, the spans, and the
warnings (a Prometheus that is down is a warning and a gap, never a failed run).

The bearer token is read from its environment variable when the session is built
(:func:`prometheus_token`: a variable named but not set is bad input, exit 2, before anything
is deployed) and is handed to the HTTP client only: it is not in the spec, in ``run.json`` (the
variable's name is), in any ``metrics/`` file, or in a message (all pass the run's redactor).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from servingperf.errors import ConfigError
from servingperf.model.specs import MetricsSpec
from servingperf.results.exposition import FamilyFilter
from servingperf.results.metric_writer import MetricWriter
from servingperf.results.rundir import write_json_atomic
from servingperf.telemetry.otlp_receiver import OtlpReceiver
from servingperf.telemetry.prometheus_api import PrometheusClient, Window, run_queries
from servingperf.telemetry.query_sets import resolve
from servingperf.telemetry.scraper import Scraper, ScrapeTarget

SESSION_FILE = "session.json"
BOUNDARY_SETTLE_S = 0.3


def prometheus_token(spec: MetricsSpec, environ: Mapping[str, str] | None = None) -> str | None:
    """The Prometheus bearer token from the variable the spec names (None when none is named);
    ConfigError naming the field when the variable is not set."""
    prometheus = spec.prometheus
    if prometheus is None or prometheus.bearer_token_env is None:
        return None
    env = os.environ if environ is None else environ
    token = env.get(prometheus.bearer_token_env, "").strip()
    if not token:
        raise ConfigError(
            f"metrics.prometheus.bearer_token_env: the environment variable"
            f" {prometheus.bearer_token_env} is not set (it must hold the bearer token)"
        )
    return token


def _keep(text: str) -> str:
    return text


class ServerMetrics:
    """One run's server metrics (terms in the module docstring)."""

    def __init__(
        self,
        spec: MetricsSpec,
        directory: Path,
        t0: float,
        *,
        token: str | None = None,
        redact: Callable[[str], str] = _keep,
    ) -> None:
        self.spec = spec
        self.directory = directory
        self._t0 = t0
        self.anchor_unix = time.time() - (time.monotonic() - t0)
        self._token = token
        self._redact = redact
        self.writer: MetricWriter | None = None
        self.scraper: Scraper | None = None
        self.receiver: OtlpReceiver | None = None
        self.warnings: list[str] = []
        self._queries: dict[str, Any] = {}
        self._started = False

    @property
    def active(self) -> bool:
        """True when anything is collected (scraping, spans or queries)."""
        spec = self.spec
        return spec.scrape.enabled or spec.otlp.enabled or spec.prometheus is not None

    @property
    def otlp_endpoint(self) -> str | None:
        return None if self.receiver is None else self.receiver.endpoint

    async def start(self) -> None:
        if self._started or not self.active:
            return
        self._started = True
        scrape = self.spec.scrape
        self.writer = MetricWriter(self.directory, FamilyFilter(scrape.include, scrape.exclude))
        if scrape.enabled:
            self.scraper = Scraper(
                self.writer,
                self._t0,
                interval_s=scrape.interval_s,
                timeout_s=scrape.timeout_s,
                concurrency=scrape.concurrency,
                max_scrapes_per_s=scrape.max_scrapes_per_s,
                redact=self._redact,
            )
            self.scraper.start()
        if self.spec.otlp.enabled:
            receiver = OtlpReceiver(self.writer, self.anchor_unix, self.spec.otlp.host)
            try:
                await receiver.start(self.spec.otlp.port)
            except (OSError, RuntimeError) as exc:
                raise ConfigError(f"metrics.otlp: {exc}") from exc
            self.receiver = receiver

    async def attach(self, target: ScrapeTarget | None) -> None:
        """Scrape ``target`` from now on (its baseline scrape awaited); None: nothing to scrape."""
        if self.scraper is not None and target is not None:
            await self.scraper.add(target)

    async def boundary(self, instances: Iterable[str] | None = None) -> None:
        """A forced scrape of ``instances`` (default: all), awaited: a phase boundary. It waits
        ``BOUNDARY_SETTLE_S`` first: a server may record a request's figures a moment after its
        last byte (vLLM does), and the phase's last requests belong to the phase."""
        if self.scraper is not None:
            await asyncio.sleep(BOUNDARY_SETTLE_S)
            await self.scraper.scrape_now(instances)

    async def detach(self, instance: str) -> None:
        if self.scraper is not None:
            await self.scraper.remove(instance)

    async def finish(self, windows: list[Window], *, interrupted: bool) -> None:
        """Queries (see the module docstring), then stop and write ``session.json``. Never raises
        for a server's failure; re-raises a failure to write the run directory."""
        if not self._started:
            return
        try:
            if self.receiver is not None and not interrupted:
                await asyncio.sleep(self.spec.otlp.settle_s)
            if self.spec.prometheus is not None and windows:
                await self._query(windows, interrupted)
        finally:
            if self.scraper is not None:
                await self.scraper.close()
            if self.receiver is not None:
                await self.receiver.close()
            assert self.writer is not None
            try:
                self.writer.close()
            finally:
                write_json_atomic(self.directory / SESSION_FILE, self.session())

    async def _query(self, windows: list[Window], interrupted: bool) -> None:
        spec = self.spec.prometheus
        assert spec is not None
        latest = max(w.end_s for w in windows)
        wait = latest + spec.settle_s - (time.monotonic() - self._t0)
        if wait > 0 and not interrupted:
            await asyncio.sleep(wait)
        client = PrometheusClient(
            spec.url,
            token=self._token,
            timeout_s=spec.timeout_s,
            tls_insecure=spec.tls_insecure,
            ca_file=spec.ca_file,
            redact=self._redact,
        )
        queries = resolve(tuple(spec.query_sets), dict(spec.queries), spec.rate_window_s)
        outcomes = await run_queries(
            client,
            queries,
            windows,
            anchor_unix=self.anchor_unix,
            step_s=spec.step_s,
            writer=self.writer,
        )
        failed = [o for o in outcomes if not o.ok]
        self._queries = {
            "url": self._redact(spec.url),
            "queries": len(outcomes),
            "failed": len(failed),
            "series": sum(o.series for o in outcomes),
            "empty": sorted({o.query.name for o in outcomes if o.ok and o.series == 0}),
        }
        if failed:
            first = failed[0].error or "unknown error"
            self.warnings.append(
                f"Prometheus: {len(failed)} of {len(outcomes)} queries failed (first: {first});"
                " their windows are gaps in metrics/prometheus-*.parquet"
            )

    def session(self) -> dict[str, Any]:
        """The content of ``metrics/session.json``."""
        scraper = self.scraper
        targets: dict[str, Any] = {}
        if scraper is not None:
            for name, stats in scraper.stats.items():
                targets[name] = {
                    "url": stats.url,
                    "scrapes": stats.scrapes,
                    "gaps": stats.gaps,
                    "last_error": stats.last_error,
                }
        data: dict[str, Any] = {
            "format_version": 1,
            "anchor_unix": self.anchor_unix,
            "scrape": None
            if scraper is None
            else {
                "interval_s": scraper.interval_s,
                "period_s": scraper.period_s,
                "timeout_s": scraper.timeout_s,
                "ticks": scraper.ticks,
                "missed_ticks": scraper.missed_ticks,
                "targets": targets,
            },
            "prometheus": self._queries or None,
            "otlp": None
            if self.receiver is None
            else {
                "endpoint": self.receiver.endpoint,
                "request_spans": self.receiver.request_spans,
                "other_spans": self.receiver.other_spans,
            },
            "warnings": [self._redact(w) for w in self.warnings],
        }
        with contextlib.suppress(AttributeError):
            if self.writer is not None:
                data["parse_cpu_s"] = self.writer.parse_cpu_s
        return data

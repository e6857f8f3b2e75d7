"""Scrapes instances' Prometheus endpoints at a fixed interval, beside the load, never in it.

Terms. A *target* is one instance's metrics URL (:class:`ScrapeTarget`). A *tick* comes every
``interval_s`` on a fixed schedule (tick k at start + k x interval, so lateness does not
accumulate); at each tick every target is scraped once, at most ``concurrency`` at a time, each
scrape bounded by ``timeout_s``. A scrape that fails (connection refused, timeout, an HTTP status
other than 200, a body over ``MAX_BODY_BYTES``) is a *gap*: a row in ``metrics/scrapes-*.parquet``
with the reason, never an exception. A target whose previous scrape is still running at a tick,
and every tick the loop missed (an overloaded event loop), are gaps too. A *forced* scrape
(:meth:`Scraper.scrape_now`, and the ones :meth:`Scraper.add` and :meth:`Scraper.remove` await)
happens at once, outside the schedule: phase boundaries need a sample right before the first
request and right after the last, whatever the interval.

*Budget.* At most ``max_scrapes_per_s`` periodic scrapes a second: with more targets than a
tick's share, they are scraped round-robin, each every k ticks (k = targets / share, rounded
up), so the harness's cost stays bounded whatever the instance count (``period_s`` says the
effective interval; forced scrapes are never skipped).

A sample's time ``t_s`` is the midpoint of the scrape's request and response on the run's
monotonic clock (offset from ``t0``), the clock of the request records. The raw text goes to
the :class:`~servingperf.results.metric_writer.MetricWriter`, whose thread parses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import aiohttp

from servingperf.results.metric_writer import MetricWriter, ScrapeResult
from servingperf.telemetry.http_body import read_body

MAX_BODY_BYTES = 32 * 1024 * 1024
Clock = Callable[[], float]


def _keep(text: str) -> str:
    return text


@dataclass(frozen=True, slots=True)
class ScrapeTarget:
    """One instance's metrics endpoint. ``headers`` (an ``Authorization``, a ``Host``) are sent,
    never stored; ``url`` is stored as ``redact`` gives it back."""

    instance: str
    url: str
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    tls_insecure: bool = False


@dataclass(slots=True)
class TargetStats:
    url: str = ""  # as stored (redacted)
    scrapes: int = 0
    gaps: int = 0
    last_error: str | None = None


class Scraper:
    """The scrape loop of one run; :meth:`start` before use, :meth:`close` after."""

    def __init__(
        self,
        writer: MetricWriter,
        t0: float,
        *,
        interval_s: float = 1.0,
        timeout_s: float = 0.5,
        concurrency: int = 64,
        max_scrapes_per_s: float = 250.0,
        redact: Callable[[str], str] = _keep,
        clock: Clock = time.monotonic,
    ) -> None:
        if interval_s <= 0 or timeout_s <= 0:
            raise ValueError("interval_s and timeout_s must be > 0")
        self._writer = writer
        self._t0 = t0
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._slots = asyncio.Semaphore(concurrency)
        self._per_tick = max(1, math.floor(max_scrapes_per_s * interval_s))
        self._redact = redact
        self._clock = clock
        self._targets: dict[str, ScrapeTarget] = {}
        self._busy: dict[str, int] = {}  # instance -> scrapes of it in flight
        self.stats: dict[str, TargetStats] = {}
        self._session: aiohttp.ClientSession | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.ticks = 0
        self.missed_ticks = 0
        self.period_s = interval_s  # the effective interval of each target (see Budget)

    @property
    def targets(self) -> tuple[ScrapeTarget, ...]:
        return tuple(self._targets.values())

    def start(self) -> None:
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(
                self._loop(), name="servingperf-scraper"
            )

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                auto_decompress=True,
            )
        return self._session

    async def add(self, target: ScrapeTarget) -> None:
        """Scrape ``target`` from now on; returns after its first (baseline) scrape."""
        self._targets[target.instance] = target
        self.stats.setdefault(target.instance, TargetStats()).url = self._redact(target.url)
        await self._scrape(target)

    async def remove(self, instance: str) -> None:
        """One last scrape of ``instance``, then no more; a no-op for an unknown one."""
        target = self._targets.get(instance)
        if target is None:
            return
        await self._scrape(target)
        self._targets.pop(instance, None)

    async def scrape_now(self, instances: Iterable[str] | None = None) -> None:
        """Scrape the given instances (default: every target) at once and wait for it."""
        names = list(self._targets) if instances is None else list(instances)
        targets = [self._targets[n] for n in names if n in self._targets]
        await asyncio.gather(*(self._scrape(t) for t in targets))

    async def close(self) -> None:
        task, self._loop_task = self._loop_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for pending in list(self._tasks):
            pending.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _loop(self) -> None:
        start = self._clock()
        tick = 0
        while True:
            tick += 1
            due = start + tick * self.interval_s
            delay = due - self._clock()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                behind = math.floor(-delay / self.interval_s)
                if behind:  # the loop could not keep up: those ticks are gaps for every target
                    self.missed_ticks += behind
                    tick += behind
                    for target in self._targets.values():
                        self._gap(target, self._clock(), 0.0, f"{behind} scrape ticks missed")
            self.ticks += 1
            targets = list(self._targets.values())
            every = max(1, math.ceil(len(targets) / self._per_tick))
            self.period_s = max(self.period_s, every * self.interval_s)
            for index, target in enumerate(targets):
                if every > 1 and index % every != tick % every:
                    continue
                if target.instance in self._busy:
                    self._gap(target, self._clock(), 0.0, "previous scrape still running")
                    continue
                task = asyncio.get_running_loop().create_task(self._scrape(target))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _scrape(self, target: ScrapeTarget) -> None:
        name = target.instance
        busy = self._busy
        busy[name] = busy.get(name, 0) + 1
        try:
            async with self._slots:
                began = self._clock()
                text, error = await self._fetch(target)
                ended = self._clock()
        finally:
            if busy[name] <= 1:
                del busy[name]
            else:
                busy[name] -= 1
        stats = self.stats.setdefault(name, TargetStats())
        stats.scrapes += 1
        if error is not None:
            stats.gaps += 1
            stats.last_error = error
        self._writer.put_scrape(
            ScrapeResult(
                t_s=(began + ended) / 2 - self._t0,
                instance=name,
                url=self._redact(target.url),
                duration_s=ended - began,
                text=text,
                error=None if error is None else self._redact(error),
            )
        )

    def _gap(self, target: ScrapeTarget, now: float, duration_s: float, reason: str) -> None:
        stats = self.stats.setdefault(target.instance, TargetStats())
        stats.gaps += 1
        stats.last_error = reason
        self._writer.put_scrape(
            ScrapeResult(
                now - self._t0, target.instance, self._redact(target.url), duration_s, None, reason
            )
        )

    async def _fetch(self, target: ScrapeTarget) -> tuple[str | None, str | None]:
        """The exposition text, or None and why not (never raises for a server's failure)."""
        headers = dict(target.headers)
        headers.setdefault("Accept", "text/plain;version=0.0.4")
        try:
            async with self._get_session().get(
                target.url, headers=headers, ssl=not target.tls_insecure
            ) as response:
                if response.status != 200:
                    return None, f"HTTP {response.status}"
                body = await read_body(response, MAX_BODY_BYTES)
        except TimeoutError:
            return None, f"no answer within {self.timeout_s:g} s"
        except aiohttp.ClientError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:300]
        except OSError as exc:
            return None, f"{exc.strerror or exc}"[:300]
        if body is None:
            return None, f"body over {MAX_BODY_BYTES} bytes"
        return body.decode("utf-8", errors="replace"), None

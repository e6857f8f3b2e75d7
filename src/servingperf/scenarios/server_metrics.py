"""Where the scenarios meet the server metrics: each instance's metrics endpoint, discovered from
its platform, and the windows the Prometheus queries cover.

Discovery. The metrics endpoint of an instance is its serving URL's scheme and host, on
``metrics.scrape.port`` when given (else the serving port), with ``metrics.scrape.path``: on the
local platform the emulator's HTTP port (every emulator serves ``/metrics``, gRPC ones too); on
KServe the instance's endpoint (through the ingress, with its ``Host`` header, as the requests
go); on the static platform the endpoint's URL. A gRPC endpoint (``host:port``, no scheme) is
scraped over plain HTTP only when ``metrics.scrape.port`` names the port its metrics are on. The
instance's bearer token, if it has one, goes with the scrape, as with its requests.

Query windows. One per phase name: the union of that phase's windows over the instances, merged
where they overlap (instances loaded together are one window), named after its instance when it
has one; the Prometheus series are the cluster's, not the instance's.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from servingperf.model.specs import MetricsSpec
from servingperf.model.target import Target
from servingperf.platforms.base import Instance
from servingperf.results.rundir import PhaseWindow
from servingperf.telemetry.prometheus_api import Window
from servingperf.telemetry.scraper import ScrapeTarget


def scrape_target(instance: Instance, target: Target, spec: MetricsSpec) -> ScrapeTarget | None:
    """The instance's metrics endpoint (see the module docstring), or None when it has none."""
    scrape = spec.scrape
    base = instance.url or target.url
    if not base:
        return None
    if "://" not in base:  # a gRPC host:port
        if scrape.port is None:
            return None
        base = f"http://{base}"
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    netloc = parts.netloc.rsplit("@", 1)[-1]
    if scrape.port is not None:
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        netloc = f"{host}:{scrape.port}"
    url = urlunsplit((parts.scheme, netloc, scrape.path, "", ""))
    headers: list[tuple[str, str]] = []
    if target.host_header:
        headers.append(("Host", target.host_header))
    if target.token:
        headers.append(("Authorization", f"Bearer {target.token}"))
    return ScrapeTarget(
        instance=instance.request.name,
        url=url,
        headers=tuple(headers),
        tls_insecure=target.tls_insecure,
    )


def query_windows(phases: list[PhaseWindow]) -> list[Window]:
    """The Prometheus query windows of a run's phases (see the module docstring)."""
    by_phase: dict[str, list[tuple[float, float, str]]] = {}
    for w in phases:
        end = w.end_s if w.end_s is not None else w.measure_end_s
        if end is None:
            continue
        by_phase.setdefault(w.phase, []).append((w.start_s, end, w.instance))
    windows: list[Window] = []
    for phase, spans in by_phase.items():
        spans.sort()
        start, end, names = spans[0][0], spans[0][1], {spans[0][2]}
        for begin, finish, instance in spans[1:]:
            if begin <= end:  # overlaps the current window: the same load
                end = max(end, finish)
                names.add(instance)
                continue
            windows.append(_window(phase, start, end, names))
            start, end, names = begin, finish, {instance}
        windows.append(_window(phase, start, end, names))
    return windows


def _window(phase: str, start: float, end: float, names: set[str]) -> Window:
    return Window(phase, next(iter(names)) if len(names) == 1 else "", start, end)

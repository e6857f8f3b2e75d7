"""A real Prometheus for the tests (Debian's ``prometheus`` package), started on loopback with a
generated configuration, and a bearer-token gate in front of its HTTP API.

Prometheus itself checks no bearer tokens (a cluster puts a proxy in front of it: OpenShift's
Thanos querier sits behind one); :class:`TokenGate` is that proxy: it forwards ``/api/v1/*`` to
Prometheus only with the right ``Authorization: Bearer`` header and answers 401 otherwise.

The binary is found on ``PATH`` (``scripts/test.sh`` installs the package); without it the test
is skipped, except when ``CI=true``, where a missing binary is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

START_TIMEOUT_S = 30.0


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("prometheus is not installed (scripts/test.sh installs Debian's package)")
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningPrometheus:
    url: str
    process: subprocess.Popen[bytes]
    folder: Path

    def log(self) -> str:
        return (self.folder / "prometheus.log").read_text(errors="replace")[-3000:]


def write_config(folder: Path, jobs: dict[str, Iterable[str]], interval_s: float = 1.0) -> Path:
    """A configuration scraping each job's ``host:port`` targets every ``interval_s``."""
    lines = [
        "global:",
        f"  scrape_interval: {int(interval_s * 1000)}ms",
        f"  scrape_timeout: {int(interval_s * 800)}ms",
        "scrape_configs:",
    ]
    for job, targets in jobs.items():
        quoted = ", ".join(f"'{t}'" for t in targets)
        lines += [f"  - job_name: '{job}'", "    static_configs:", f"      - targets: [{quoted}]"]
    path = folder / "prometheus.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def spawn(folder: Path, jobs: dict[str, Iterable[str]], interval_s: float) -> RunningPrometheus:
    binary = prometheus_binary()
    folder.mkdir(parents=True, exist_ok=True)
    config = write_config(folder, jobs, interval_s)
    port = free_port()
    with (folder / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return RunningPrometheus(f"http://127.0.0.1:{port}", process, folder)


def stop(running: RunningPrometheus) -> None:
    running.process.terminate()
    try:
        running.process.wait(10)
    except subprocess.TimeoutExpired:
        running.process.kill()
        running.process.wait()


@contextlib.asynccontextmanager
async def prometheus(
    folder: Path, jobs: dict[str, Iterable[str]], interval_s: float = 1.0
) -> AsyncIterator[RunningPrometheus]:
    """Prometheus scraping ``jobs``; stopped (its data stays in ``folder``) after."""
    running = await asyncio.to_thread(spawn, folder, jobs, interval_s)
    try:
        await _wait_ready(running)
        yield running
    finally:
        await asyncio.to_thread(stop, running)


async def _wait_ready(running: RunningPrometheus) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            if running.process.poll() is not None:
                raise AssertionError(f"prometheus exited: {running.log()}")
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with session.get(f"{running.url}/-/ready") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise AssertionError(f"prometheus not ready in {START_TIMEOUT_S} s: {running.log()}")


async def wait_for_series(url: str, query: str, timeout_s: float = 20.0) -> None:
    """Until an instant ``query`` returns a series (Prometheus has scraped its target)."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while time.monotonic() < deadline:
            async with session.get(f"{url}/api/v1/query", params={"query": query}) as response:
                data = await response.json()
            if data.get("data", {}).get("result"):
                return
            await asyncio.sleep(0.25)
    raise AssertionError(f"no series for {query!r} within {timeout_s} s")


class TokenGate:
    """A reverse proxy to ``upstream`` that demands ``Authorization: Bearer <token>``."""

    def __init__(self, upstream: str, token: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.token = token
        self.refused = 0
        self.forwarded = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> TokenGate:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            self.refused += 1
            return web.json_response({"status": "error", "error": "unauthorized"}, status=401)
        self.forwarded += 1
        body = await request.read()
        headers = {"Content-Type": request.headers.get("Content-Type", "")}
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method,
                f"{self.upstream}{request.path_qs}",
                data=body,
                headers=headers,
            ) as response,
        ):
            payload = await response.read()
            return web.Response(
                status=response.status, body=payload, content_type="application/json"
            )

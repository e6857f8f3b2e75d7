"""The local platform: each model instance is a real emulator server process on its own loopback
port, grouped by namespace (a folder). created = process spawned; ready = first successful
``GET /health`` (probed every ``probe_interval_s``). Clock source: the harness (no platform clock).

Teardown is certain: every server runs in its own process group and is told to die with its
parent (PR_SET_PDEATHSIG in the emulator), ``delete`` sends SIGTERM then SIGKILL to the group, and
``close`` removes whatever is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from servingperf.errors import DeployError
from servingperf.model.deployments import DeploymentRecord, DeploymentStatus
from servingperf.platforms.base import Instance, InstanceRequest

_STOP_GRACE_S = 5.0


class LocalPlatform:
    name = "local"

    def __init__(
        self,
        work_dir: Path,
        t0: float,
        host: str = "127.0.0.1",
        probe_interval_s: float = 0.1,
        ground_truth: bool = True,
    ) -> None:
        self._work_dir = work_dir
        self._t0 = t0
        self._host = host
        self._probe_interval_s = probe_interval_s
        self._ground_truth = ground_truth
        self._instances: list[Instance] = []
        self._session: aiohttp.ClientSession | None = None

    @property
    def instances(self) -> list[Instance]:
        return list(self._instances)

    def _dir(self, request: InstanceRequest) -> Path:
        path = self._work_dir / request.namespace / request.name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def command(self, request: InstanceRequest, folder: Path) -> list[str]:
        emulator = request.model.emulator
        if emulator is None:
            raise DeployError(f"{request.name}: the local platform needs an 'emulator' section")
        argv = [
            sys.executable,
            "-m",
            "servingperf",
            "emulator",
            "serve",
            "--profile",
            emulator.profile,
            "--host",
            self._host,
            "--port",
            "0",
            "--port-file",
            str(folder / "port"),
            "--seed",
            str(request.seed),
            "--model-id",
            request.model.request_model,
        ]
        if self._ground_truth:
            argv += ["--ground-truth", str(folder / "ground_truth.jsonl")]
        if emulator.load_time_s is not None:
            argv += ["--load-time", str(emulator.load_time_s)]
        for key, value in sorted(emulator.overrides.items()):
            argv += ["--set", f"{key}={value}"]
        return argv

    async def deploy(self, request: InstanceRequest) -> Instance:
        folder = self._dir(request)
        (folder / "port").unlink(missing_ok=True)
        record = DeploymentRecord(
            instance=request.name,
            namespace=request.namespace,
            model=request.model.request_model,
            platform=self.name,
            endpoint=None,
            clock_source="harness",
            created_at=None,
            ready_at=None,
            t_created_s=None,
            t_ready_s=None,
            t_first_validated_s=None,
            t_deleted_s=None,
            status=DeploymentStatus.CREATED.value,
            failure_reason=None,
        )
        log = (folder / "server.log").open("ab")
        try:
            process = await asyncio.create_subprocess_exec(
                *self.command(request, folder),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        except OSError as exc:
            raise DeployError(f"{request.name}: cannot start the emulator: {exc}") from exc
        finally:
            log.close()
        record.created_at = datetime.now(UTC)
        record.t_created_s = time.monotonic() - self._t0
        instance = Instance(request=request, record=record, handle=process)
        self._instances.append(instance)
        return instance

    async def wait_ready(self, instance: Instance, timeout_s: float) -> None:
        process = _process(instance)
        folder = self._dir(instance.request)
        deadline = time.monotonic() + timeout_s
        url: str | None = None
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0))
        while time.monotonic() < deadline:
            if process.returncode is not None:
                self._fail(
                    instance,
                    f"server exited with code {process.returncode} while starting"
                    f" ({_tail(folder / 'server.log')})",
                )
            if url is None:
                url = _read_port_url(folder / "port", self._host)
            if url is not None and await self._healthy(url):
                instance.url = url
                instance.record.endpoint = url
                instance.record.ready_at = datetime.now(UTC)
                instance.record.t_ready_s = time.monotonic() - self._t0
                instance.record.status = DeploymentStatus.READY.value
                return
            await asyncio.sleep(self._probe_interval_s)
        self._fail(instance, f"not ready after {timeout_s:g} s")

    def _fail(self, instance: Instance, reason: str) -> None:
        instance.record.status = DeploymentStatus.FAILED.value
        instance.record.failure_reason = reason
        raise DeployError(f"{instance.request.name}: {reason}")

    async def _healthy(self, url: str) -> bool:
        assert self._session is not None
        try:
            async with self._session.get(f"{url}/health") as response:
                return response.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False

    async def delete(self, instance: Instance) -> None:
        process = _process(instance)
        if process.returncode is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), _STOP_GRACE_S)
            except TimeoutError:
                _signal_group(process.pid, signal.SIGKILL)
                await process.wait()
        if instance.record.t_deleted_s is None:
            instance.record.t_deleted_s = time.monotonic() - self._t0
            if instance.record.status != DeploymentStatus.FAILED.value:
                instance.record.status = DeploymentStatus.DELETED.value

    async def close(self) -> None:
        """Delete every instance still running (all at once), then close the probe session."""
        try:
            await asyncio.gather(*(self.delete(i) for i in self._instances))
        finally:
            if self._session is not None:
                await self._session.close()
                self._session = None

    def kill_all_now(self) -> None:
        """Synchronous last resort (second Ctrl-C, atexit): SIGKILL every process group."""
        for instance in self._instances:
            process = _process(instance)
            if process.returncode is None:
                _signal_group(process.pid, signal.SIGKILL)


def _process(instance: Instance) -> asyncio.subprocess.Process:
    process = instance.handle
    if not isinstance(process, asyncio.subprocess.Process):
        raise DeployError(f"{instance.request.name}: not deployed by this local platform")
    return process


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def _read_port_url(path: Path, host: str) -> str | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    if not text.isdigit():
        return None
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{int(text)}"


def _tail(path: Path, lines: int = 3) -> str:
    try:
        content = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no server log"
    return " | ".join(content[-lines:]) or "empty server log"

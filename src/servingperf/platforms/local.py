"""The local platform: each model instance is a real server process on its own loopback port,
grouped by namespace (a folder): the embedded emulator (``models[].emulator``) or a real serving
engine started from the scenario's command (``models[].server``: vLLM, TGI, a caikit runtime).
created = process spawned; ready = first successful ``GET /health`` (an engine's ``ready_path``),
probed every ``probe_interval_s``. Clock source: the harness (no platform clock). Each server's
output goes to ``server.log`` in its folder; a server that exits while starting or is not ready
within the timeout fails the instance with the log's last lines in the reason.

*Engines.* The emulator picks its own port (port 0) and writes it to a file; an engine cannot, so
the platform picks a free loopback port (bind to port 0, read it, close) and passes it through the
command's ``{port}`` (and ``{grpc_port}``) placeholder: another process could take the port in
between, in which case the engine fails to bind and the instance fails with its log.

Terms. A *slot* is the right to have one instance starting (spawned, not yet ready or failed):
``deploy_concurrency`` slots exist, and ``deploy`` waits for one before spawning, so at most that
many servers load at once; the wait is not part of the load time. *Limits* (:class:`LocalLimits`)
are what an unprivileged process can impose on its children without cgroups: an address-space
ceiling (``RLIMIT_AS``), a CPU affinity set and a niceness, applied in the child before ``exec``.

Teardown is certain, in four layers: ``delete`` stops the server's process group (each server
leads its own, and an engine's engine-core and worker processes are in it): SIGTERM, SIGKILL after
a grace period, then a sweep of what the leader left (:mod:`servingperf.platforms.processes`);
``close`` does that for every instance; every server is told to die with the harness
(``PR_SET_PDEATHSIG``, armed in the child before ``exec``, so even a harness killed during the
server's start-up takes it along); and every server, with every process it forks, carries a
marker in its environment and a pid file in the state directory, so that
:func:`servingperf.platforms.reaper.reap_stale` (run at this platform's first deploy, and by
``servingperf cleanup``) removes servers whose harness died anyway.

*Devices.* Instances whose request lists ``device_model_ids`` (the scenario placed several
instances on one emulated device, ``emulator.device``) share one emulator process per (namespace,
device): the first deployed starts it with every model id of the device, the others join it (their
``created`` is when they joined, ``ready`` when the shared server first answers), and it stops when
the last of them is deleted. They must have the same emulator settings (profile, overrides, load
time, faults, gRPC or not), since one process has one of each.

Children are started with :class:`subprocess.Popen` and watched with ``waitid(WNOWAIT)``: no child
watcher threads (one per child with asyncio's default), and an exited server stays unreaped until
``delete`` has swept its process group, so the group id cannot be recycled under us.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from servingperf.emulator.faults import fault_args
from servingperf.errors import ConfigError, DeployError
from servingperf.model.deployments import DeploymentRecord, DeploymentStatus
from servingperf.model.server_spec import expand
from servingperf.platforms.base import Instance, InstanceRequest
from servingperf.platforms.processes import (
    child_setup,
    exit_code,
    log_tail,
    signal_group,
    spawn,
    stop_group,
)
from servingperf.platforms.reaper import (
    ReapReport,
    default_state_dir,
    owner_marker,
    reap_stale,
    server_environment,
)
from servingperf.results.rundir import write_json_atomic

_MIB = 1024 * 1024
_LOG_LINES = 5  # of a server's log, in the reason of a failed start


@dataclass(frozen=True, slots=True)
class LocalLimits:
    """Per-instance limits of local servers; None / 0 means no limit.

    ``memory_limit_mib`` caps the address space (``RLIMIT_AS``): virtual memory, a coarse but
    unprivileged ceiling (an emulator maps about 160 MiB at rest; allocations beyond the cap fail,
    so the server crashes or refuses work rather than swapping the machine). ``cpus`` pins each
    server to these CPU numbers (``sched_setaffinity``); ``nice`` lowers their priority (0-19) so
    the harness keeps its CPU share.
    """

    memory_limit_mib: int | None = None
    cpus: tuple[int, ...] | None = None
    nice: int = 0

    def problems(self) -> list[str]:
        """What is wrong with these limits on this machine (empty when usable)."""
        problems: list[str] = []
        if self.memory_limit_mib is not None and self.memory_limit_mib < 64:
            problems.append(f"memory_limit_mib must be >= 64, got {self.memory_limit_mib}")
        if not 0 <= self.nice <= 19:
            problems.append(f"nice must be between 0 and 19, got {self.nice}")
        if self.cpus is not None:
            if not self.cpus:
                problems.append("cpus must name at least one CPU")
            elif hasattr(os, "sched_getaffinity"):
                usable = os.sched_getaffinity(0)
                outside = sorted(set(self.cpus) - usable)
                if outside:
                    problems.append(f"cpus {outside} are not usable here; usable: {sorted(usable)}")
        return problems


@dataclass(frozen=True, slots=True)
class EngineLaunch:
    """How to start one real engine (``models[].server``) and where it will answer."""

    argv: list[str]
    env: dict[str, str]
    url: str
    grpc_url: str | None
    ready_path: str


@dataclass(slots=True)
class _Server:
    """Platform-private state of one server process (``Instance.handle``), shared by the
    instances of a device (``users``: their names)."""

    process: subprocess.Popen[bytes]
    folder: Path
    pid_file: Path | None
    holds_slot: bool
    users: set[str] = field(default_factory=set)
    device: tuple[str, str] | None = None  # (namespace, device) of a shared server
    model_ids: tuple[str, ...] = ()
    settings: tuple[object, ...] = ()
    # An engine's addresses, known before it starts (the emulator's come from its port files).
    url: str | None = None
    grpc_url: str | None = None
    ready_path: str = "/health"


def device_key(request: InstanceRequest) -> tuple[str, str] | None:
    """(namespace, device) when the request asks to share its device's server, else None."""
    emulator = request.model.emulator
    if emulator is None or emulator.device is None or not request.device_model_ids:
        return None
    return request.namespace, emulator.device


def emulator_settings(request: InstanceRequest) -> tuple[object, ...]:
    """What one emulator process has one of: instances sharing a process must agree on it."""
    emulator = request.model.emulator
    if emulator is None:
        return ()
    faults = emulator.faults.model_dump(mode="json") if emulator.faults is not None else None
    return (
        emulator.profile,
        tuple(sorted(emulator.overrides.items())),
        emulator.load_time_s,
        repr(faults),
        request.model.protocol.value.endswith("-grpc"),
    )


def adapter_ids(request: InstanceRequest) -> tuple[str, ...]:
    """The served model ids that are LoRA adapters of the request's model (its own id excluded:
    a weight on the base model's name sends base-model requests)."""
    if request.model.adapters is None:
        return ()
    own = request.model.request_model
    return tuple(name for name in request.model.adapters.weights if name != own)


def served_model_ids(request: InstanceRequest) -> tuple[str, ...]:
    """The model ids the request's server answers to: the device's (repeats served once), or its
    own; then the names of the model's LoRA adapters (``models[].adapters``), which the emulator
    serves on the same engine, as vLLM serves ``--lora-modules`` beside its base model."""
    own = request.model.request_model
    adapters = tuple(request.model.adapters.weights) if request.model.adapters else ()
    if device_key(request) is None:
        return tuple(dict.fromkeys((own, *adapters)))
    ids = tuple(dict.fromkeys((*request.device_model_ids, *adapters)))
    if own not in ids:
        raise DeployError(
            f"{request.name}: its model id {own!r} is not among the device's model ids"
            f" ({', '.join(ids)})"
        )
    return ids


def _child_setup(limits: LocalLimits, parent_pid: int) -> Callable[[], None]:
    return child_setup(
        parent_pid,
        memory_bytes=limits.memory_limit_mib * _MIB if limits.memory_limit_mib else None,
        cpus=set(limits.cpus) if limits.cpus else None,
        nice=limits.nice,
    )


def _free_port(host: str) -> int:
    """A port free on ``host`` just now (see the module docstring for the race this leaves)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class LocalPlatform:
    name = "local"

    def __init__(
        self,
        work_dir: Path,
        t0: float,
        host: str = "127.0.0.1",
        probe_interval_s: float = 0.1,
        ground_truth: bool = True,
        *,
        deploy_concurrency: int | None = None,
        limits: LocalLimits | None = None,
        state_dir: Path | None = None,
        run_id: str | None = None,
        reap_on_start: bool = True,
    ) -> None:
        self._work_dir = work_dir
        self._t0 = t0
        self._host = host
        self._probe_interval_s = probe_interval_s
        self._ground_truth = ground_truth
        self._limits = limits or LocalLimits()
        problems = self._limits.problems()
        if problems:
            raise ConfigError("local platform limits: " + "; ".join(problems))
        if deploy_concurrency is not None and deploy_concurrency < 1:
            raise ConfigError(f"deploy_concurrency must be >= 1, got {deploy_concurrency}")
        self._slots = asyncio.Semaphore(deploy_concurrency) if deploy_concurrency else None
        self._state_dir = (state_dir or default_state_dir()).expanduser().resolve()
        self._run_id = run_id or f"local-{os.getpid()}-{secrets.token_hex(4)}"
        self._reap_on_start = reap_on_start
        self._started = False
        self._instances: list[Instance] = []
        self._devices: dict[tuple[str, str], _Server] = {}  # shared servers, by (namespace, device)
        self._device_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._session: aiohttp.ClientSession | None = None
        self.reaped: ReapReport | None = None  # what the first deploy's clean-up did

    @property
    def instances(self) -> list[Instance]:
        return list(self._instances)

    @property
    def run_id(self) -> str:
        return self._run_id

    @property
    def state_dir(self) -> Path:
        return self._state_dir

    @property
    def run_state_dir(self) -> Path:
        """This platform's folder in the state directory (``owner.json``, ``<pid>.json``)."""
        return self._state_dir / self._run_id

    def _dir(self, request: InstanceRequest) -> Path:
        key = device_key(request)
        if key is None:
            path = self._work_dir / request.namespace / request.name
        else:  # a shared server's folder is its device's
            path = self._work_dir / request.namespace / f"device-{_safe(key[1])}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def engine_command(self, request: InstanceRequest, folder: Path) -> EngineLaunch:
        """An engine's argv and environment additions with the placeholders filled in, and the
        addresses chosen for it (see the module docstring)."""
        server = request.model.server
        if server is None:
            raise DeployError(f"{request.name}: no 'server' section to start")
        port = _free_port(self._host)
        grpc_port = _free_port(self._host) if server.uses_grpc_port else None
        values = {
            "host": self._host,
            "port": str(port),
            "grpc_port": "" if grpc_port is None else str(grpc_port),
            "model_id": request.model.request_model,
            "instance_dir": str(folder),
        }
        # A Python engine writing to a file buffers its output: unbuffered, the log a failure
        # quotes is the log as it stands (the scenario's env may still say otherwise).
        env = {"PYTHONUNBUFFERED": "1"}
        env.update({key: expand(value, values) for key, value in server.env.items()})
        return EngineLaunch(
            argv=[expand(part, values) for part in server.command],
            env=env,
            url=f"http://{_hostport(self._host, port)}",
            grpc_url=None if grpc_port is None else _hostport(self._host, grpc_port),
            ready_path=server.ready_path,
        )

    def command(self, request: InstanceRequest, folder: Path) -> list[str]:
        emulator = request.model.emulator
        if emulator is None:
            raise DeployError(
                f"{request.name}: the local platform needs an 'emulator' or a 'server' section"
            )
        # The emulator's own lean entry point (not the Typer CLI): one process per instance, so
        # every module it imports is paid once per instance (docs/emulator.md, Memory).
        argv = [
            sys.executable,
            "-m",
            "servingperf.emulator",
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
        ]
        for model_id in served_model_ids(request):
            argv += ["--model-id", model_id]
        for adapter in adapter_ids(request):
            argv += ["--adapter-id", adapter]
        if self._ground_truth:
            argv += ["--ground-truth", str(folder / "ground_truth.jsonl")]
        if emulator.load_time_s is not None:
            argv += ["--load-time", str(emulator.load_time_s)]
        for key, value in sorted(emulator.overrides.items()):
            argv += ["--set", f"{key}={value}"]
        argv += fault_args(emulator.faults)  # injected faults (servingperf.emulator.faults)
        if request.model.protocol.value.endswith("-grpc"):  # caikit, TGIS, KServe v2 over gRPC
            argv += ["--grpc-port", "0", "--grpc-port-file", str(folder / "grpc_port")]
        return argv

    async def _start(self) -> None:
        """Once, before the first server: reap what dead harnesses left, then claim our folder."""
        self._started = True
        if self._reap_on_start:
            self.reaped = await asyncio.to_thread(reap_stale, self._state_dir)
        try:
            self.run_state_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(
                self.run_state_dir / "owner.json",
                {
                    "run_id": self._run_id,
                    "owner": owner_marker(),
                    "pid": os.getpid(),
                    "work_dir": str(self._work_dir),
                    "started_at": datetime.now(UTC).isoformat(),
                },
            )
        except OSError as exc:
            raise DeployError(f"cannot write the state directory {self._state_dir}: {exc}") from exc

    async def deploy(self, request: InstanceRequest) -> Instance:
        if not self._started:
            await self._start()
        key = device_key(request)
        if key is None:
            return await self._deploy(request, None)
        # One lock per device, so that instances of a device deployed at once start one server.
        async with self._device_locks.setdefault(key, asyncio.Lock()):
            if key in self._devices:
                return self._join(request, self._devices[key])
            return await self._deploy(request, key)

    async def _deploy(self, request: InstanceRequest, key: tuple[str, str] | None) -> Instance:
        folder = self._dir(request)
        for stale in ("port", "grpc_port"):  # from an earlier deploy in the same folder
            (folder / stale).unlink(missing_ok=True)
        engine: EngineLaunch | None = None
        if request.model.server is not None:
            engine = self.engine_command(request, folder)
            argv, extra_env, what = engine.argv, engine.env, "the server"
        else:
            argv, extra_env, what = self.command(request, folder), {}, "the emulator"
        if self._slots is not None:
            await self._slots.acquire()
        try:
            process = self._spawn(argv, folder, f"{request.name}: cannot start {what}", extra_env)
        except BaseException:
            if self._slots is not None:
                self._slots.release()
            raise
        server = _Server(
            process,
            folder,
            None,
            holds_slot=self._slots is not None,
            users={request.name},
            device=key,
            model_ids=served_model_ids(request),
            settings=emulator_settings(request),
        )
        if engine is not None:
            server.url, server.grpc_url = engine.url, engine.grpc_url
            server.ready_path = engine.ready_path
        server.pid_file = self._write_pid_file(request, process.pid)
        if key is not None:
            self._devices[key] = server
        return self._add(request, server)

    def _add(self, request: InstanceRequest, server: _Server) -> Instance:
        record = DeploymentRecord(
            instance=request.name,
            namespace=request.namespace,
            model=request.model.request_model,
            platform=self.name,
            clock_source="harness",
            created_at=datetime.now(UTC),
            t_created_s=time.monotonic() - self._t0,
        )
        instance = Instance(request=request, record=record, handle=server)
        self._instances.append(instance)
        return instance

    def _join(self, request: InstanceRequest, server: _Server) -> Instance:
        """Another instance of a device whose server exists: served by that process."""
        device = request.model.emulator.device if request.model.emulator else None
        if request.model.request_model not in server.model_ids:
            raise DeployError(
                f"{request.name}: model id {request.model.request_model!r} is not served on"
                f" device {device!r} (its server answers to {', '.join(server.model_ids)});"
                " list every instance's model id of the device in device_model_ids"
            )
        if emulator_settings(request) != server.settings:
            raise DeployError(
                f"{request.name}: its emulator settings differ from those of the other instances"
                f" on device {device!r}; instances sharing a device share one server and need the"
                " same profile, overrides, load time, faults and protocol family"
            )
        server.users.add(request.name)
        return self._add(request, server)

    def _spawn(
        self, argv: list[str], folder: Path, failure: str, extra_env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env.update(extra_env)
        env.update(server_environment(self._run_id, self._state_dir))
        try:
            return spawn(argv, folder / "server.log", env, _child_setup(self._limits, os.getpid()))
        except (OSError, subprocess.SubprocessError) as exc:
            raise DeployError(f"{failure}: {exc}") from exc

    def _write_pid_file(self, request: InstanceRequest, pid: int) -> Path | None:
        path = self.run_state_dir / f"{pid}.json"
        try:
            write_json_atomic(
                path,
                {
                    "pid": pid,
                    "instance": request.name,
                    "namespace": request.namespace,
                    "run_id": self._run_id,
                },
            )
        except OSError:
            return None  # only a listing for people: the marker in /proc is what counts
        return path

    def _release_slot(self, server: _Server) -> None:
        if server.holds_slot and self._slots is not None:
            server.holds_slot = False
            self._slots.release()

    async def wait_ready(self, instance: Instance, timeout_s: float) -> None:
        server = _server(instance)
        try:
            await self._wait_ready(instance, server, timeout_s)
        finally:
            self._release_slot(server)

    async def _wait_ready(self, instance: Instance, server: _Server, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        url: str | None = None
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0))
        log = server.folder / "server.log"
        while time.monotonic() < deadline:
            code = exit_code(server.process)
            if code is not None:
                self._fail(
                    instance,
                    f"server exited with code {code} while starting ({log_tail(log, _LOG_LINES)})",
                )
            if url is None:
                url = server.url or _read_port_url(server.folder / "port", self._host)
            if url is not None and await self._healthy(url + server.ready_path):
                if server.grpc_url is not None:
                    instance.grpc_url = server.grpc_url
                else:
                    grpc_port = _read_port(server.folder / "grpc_port")
                    if grpc_port is not None:
                        instance.grpc_url = _hostport(self._host, grpc_port)
                instance.url = url
                instance.record.endpoint = url
                instance.record.ready_at = datetime.now(UTC)
                instance.record.t_ready_s = time.monotonic() - self._t0
                instance.record.status = DeploymentStatus.READY.value
                return
            await asyncio.sleep(self._probe_interval_s)
        self._fail(
            instance,
            f"not ready after {timeout_s:g} s (last log lines: {log_tail(log, _LOG_LINES)})",
        )

    def _fail(self, instance: Instance, reason: str) -> None:
        instance.record.status = DeploymentStatus.FAILED.value
        instance.record.failure_reason = reason
        raise DeployError(f"{instance.request.name}: {reason}")

    async def _healthy(self, probe_url: str) -> bool:
        assert self._session is not None
        try:
            async with self._session.get(probe_url) as response:
                return response.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False

    async def delete(self, instance: Instance) -> None:
        """SIGTERM the group, SIGKILL it after the grace period, sweep it, reap the leader; a
        shared server only once the last of its instances is deleted."""
        server = _server(instance)
        server.users.discard(instance.request.name)
        if server.users:  # other instances of the device still use it
            self._mark_deleted(instance)
            return
        if server.device is not None and self._devices.get(server.device) is server:
            del self._devices[server.device]
        self._release_slot(server)
        process = server.process
        await stop_group(process)
        if server.pid_file is not None and process.returncode is not None:
            server.pid_file.unlink(missing_ok=True)
            server.pid_file = None
        self._mark_deleted(instance)

    def _mark_deleted(self, instance: Instance) -> None:
        if instance.record.t_deleted_s is None:
            instance.record.t_deleted_s = time.monotonic() - self._t0
            if instance.record.status != DeploymentStatus.FAILED.value:
                instance.record.status = DeploymentStatus.DELETED.value

    async def release(self) -> None:
        """Close the probe session and leave the servers running (``keep_deployed``). They still
        die with this process (their parent-death signal): local servers never outlive the
        harness, so a kept instance is for the caller of ``run_scenario`` to inspect."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def close(self) -> None:
        """Delete every instance still running (all at once), close the probe session, and
        remove this platform's state folder once no server of it is left."""
        try:
            await asyncio.gather(*(self.delete(i) for i in self._instances))
        finally:
            if self._session is not None:
                await self._session.close()
                self._session = None
            if self._started and all(_server(i).pid_file is None for i in self._instances):
                (self.run_state_dir / "owner.json").unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    self.run_state_dir.rmdir()

    def kill_all_now(self) -> None:
        """Synchronous last resort (second Ctrl-C, atexit): SIGKILL every process group."""
        for instance in self._instances:
            process = _server(instance).process
            if process.returncode is None:
                signal_group(process.pid, signal.SIGKILL)


def _safe(name: str) -> str:
    """``name`` usable as a folder name: anything but letters, digits, '.', '_', '-' becomes '_'."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "_"


def _server(instance: Instance) -> _Server:
    server = instance.handle
    if not isinstance(server, _Server):
        raise DeployError(f"{instance.request.name}: not deployed by this local platform")
    return server


def _read_port(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def _read_port_url(path: Path, host: str) -> str | None:
    port = _read_port(path)
    if port is None:
        return None
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"

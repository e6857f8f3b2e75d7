"""Running the emulator: as a blocking process (:func:`serve`) or inside a running event loop
(:func:`start_server`, for tests and benchmarks).

*Options* (:class:`ServeOptions`) are resolved and validated before anything binds, and every bad
value is a ``ConfigError``. Once listening, the bound port is written to ``port_file`` atomically
(a temporary file renamed over it), so a harness polling for the file never reads half a number;
the load-time countdown starts at the same moment. Modules a configuration does not use are not
imported: grpc and protobuf only with ``grpc_port``, pydantic only with ``faults`` (one process
per model instance: docs/emulator.md, Memory). :func:`serve` prints one line
``servingperf-emulator listening on http://HOST:PORT profile=P load_time_s=T``, exits 0 on SIGTERM
or SIGINT, and on Linux asks the kernel to send it SIGTERM when its parent dies
(``PR_SET_PDEATHSIG``), so that no emulator outlives a killed harness.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import math
import multiprocessing
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from servingperf.emulator.adapter_slots import AdapterSlots
from servingperf.emulator.engine import Engine
from servingperf.emulator.faults import FaultInjector, Terminate
from servingperf.emulator.groundtruth import GroundTruthLog, GroundTruthRecord
from servingperf.emulator.grpc_context import ServingContext
from servingperf.emulator.http import OpenAIFrontEnd
from servingperf.emulator.kserve_v2_rest import KServeV2RestFrontEnd
from servingperf.emulator.prefix_cache import PrefixCache
from servingperf.emulator.profiles import Profile, draw_load_time_s, resolve_profile
from servingperf.emulator.vllm_metrics import EngineMetrics
from servingperf.errors import ConfigError

if TYPE_CHECKING:  # grpc and pydantic load only when a gRPC port or a fault is asked for (memory)
    import grpc

    from servingperf.model.specs import FaultSpec

# Handlers still running this long after shutdown began are cancelled.
_SHUTDOWN_TIMEOUT_S = 5.0
# Room for a burst of simultaneous connections (a benchmark opens 1,000 at once).
_LISTEN_BACKLOG = 4096
_PR_SET_PDEATHSIG = 1
_MAX_PROCESSES = 256
_HELPER_JOIN_S = 5.0


@dataclass(slots=True)
class ServeOptions:
    """How to run one emulator server.

    ``model_ids`` are the model names served, all sharing one engine (default: the profile name).
    ``adapter_ids``, a subset of them, are LoRA adapters of the base model: with the profile's
    ``max_loras`` > 0 they hold adapter slots (:mod:`servingperf.emulator.adapter_slots`).
    ``load_time_s`` None draws the start-up time from the profile with ``seed``; 0 is ready at once.
    ``overrides`` replace profile parameters (see :func:`resolve_profile`).
    """

    profile: str
    host: str = "127.0.0.1"
    port: int = 0
    model_ids: tuple[str, ...] = ()
    adapter_ids: tuple[str, ...] = ()
    overrides: Mapping[str, float] = field(default_factory=dict)
    seed: int = 0
    load_time_s: float | None = None
    ground_truth_path: Path | None = None
    port_file: Path | None = None
    grpc_port: int | None = None  # also serve caikit, TGIS and KServe v2 over gRPC (0 = any port)
    grpc_port_file: Path | None = None
    faults: FaultSpec | None = None  # injected faults (servingperf.emulator.faults)
    # Serve HTTP from this many processes sharing the port (SO_REUSEPORT); each runs its own
    # engine, so use it to outrun a load generator (e.g. the instant profile), not to model one
    # device. Only serve() starts the extra processes; start_server() runs one.
    processes: int = 1
    reuse_port: bool = False  # bind with SO_REUSEPORT (every process of a multi-process server)


@dataclass(slots=True)
class RunningServer:
    """An emulator listening in this process's event loop."""

    host: str
    port: int
    profile: Profile
    load_time_s: float
    model_ids: tuple[str, ...]
    engine: Engine
    front_end: OpenAIFrontEnd
    _runner: web.AppRunner
    _log: GroundTruthLog
    grpc_port: int | None = None
    _grpc: grpc.aio.Server | None = None
    _faults: FaultInjector | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def ground_truth(self) -> list[GroundTruthRecord]:
        """Every generation request's record so far, in completion order (a live list)."""
        return self._log.records

    async def wait_ready(self) -> None:
        """Return once the load time has passed (the server answers 200 on ``/health``)."""
        await asyncio.sleep(self.front_end.seconds_until_ready())

    async def close(self) -> None:
        """Abort generations in flight, stop listening, close the ground truth file."""
        if self._faults is not None:
            self._faults.close()
        try:
            await self.engine.aclose()
        finally:
            try:
                if self._grpc is not None:
                    await self._grpc.stop(1.0)
                await self._runner.cleanup()
            finally:
                self._log.close()


def _validated_load_time(options: ServeOptions, profile: Profile) -> float:
    if options.load_time_s is None:
        return draw_load_time_s(profile, options.seed)
    if not math.isfinite(options.load_time_s) or options.load_time_s < 0:
        raise ConfigError(f"load_time_s must be a number >= 0, got {options.load_time_s!r}")
    return float(options.load_time_s)


def _validated_model_ids(options: ServeOptions) -> tuple[str, ...]:
    model_ids = options.model_ids or (options.profile,)
    for model_id in model_ids:
        if not model_id or not model_id.strip():
            raise ConfigError("model ids must be non-empty strings")
    if len(set(model_ids)) != len(model_ids):
        raise ConfigError(f"model ids must be unique, got {', '.join(model_ids)}")
    return tuple(model_ids)


def write_port_file(path: Path, port: int) -> None:
    """Write ``port`` to ``path`` atomically: readers see no file or the whole number."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(f"{port}\n", encoding="ascii")
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ConfigError(f"cannot write the port file {path}: {exc}") from exc


async def start_server(options: ServeOptions, terminate: Terminate | None = None) -> RunningServer:
    """Start an emulator in the running event loop; the caller must ``await server.close()``.

    ``terminate`` ends the process when an injected fault crashes it (see
    :mod:`servingperf.emulator.faults`); in-process servers leave it None.
    """
    profile = resolve_profile(options.profile, options.overrides)
    if not 0 <= options.port <= 65535:
        raise ConfigError(f"port must be in 0..65535, got {options.port}")
    if not 1 <= options.processes <= _MAX_PROCESSES:
        raise ConfigError(f"processes must be in 1..{_MAX_PROCESSES}, got {options.processes}")
    load_time_s = _validated_load_time(options, profile)
    model_ids = _validated_model_ids(options)
    log = GroundTruthLog(options.ground_truth_path)
    cache = (
        PrefixCache(profile.prefix_cache_blocks, profile.block_tokens)
        if profile.prefix_cache_blocks > 0
        else None
    )
    unknown = sorted(set(options.adapter_ids) - set(model_ids))
    if unknown:
        raise ConfigError(f"adapter ids {unknown} are not among the served model ids {model_ids}")
    slots = (
        AdapterSlots(profile.max_loras, profile.lora_load_s)
        if profile.max_loras > 0 and options.adapter_ids
        else None
    )
    engine = Engine(
        profile,
        prefix_cache=cache,
        adapter_slots=slots,
        adapter_ids=frozenset(options.adapter_ids),
    )
    metrics = EngineMetrics(engine, model_ids).attach()
    faults = None
    if options.faults is not None:
        faults = FaultInjector(options.faults, log=log.add, terminate=terminate)
    front_end = OpenAIFrontEnd(
        dict.fromkeys(model_ids, engine),
        ground_truth=log,
        load_time_s=load_time_s,
        seed=options.seed,
        faults=faults,
        metrics=metrics,
    )
    app = front_end.build_app()
    context = ServingContext(
        dict.fromkeys(model_ids, engine),
        log,
        is_ready=lambda: front_end.ready,
        seed=options.seed,
    )
    KServeV2RestFrontEnd(context).add_routes(app)
    runner = web.AppRunner(
        app,
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
    )
    grpc_server: grpc.aio.Server | None = None
    grpc_port: int | None = None
    try:
        await runner.setup()
        site = web.TCPSite(
            runner,
            options.host,
            options.port,
            backlog=_LISTEN_BACKLOG,
            reuse_port=options.reuse_port or options.processes > 1,
        )
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(f"cannot listen on {options.host}:{options.port}: {exc}") from exc
        port = int(runner.addresses[0][1])
        if options.grpc_port is not None:
            # Imported here: grpc and protobuf cost an HTTP-only process ~15 MiB it never uses.
            from servingperf.emulator.grpc_server import start_grpc_server

            grpc_server, grpc_port = await start_grpc_server(
                context, host=options.host, port=options.grpc_port
            )
        front_end.mark_listening()
        if options.grpc_port_file is not None and grpc_port is not None:
            write_port_file(options.grpc_port_file, grpc_port)
        if options.port_file is not None:
            write_port_file(options.port_file, port)
    except BaseException:
        if grpc_server is not None:
            await grpc_server.stop(None)
        await runner.cleanup()
        log.close()
        raise
    return RunningServer(
        host=options.host,
        port=port,
        profile=profile,
        load_time_s=load_time_s,
        model_ids=model_ids,
        engine=engine,
        front_end=front_end,
        _runner=runner,
        _log=log,
        _faults=faults,
        grpc_port=grpc_port,
        _grpc=grpc_server,
    )


def die_with_parent() -> bool:
    """Ask Linux to send us SIGTERM when the parent dies; True when that is in place.

    Elsewhere, or if the call fails, it is a no-op: the harness's own teardown still applies.
    Caveat of the mechanism: "parent" is the thread that forked us, so a harness must spawn
    emulators from a thread that lives as long as they should.
    """
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
    return True


async def _serve(options: ServeOptions) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await start_server(options, terminate=os._exit)
    helpers = _start_helpers(options, server)
    try:
        print(
            f"servingperf-emulator listening on {server.url}"
            + (f" grpc={server.host}:{server.grpc_port}" if server.grpc_port is not None else "")
            + f" profile={server.profile.name} load_time_s={server.load_time_s:.3f}"
            + (f" processes={options.processes}" if options.processes > 1 else ""),
            flush=True,
        )
        await stop.wait()
    finally:
        try:
            await asyncio.to_thread(_stop_helpers, helpers)
        finally:
            await server.close()


def _start_helpers(options: ServeOptions, server: RunningServer) -> list[BaseProcess]:
    """The other processes of a multi-process server: same port (SO_REUSEPORT), same ground
    truth file (whole lines appended), HTTP only, ready when the first one is."""
    context = multiprocessing.get_context("spawn")  # the event loop has threads: no fork
    helpers: list[BaseProcess] = []
    for index in range(1, options.processes):
        helper = dataclasses.replace(
            options,
            port=server.port,
            processes=1,
            reuse_port=True,
            port_file=None,
            grpc_port=None,
            grpc_port_file=None,
            seed=options.seed + index,
            load_time_s=server.front_end.seconds_until_ready(),
        )
        process = context.Process(
            target=serve, args=(helper,), name=f"servingperf-emulator-{index}", daemon=True
        )
        process.start()
        helpers.append(process)
    return helpers


def _stop_helpers(helpers: list[BaseProcess]) -> None:
    for process in helpers:
        process.terminate()  # SIGTERM: each closes its server and exits 0
    for process in helpers:
        process.join(_HELPER_JOIN_S)
        if process.is_alive():
            process.kill()
            process.join()


def serve(options: ServeOptions) -> None:
    """Run an emulator until SIGTERM or SIGINT (then return normally: exit code 0).

    Raises ``ConfigError`` for bad options or an address that cannot be bound.
    """
    die_with_parent()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency wherever it installs
        asyncio.run(_serve(options))
        return
    uvloop.run(_serve(options))

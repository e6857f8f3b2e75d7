"""The worker contract: what one load-generating process gets, how it starts, where its records go.

A *worker* runs one shard of one phase (:mod:`servingperf.load.shard`). Everything it needs is a
:class:`WorkerSpec`, plain JSON (``to_json`` / ``from_json``), so the same worker can run as a
process spawned on this host (:mod:`servingperf.load.pool`) or, later, as pod ``index`` of a
Kubernetes Indexed Job given the JSON and ``JOB_COMPLETION_INDEX``. The contract:

1. **Shard**: ``index`` of ``count`` workers; the schedule (``load``, a ``LoadSpec`` as JSON) is
   the whole phase's: each worker regenerates it from its seed and keeps users / arrivals k with
   k mod count = index, and its part of a concurrency cap.
2. **Client and requests**: ``client_factory`` ("module:function", called with the ``target``) and
   ``requests_factory`` ("module:function", called with ``worker=`` the record's worker number and
   the JSON ``requests_args``) are imported by name, so the engine never imports a protocol or a
   dataset. A bearer token is not in the JSON: a worker reads it from the environment variable
   ``SERVINGPERF_TARGET_TOKEN`` (a Kubernetes Secret) unless the spawning process hands it over.
3. **Start barrier**: the worker builds its client and request factory, then reports *ready*
   and waits for *start*, which carries one common start time both on CLOCK_MONOTONIC
   (``start_monotonic``, shared by every process of a host) and as Unix time (``start_unix``, for
   workers on other hosts, whose monotonic clocks differ). Times in records are offsets from the
   run's t0, given the same two ways (``t0_monotonic``, ``t0_unix``).
4. **Records**: the worker streams its records to Parquet segments of its own,
   ``<records_dir>/part-w<worker:03d>-<writer>-<seq>.parquet`` (bounded memory; the run directory's reader
   concatenates every segment), with ``worker = index + 1`` (0 is a run without worker processes).
   Only counts travel back (*progress*, then *done* with the phase timing), never records.
5. **Stop**: a *stop* message ends the phase early; requests in flight are cut and recorded.
   A worker that fails reports *failed* with the error's class and message, and exits non-zero.

Messages (:class:`Ready`, :class:`Start`, :class:`Stop`, :class:`Progress`, :class:`Done`,
:class:`Failed`) are slots dataclasses sent over a ``multiprocessing`` pipe by the local
coordinator; another transport would carry the same fields.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

from servingperf.load.client import GenerationClient
from servingperf.load.execute import PhaseTiming, RequestFactory
from servingperf.load.shard import Shard, run_shard
from servingperf.load.sinks import LoadCounters, PhaseOutputs
from servingperf.model.specs import LoadSpec, ProtocolKind
from servingperf.model.target import Target
from servingperf.results.record_writer import ParquetRecordWriter

TOKEN_ENV = "SERVINGPERF_TARGET_TOKEN"
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """One worker's whole input (terms in the module docstring)."""

    index: int
    count: int
    instance: str
    phase: str
    load: dict[str, Any]
    target: Target
    client_factory: str
    requests_factory: str
    requests_args: dict[str, Any]
    records_dir: str
    t0_monotonic: float
    t0_unix: float
    progress_interval_s: float = 0.5
    flush_interval_s: float = 2.0

    @property
    def worker(self) -> int:
        """The number in this worker's records and segment names."""
        return self.index + 1

    def to_json(self) -> str:
        """The spec as JSON, without the target's token (see ``TOKEN_ENV``)."""
        data = asdict(self)
        data["target"] = {**data["target"], "protocol": self.target.protocol.value, "token": None}
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        data = json.loads(text)
        target = dict(data.pop("target"))
        target["protocol"] = ProtocolKind(target["protocol"])
        target["extra_headers"] = tuple(tuple(pair) for pair in target.get("extra_headers", ()))
        target["token"] = target.get("token") or os.environ.get(TOKEN_ENV)
        return cls(target=Target(**target), **data)


# --- messages ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ready:
    index: int


@dataclass(frozen=True, slots=True)
class Start:
    start_monotonic: float
    start_unix: float


@dataclass(frozen=True, slots=True)
class Stop:
    pass


@dataclass(frozen=True, slots=True)
class Progress:
    index: int
    counters: LoadCounters


@dataclass(frozen=True, slots=True)
class Done:
    index: int
    timing: PhaseTiming
    counters: LoadCounters
    records_written: int


@dataclass(frozen=True, slots=True)
class Failed:
    index: int
    error_type: str
    message: str
    details: str = field(default="")


def import_object(path: str) -> Any:
    """The object ``"package.module:name"`` names."""
    module_name, sep, name = path.partition(":")
    if not sep or not name:
        raise ValueError(f"{path!r} is not 'package.module:name'")
    return getattr(importlib.import_module(module_name), name)


def build_client(spec: WorkerSpec) -> GenerationClient:
    factory = cast(Callable[[Target], GenerationClient], import_object(spec.client_factory))
    return factory(spec.target)


def build_requests(spec: WorkerSpec, worker: int) -> RequestFactory:
    factory = cast(Callable[..., RequestFactory], import_object(spec.requests_factory))
    return factory(worker=worker, **spec.requests_args)


def local_start(message: Start) -> float:
    """The common start time on this process's monotonic clock (same host: exact)."""
    if abs(time.time() - message.start_unix - (time.monotonic() - message.start_monotonic)) < 0.5:
        return message.start_monotonic  # same host: CLOCK_MONOTONIC is shared
    return time.monotonic() + (message.start_unix - time.time())


def local_t0(spec: WorkerSpec) -> float:
    if abs(time.time() - spec.t0_unix - (time.monotonic() - spec.t0_monotonic)) < 0.5:
        return spec.t0_monotonic
    return time.monotonic() - (time.time() - spec.t0_unix)


class _PipeProgress:
    """Progress sink sending this worker's counters to the coordinator."""

    def __init__(self, conn: Connection, index: int) -> None:
        self._conn = conn
        self._index = index

    def phase_started(self, counters: LoadCounters, duration_s: float) -> None:
        self._send(counters)

    def tick(self, counters: LoadCounters, elapsed_s: float) -> None:
        self._send(counters)

    def phase_ended(self, counters: LoadCounters) -> None:
        self._send(counters)

    def _send(self, counters: LoadCounters) -> None:
        with contextlib.suppress(OSError):
            self._conn.send(Progress(self._index, LoadCounters(**_counter_fields(counters))))


def _counter_fields(counters: LoadCounters) -> dict[str, Any]:
    return {f.name: getattr(counters, f.name) for f in fields(LoadCounters)}


async def run_worker(spec: WorkerSpec, conn: Connection) -> Done:
    """Build, report ready, wait for start, run the shard, flush records; the worker's body."""
    load = LoadSpec.model_validate(spec.load)
    client = build_client(spec)
    make_request = build_requests(spec, spec.worker)
    writer = ParquetRecordWriter(
        Path(spec.records_dir), worker=spec.worker, flush_interval_s=spec.flush_interval_s
    )
    counters = LoadCounters(instance=spec.instance, phase=spec.phase)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        conn.send(Ready(spec.index))
        message = await _receive(conn, loop)
        if not isinstance(message, Start):
            raise RuntimeError(f"worker {spec.index}: expected start, got {message!r}")

        def on_message() -> None:
            try:
                item = conn.recv()
            except (EOFError, OSError):
                item = Stop()  # the coordinator is gone: stop cleanly
            if isinstance(item, Stop):
                stop.set()
                loop.remove_reader(conn.fileno())

        loop.add_reader(conn.fileno(), on_message)
        try:
            timing = await run_shard(
                load,
                Shard(spec.index, spec.count),
                client,
                make_request,
                PhaseOutputs(writer, _PipeProgress(conn, spec.index), counters, local_t0(spec)),
                stop=stop,
                start_at=local_start(message),
                progress_interval_s=spec.progress_interval_s,
            )
        finally:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(conn.fileno())
    finally:
        try:
            await client.aclose()
        finally:
            writer.close()
    return Done(spec.index, timing, counters, writer.written)


async def _receive(conn: Connection, loop: asyncio.AbstractEventLoop) -> object:
    future: asyncio.Future[object] = loop.create_future()

    def ready() -> None:
        loop.remove_reader(conn.fileno())
        try:
            future.set_result(conn.recv())
        except (EOFError, OSError) as exc:
            future.set_exception(exc)

    loop.add_reader(conn.fileno(), ready)
    return await future


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this worker when its coordinator dies (no orphan load generators)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def worker_main(spec_json: str, conn: Connection, token: str | None = None) -> None:
    """Process entry point (spawned): run one worker, report done or failed, exit."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the coordinator, which stops us
    spec = WorkerSpec.from_json(spec_json)
    if token is not None:
        spec = _with_token(spec, token)
    try:
        try:
            import uvloop

            done = uvloop.run(run_worker(spec, conn))
        except ImportError:  # pragma: no cover - uvloop is a dependency wherever it installs
            done = asyncio.run(run_worker(spec, conn))
        conn.send(done)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            conn.send(Failed(spec.index, type(exc).__name__, str(exc), traceback.format_exc()))
        raise SystemExit(1) from exc
    finally:
        conn.close()


def _with_token(spec: WorkerSpec, token: str) -> WorkerSpec:
    return replace(spec, target=replace(spec.target, token=token))


def merged(counters: Mapping[int, LoadCounters], instance: str, phase: str) -> LoadCounters:
    """The sum of every worker's latest counters."""
    total = LoadCounters(instance=instance, phase=phase)
    for item in counters.values():
        total.issued += item.issued
        total.ok += item.ok
        total.errors += item.errors
        total.cut += item.cut
        total.output_tokens += item.output_tokens
        total.in_flight += item.in_flight
    return total

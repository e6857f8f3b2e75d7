"""Fault injection for the emulator: which request goes wrong, how, and when the server dies.

Terms. A *request fault* is the one fault drawn for one generation request (or none). It is drawn
once, when the request has been parsed, from a random generator seeded with the spec's ``seed``
and the request id, so the same request ids fail the same way in every run, whatever the arrival
order; the kinds exclude each other (a uniform draw falls in one probability band at most).
Each fault has a *label*, written to the request's ground-truth line (``fault``) so that tests and
users can count exactly what was injected:

==================  =================================================================
``http_<status>``   answered at once with that status and an OpenAI error body
``latency_spike``   waits ``latency_spike_s`` before joining the batch, then succeeds
``stall``           after ``stall_after_tokens`` tokens, sends nothing for ``stall_s``
``disconnect``      after ``disconnect_after_tokens`` tokens, the server closes the connection
``bad_json``        the chunk after ``malformed_after_tokens`` tokens is not JSON
``bad_framing``     that chunk lacks its blank line, so two SSE events run into one
``multi_token``     streamed chunks carry ``tokens_per_chunk`` tokens each (or, with
                    ``multi_token_empty_text``, every token keeps its chunk but the text of
                    each group comes with its last one, the others empty, as vLLM does)
``usage_mismatch``  the usage count is the tokens sent plus ``usage_extra_tokens``
``reasoning_first`` chat: the first ``reasoning_tokens`` tokens are reasoning, then content
``empty_200``       answered HTTP 200 with an empty body, streamed or not
``crash``           the request was in flight, or arrived, when the server crashed
==================  =================================================================

The *shape* faults (``multi_token``, ``usage_mismatch``, ``reasoning_first``) succeed: they
change what the answer looks like, not whether it arrives, so that a client's counting can be
checked against the ground truth, whose ``output_tokens`` is always the tokens really generated.

*Server faults* act on the process: ``start: fail`` exits with :data:`FAILED_START_EXIT_CODE`
when the load time is over (a model that fails to load), ``start: never-ready`` keeps answering
"loading", and a *crash* (``crash_after_requests`` requests served, the next one's arrival
triggers it, or ``crash_after_s`` after becoming ready) writes the ground truth of every request
in flight, then exits with :data:`CRASH_EXIT_CODE` at once, as a killed server would. In-process
servers (tests) are given no exit function: a crash there aborts every connection and refuses
new ones, and a failed start only keeps the server loading.
"""

from __future__ import annotations

import asyncio
import enum
import random
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from servingperf.emulator.groundtruth import GroundTruthRecord
from servingperf.errors import ConfigError

if TYPE_CHECKING:  # pydantic and the spec models load only where a FaultSpec is built (memory)
    from servingperf.model.specs import FaultSpec

FAILED_START_EXIT_CODE = 3
CRASH_EXIT_CODE = 70  # EX_SOFTWARE

Terminate = Callable[[int], None]
"""Ends the process with an exit code (``os._exit`` in :func:`servingperf.emulator.server.serve`)."""


class FaultKind(enum.StrEnum):
    HTTP_STATUS = "http_status"
    LATENCY_SPIKE = "latency_spike"
    STALL = "stall"
    DISCONNECT = "disconnect"
    BAD_JSON = "bad_json"
    BAD_FRAMING = "bad_framing"
    MULTI_TOKEN = "multi_token"
    USAGE_MISMATCH = "usage_mismatch"
    REASONING_FIRST = "reasoning_first"
    EMPTY_200 = "empty_200"


MID_STREAM = frozenset(
    {FaultKind.STALL, FaultKind.DISCONNECT, FaultKind.BAD_JSON, FaultKind.BAD_FRAMING}
)
SHAPES = frozenset({FaultKind.MULTI_TOKEN, FaultKind.USAGE_MISMATCH, FaultKind.REASONING_FIRST})
CRASH_LABEL = "crash"


@dataclass(frozen=True, slots=True)
class RequestFault:
    """One request's fault: its kind and parameters (``status`` for HTTP faults, ``seconds`` for
    spikes and stalls, ``after_tokens`` for mid-stream faults, ``tokens`` for the shape faults:
    tokens per chunk, extra usage tokens, reasoning tokens; ``empty_text`` for multi-token
    chunks sent as vLLM does)."""

    kind: FaultKind
    status: int = 0
    seconds: float = 0.0
    after_tokens: int = 0
    tokens: int = 0
    empty_text: bool = False

    @property
    def label(self) -> str:
        if self.kind is FaultKind.HTTP_STATUS:
            return f"http_{self.status}"
        return self.kind.value

    def token_index(self, tokens: int) -> int:
        """Index of the token before which a mid-stream fault strikes in a ``tokens``-token
        answer (clamped to the last token, so the fault always happens); -1 for other kinds."""
        if self.kind not in MID_STREAM:
            return -1
        return max(0, min(self.after_tokens, tokens - 1))


class FaultPlan:
    """The per-request part of a :class:`FaultSpec`: pure, no clock, no I/O."""

    __slots__ = ("_bands", "_seed")

    def __init__(self, spec: FaultSpec) -> None:
        self._seed = spec.seed
        bands: list[tuple[float, RequestFault]] = []
        for status, p in sorted(spec.error_status.items()):
            bands.append((p, RequestFault(FaultKind.HTTP_STATUS, status=status)))
        bands.append(
            (
                spec.latency_spike_p,
                RequestFault(FaultKind.LATENCY_SPIKE, seconds=spec.latency_spike_s),
            )
        )
        bands.append(
            (
                spec.stall_p,
                RequestFault(
                    FaultKind.STALL, seconds=spec.stall_s, after_tokens=spec.stall_after_tokens
                ),
            )
        )
        bands.append(
            (
                spec.disconnect_p,
                RequestFault(FaultKind.DISCONNECT, after_tokens=spec.disconnect_after_tokens),
            )
        )
        for kind, p in (
            (FaultKind.BAD_JSON, spec.bad_json_p),
            (FaultKind.BAD_FRAMING, spec.bad_framing_p),
        ):
            bands.append((p, RequestFault(kind, after_tokens=spec.malformed_after_tokens)))
        bands += [
            (
                spec.multi_token_p,
                RequestFault(
                    FaultKind.MULTI_TOKEN,
                    tokens=spec.tokens_per_chunk,
                    empty_text=spec.multi_token_empty_text,
                ),
            ),
            (
                spec.usage_mismatch_p,
                RequestFault(FaultKind.USAGE_MISMATCH, tokens=spec.usage_extra_tokens),
            ),
            (
                spec.reasoning_p,
                RequestFault(FaultKind.REASONING_FIRST, tokens=spec.reasoning_tokens),
            ),
            (spec.empty_200_p, RequestFault(FaultKind.EMPTY_200)),
        ]
        self._bands = tuple((p, fault) for p, fault in bands if p > 0)

    @property
    def active(self) -> bool:
        """True when some request may get a fault."""
        return bool(self._bands)

    def draw(self, request_id: str) -> RequestFault | None:
        """The fault of the request ``request_id``, or None; the same id always draws the same."""
        if not self._bands:
            return None
        u = random.Random(f"servingperf-fault:{self._seed}:{request_id}").random()
        edge = 0.0
        for p, fault in self._bands:
            edge += p
            if u < edge:
                return fault
        return None


class _Flight:
    __slots__ = ("close", "record")

    def __init__(self, record: GroundTruthRecord, close: Callable[[], None] | None) -> None:
        self.record = record
        self.close = close


class FaultInjector:
    """The faults of one running server: the per-request plan plus start-up and crash faults.

    ``log`` writes a ground-truth record (the front end's log); ``terminate`` ends the process
    (None in-process, see the module docstring). The front end calls :meth:`arm` once listening,
    :meth:`admit` when a request arrives, :meth:`release` when it ends and :meth:`close` at
    shutdown.
    """

    def __init__(
        self,
        spec: FaultSpec,
        *,
        log: Callable[[GroundTruthRecord], None],
        terminate: Terminate | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.plan = FaultPlan(spec)
        self._log = log
        self._terminate = terminate
        self._clock = clock
        self._flights: dict[int, _Flight] = {}
        self._arrivals = 0
        self._timers: list[asyncio.TimerHandle] = []
        self.crashed = False
        self.start_failed = False

    # --- server faults -------------------------------------------------------------------------

    def arm(self, load_time_s: float) -> bool:
        """Start the timed faults once the server listens; False when it must never be ready."""
        loop = asyncio.get_running_loop()
        if self.spec.start == "fail":
            self._timers.append(loop.call_later(load_time_s, self._fail_start))
            return False
        if self.spec.start == "never-ready":
            return False
        if self.spec.crash_after_s is not None:
            self._timers.append(
                loop.call_later(
                    load_time_s + self.spec.crash_after_s,
                    self.crash,
                    f"{self.spec.crash_after_s:g} s after becoming ready",
                )
            )
        return True

    def _fail_start(self) -> None:
        self.start_failed = True
        _say("injected fault: start=fail (the model failed to load)")
        if self._terminate is not None:
            self._terminate(FAILED_START_EXIT_CODE)

    def crash(self, why: str) -> None:
        """Crash now: log every request in flight as crashed, then exit (or, in-process, abort
        their connections and refuse every later one)."""
        if self.crashed:
            return
        self.crashed = True
        now = self._clock()
        flights = list(self._flights.values())
        self._flights.clear()
        for flight in flights:
            _mark_crashed(flight.record, now)
            self._log(flight.record)
        _say(f"injected fault: crash {why}")
        if self._terminate is not None:
            self._terminate(CRASH_EXIT_CODE)
            return
        for flight in flights:
            if flight.close is not None:
                flight.close()

    def close(self) -> None:
        """Cancel timed faults (the server is shutting down)."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    # --- per request ---------------------------------------------------------------------------

    def admit(self, record: GroundTruthRecord, close: Callable[[], None] | None) -> bool:
        """A request arrived. False when the server has crashed: the caller drops the connection
        (``close``) without answering; the request is already logged."""
        if self.crashed:
            _mark_crashed(record, self._clock())
            self._log(record)
            if close is not None:
                close()
            return False
        self._flights[id(record)] = _Flight(record, close)
        limit = self.spec.crash_after_requests
        self._arrivals += 1
        if limit is not None and self._arrivals > limit:
            self.crash(f"after {limit} requests")
            return False
        return True

    def release(self, record: GroundTruthRecord) -> bool:
        """The request ended; True when the caller must log it (False: a crash logged it)."""
        return self._flights.pop(id(record), None) is not None

    def draw(self, record: GroundTruthRecord) -> RequestFault | None:
        """Draw the request's fault and note it on its ground-truth record."""
        fault = self.plan.draw(record.request_id)
        if fault is not None:
            record.fault = fault.label
        return fault


def _mark_crashed(record: GroundTruthRecord, now: float) -> None:
    record.fault = CRASH_LABEL
    record.outcome = "crashed"
    record.output_tokens = len(record.token_written)
    if record.end is None:
        record.end = now


def _say(message: str) -> None:
    print(f"servingperf-emulator: {message}", file=sys.stderr, flush=True)


# --- malformed bytes ---------------------------------------------------------------------------


def corrupt_chunk(kind: FaultKind, chunk: bytes) -> bytes:
    """The bytes sent instead of SSE ``chunk`` (``data: {...}\\n\\n``, possibly two events) for a
    malformed-chunk fault: ``bad_json`` cuts the last event's JSON in half, ``bad_framing`` drops
    its closing blank line so it runs into the next event (whose JSON then follows on a second
    ``data`` line of the same event: not one JSON document)."""
    if kind is FaultKind.BAD_FRAMING:
        return chunk[:-1] if chunk.endswith(b"\n\n") else chunk
    if kind is FaultKind.BAD_JSON:
        head, _, last = chunk.rstrip(b"\n").rpartition(b"data: ")
        return head + b"data: " + last[: max(1, len(last) // 2)] + b"\n\n"
    raise ValueError(f"{kind} does not corrupt chunks")


def corrupt_body(kind: FaultKind, body: bytes) -> bytes:
    """The body sent instead of a whole JSON ``body``: its first half (not a JSON document)."""
    if kind not in (FaultKind.BAD_JSON, FaultKind.BAD_FRAMING):
        raise ValueError(f"{kind} does not corrupt bodies")
    return body[: max(1, len(body) // 2)]


# --- the command line: --fault KEY=VALUE -------------------------------------------------------


def fault_spec_from_pairs(pairs: Iterable[str]) -> FaultSpec | None:
    """A :class:`FaultSpec` from ``KEY=VALUE`` strings (``stall_p=0.1``, ``error_status.503=0.05``),
    or None when there are none. ConfigError naming the option when one is wrong.

    pydantic is imported only when there are pairs: an emulator process injecting no fault never
    loads it (docs/emulator.md, Memory)."""
    data: dict[str, Any] = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise ConfigError(f"--fault {item!r}: expected KEY=VALUE")
        name, dot, sub = key.partition(".")
        if dot:
            if name != "error_status" or not sub:
                raise ConfigError(
                    f"--fault {item!r}: only error_status takes a sub-key (error_status.503=0.1)"
                )
            table = data.setdefault(name, {})
            table[sub] = value
        else:
            data[name] = None if value.lower() in ("none", "null", "") else value
    if not data:
        return None
    from pydantic import ValidationError

    from servingperf.model.specs import FaultSpec

    try:
        return FaultSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "faults"
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"--fault {where}: {message}") from exc


def fault_args(spec: FaultSpec | None) -> list[str]:
    """The ``--fault`` options that make ``servingperf emulator serve`` inject ``spec`` (the
    inverse of :func:`fault_spec_from_pairs`); only values that differ from the defaults."""
    if spec is None:
        return []
    args: list[str] = []
    defaults = type(spec)()
    for name in type(spec).model_fields:
        value = getattr(spec, name)
        if value == getattr(defaults, name):
            continue
        if isinstance(value, Mapping):
            for status, p in sorted(value.items()):
                args += ["--fault", f"{name}.{status}={p!r}"]
        else:
            args += [
                "--fault",
                f"{name}={value!r}" if isinstance(value, float) else f"{name}={value}",
            ]
    return args

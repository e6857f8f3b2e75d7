"""The continuous-batching engine: when each emulated token comes into existence.

Terms. A *sequence* is one generation: a prompt of ``prompt_tokens`` and a fixed number of
``output_tokens`` to emit. The engine runs a *step loop*. At the start of a step it *admits*
queued sequences, first come first served, until ``max_batch`` are *running*; the rest stay
*queued*. A step costs ``decode_base_s + decode_per_seq_s × batch`` (``batch`` = sequences running
in it, new ones included) plus ``prefill_per_token_s × prompt tokens`` of the sequences admitted in
it. At the step's end every running sequence has one more token: a sequence's first token comes at
the end of the step that admitted it. A sequence leaves the batch after its last token, or when
cancelled (its client went away); its slot is refilled at the next step.

Step ends are scheduled at absolute times on the monotonic clock (each step ends at the previous
step's scheduled end plus its cost), so sleep overshoot does not accumulate. When the loop has
fallen behind by more than ``max_lag_s`` (an overloaded event loop, a pause) the schedule restarts
from the present instead of emitting a burst of catch-up steps, as a stalled real server would.
A zero-cost step (the ``instant`` profile) still yields to the event loop once, and an engine with
nothing to do waits on an event, so neither case spins the CPU.

The engine knows nothing of HTTP or model names: several front ends or model ids may share one.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from servingperf.emulator.profiles import Profile

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

DEFAULT_MAX_LAG_S = 0.02
_EARLY_TOLERANCE_S = 0.0002
_MAX_RESLEEPS = 3


class SequenceState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"  # every output token was produced
    CANCELLED = "cancelled"  # the consumer gave up (client disconnect)
    ABORTED = "aborted"  # the engine stopped first


@dataclass(frozen=True, slots=True)
class Capacity:
    """Throughput facts of a profile under this latency model (for docs and sanity checks).

    Decode-only figures: prefill adds to the steps that admit prompts. ``inf`` for zero-cost steps.
    """

    max_batch: int
    step_s_single: float
    step_s_full: float
    tokens_per_s_single: float
    tokens_per_s_full: float


def step_cost_s(profile: Profile, batch: int, prefill_tokens: int) -> float:
    """The duration of one step with ``batch`` running sequences and ``prefill_tokens`` admitted."""
    return (
        profile.decode_base_s
        + profile.decode_per_seq_s * batch
        + profile.prefill_per_token_s * prefill_tokens
    )


def capacity(profile: Profile) -> Capacity:
    """The profile's step times and token rates at batch 1 and at ``max_batch``."""
    single = step_cost_s(profile, 1, 0)
    full = step_cost_s(profile, profile.max_batch, 0)
    return Capacity(
        max_batch=profile.max_batch,
        step_s_single=single,
        step_s_full=full,
        tokens_per_s_single=1.0 / single if single > 0 else math.inf,
        tokens_per_s_full=profile.max_batch / full if full > 0 else math.inf,
    )


class Sequence:
    """One generation in the engine, consumed by ``async for token_index in sequence``.

    The engine produces tokens regardless of how fast they are consumed (as a real server
    buffers its output); iteration yields each token index once, in order, waiting when caught
    up, and stops after the last token or when the sequence was cancelled or aborted. Always call
    :meth:`cancel` when done with it (a no-op once finished): a consumer that goes away must not
    keep a batch slot. ``admitted_at``, ``first_token_at`` and ``finished_at`` are engine clock
    times (when it joined the batch, when its first and its last token were produced).
    """

    __slots__ = (
        "_consumed",
        "_done_waiter",
        "_engine",
        "_token_waiter",
        "admitted_at",
        "finished_at",
        "first_token_at",
        "output_tokens",
        "produced",
        "prompt_tokens",
        "state",
        "submitted_at",
    )

    def __init__(self, engine: Engine, prompt_tokens: int, output_tokens: int, now: float) -> None:
        self._engine = engine
        self.prompt_tokens = prompt_tokens
        self.output_tokens = output_tokens
        self.submitted_at = now
        self.admitted_at: float | None = None
        self.first_token_at: float | None = None
        self.finished_at: float | None = None
        self.produced = 0
        self.state = SequenceState.QUEUED
        self._consumed = 0
        self._token_waiter: asyncio.Future[None] | None = None
        self._done_waiter: asyncio.Future[None] | None = None

    @property
    def complete(self) -> bool:
        """Every output token was produced (as opposed to cancelled or aborted on the way)."""
        return self.state is SequenceState.FINISHED

    def __aiter__(self) -> Sequence:
        return self

    async def __anext__(self) -> int:
        while True:
            consumed = self._consumed
            if consumed < self.produced:
                self._consumed = consumed + 1
                return consumed
            if self.state is not SequenceState.RUNNING and self.state is not SequenceState.QUEUED:
                raise StopAsyncIteration
            waiter = asyncio.get_running_loop().create_future()
            self._token_waiter = waiter
            await waiter

    async def wait_finished(self) -> None:
        """Wait until the sequence finished, was cancelled or was aborted (one wake-up, not one
        per token: the non-streaming path needs only the end)."""
        while self.state is SequenceState.RUNNING or self.state is SequenceState.QUEUED:
            waiter = asyncio.get_running_loop().create_future()
            self._done_waiter = waiter
            await waiter

    def cancel(self) -> None:
        """Leave the queue or batch now; idempotent, a no-op for an ended sequence."""
        if self.state is SequenceState.QUEUED or self.state is SequenceState.RUNNING:
            self._engine._forget(self)
            self._end(SequenceState.CANCELLED)

    def _end(self, state: SequenceState) -> None:
        self.state = state
        self._wake_token()
        waiter = self._done_waiter
        if waiter is not None:
            self._done_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _wake_token(self) -> None:
        waiter = self._token_waiter
        if waiter is not None:
            self._token_waiter = None
            if not waiter.done():
                waiter.set_result(None)


@dataclass(frozen=True, slots=True)
class EngineStats:
    """A snapshot of the engine's counters."""

    queued: int
    running: int
    steps: int
    tokens: int
    rebased: int  # times the schedule restarted from the present after falling behind


class Engine:
    """The step loop of one emulated device, shared by every model served on it.

    ``clock`` and ``sleep`` default to ``time.monotonic`` and ``asyncio.sleep``; tests inject a
    virtual clock. The loop task starts with the first submitted sequence; :meth:`aclose` stops it
    and aborts every sequence still queued or running.
    """

    def __init__(
        self,
        profile: Profile,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        max_lag_s: float = DEFAULT_MAX_LAG_S,
    ) -> None:
        self._profile = profile
        self._clock = clock
        self._sleep = sleep
        self._max_lag_s = max_lag_s
        self._waiting: collections.deque[Sequence] = collections.deque()
        self._queued = 0  # live sequences in _waiting (cancelled ones are skipped lazily)
        self._running: list[Sequence] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._steps = 0
        self._tokens = 0
        self._rebased = 0

    @property
    def profile(self) -> Profile:
        return self._profile

    def capacity(self) -> Capacity:
        return capacity(self._profile)

    def stats(self) -> EngineStats:
        running = sum(1 for s in self._running if s.state is SequenceState.RUNNING)
        return EngineStats(self._queued, running, self._steps, self._tokens, self._rebased)

    def submit(self, prompt_tokens: int, output_tokens: int) -> Sequence:
        """Queue a generation of ``output_tokens`` (>= 1) tokens; must run inside the event loop."""
        if output_tokens < 1:
            raise ValueError(f"output_tokens must be >= 1, got {output_tokens}")
        if self._closed:
            raise RuntimeError("the engine is closed")
        if self._task is not None and self._task.done():
            # Only a bug ends the loop while the engine is open; say so rather than hang.
            failure = None if self._task.cancelled() else self._task.exception()
            raise RuntimeError("the engine's step loop has stopped") from failure
        seq = Sequence(self, prompt_tokens, output_tokens, self._clock())
        self._waiting.append(seq)
        self._queued += 1
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="servingperf-emulator-engine"
            )
        self._wakeup.set()
        return seq

    async def aclose(self) -> None:
        """Stop the step loop and abort whatever is queued or running."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})  # unlike ``await task``, keeps our own cancellation apart
            if not task.cancelled() and task.exception() is not None:
                raise RuntimeError("the engine's step loop failed") from task.exception()
        self._abort_all()

    def _forget(self, seq: Sequence) -> None:
        # Running sequences are dropped lazily at the step end (the step's cost is already set);
        # queued ones are skipped at admission.
        if seq.state is SequenceState.QUEUED:
            self._queued -= 1

    def _abort_all(self) -> None:
        for seq in self._running:
            if seq.state is SequenceState.RUNNING:
                seq._end(SequenceState.ABORTED)
        self._running = []
        while self._waiting:
            seq = self._waiting.popleft()
            if seq.state is SequenceState.QUEUED:
                seq._end(SequenceState.ABORTED)
        self._queued = 0

    async def _run(self) -> None:
        try:
            await self._loop()
        finally:
            # Whatever stops the loop (close, or a bug), no consumer is left waiting forever.
            self._abort_all()

    async def _loop(self) -> None:
        profile = self._profile
        clock = self._clock
        max_batch = profile.max_batch
        waiting = self._waiting
        step_end = clock()
        while True:
            if not self._running and not self._queued:
                self._wakeup.clear()
                await self._wakeup.wait()
                step_end = clock()  # idle time is not lag
                continue
            now = clock()
            if now - step_end > self._max_lag_s:
                self._rebased += 1
                step_start = now
            else:
                step_start = step_end
            running = self._running
            prefill = 0
            while waiting and len(running) < max_batch:
                seq = waiting.popleft()
                if seq.state is not SequenceState.QUEUED:
                    continue  # cancelled while queued
                self._queued -= 1
                seq.state = SequenceState.RUNNING
                seq.admitted_at = now
                prefill += seq.prompt_tokens
                running.append(seq)
            if not waiting:
                self._queued = 0  # keeps the idle test above exact, so an empty loop cannot spin
            if not running:
                continue
            step_end = step_start + (
                profile.decode_base_s
                + profile.decode_per_seq_s * len(running)
                + profile.prefill_per_token_s * prefill
            )
            delay = step_end - clock()
            await self._sleep(delay if delay > 0.0 else 0.0)
            # A timer may fire early (uvloop rounds to milliseconds from a cached loop time):
            # sleep again for what is left, a bounded number of times.
            for _ in range(_MAX_RESLEEPS):
                delay = step_end - clock()
                if delay <= _EARLY_TOLERANCE_S:
                    break
                await self._sleep(delay)
            self._emit(running, clock())

    def _emit(self, running: list[Sequence], now: float) -> None:
        still: list[Sequence] = []
        emitted = 0
        for seq in running:
            if seq.state is not SequenceState.RUNNING:
                continue  # cancelled during the step
            produced = seq.produced + 1
            seq.produced = produced
            emitted += 1
            if produced == 1:
                seq.first_token_at = now
            if produced >= seq.output_tokens:
                seq.finished_at = now
                seq._end(SequenceState.FINISHED)
            else:
                seq._wake_token()
                still.append(seq)
        self._running = still
        self._steps += 1
        self._tokens += emitted

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

Prefix cache. With a :class:`~servingperf.emulator.prefix_cache.PrefixCache`, a sequence submitted
with its prompt's toy tokens (``prompt_units``) is looked up at admission: its leading cached
blocks (``cached_tokens``) cost no prefill, as in vLLM, which also always computes a prompt's last
token (a fully cached prompt recomputes its last block). Its prompt blocks are cached at
admission, and those of prompt plus answer when it finishes (a conversation's next turn sends
both back). Blocks are salted with the sequence's model id: models never share a block.

LoRA adapters. With :class:`~servingperf.emulator.adapter_slots.AdapterSlots`, a sequence submitted
under one of the engine's ``adapter_ids`` must hold its adapter's slot to run. At admission
(first come first served, as vLLM's scheduler) a sequence whose adapter is loaded joins at no
cost; one whose adapter is not loaded loads it, adding the slots' ``load_s`` to the cost of the
step that admits it (vLLM loads in the engine step: the whole batch waits); one whose adapter
cannot be loaded (every slot held by running sequences) is skipped and stays queued in its place,
while later sequences may still be admitted. A sequence gives its slot back when it ends.

The engine knows nothing of HTTP: several front ends or model ids may share one. Each sequence
carries the ``model`` id it was submitted under and the ``finish_reason`` it ends with, opaque to
the engine; an *observer* (:class:`EngineObserver`, the server's metrics) hears of each first token,
each end and each step, so that server-side metrics are taken at the engine's own moments, as
vLLM takes them, at a cost of a few calls per request and one per step.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from servingperf.emulator.adapter_slots import AdapterSlots
from servingperf.emulator.prefix_cache import PrefixCache, block_hashes
from servingperf.emulator.profiles import Profile
from servingperf.emulator.tokenizer import generated_tokens

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


class EngineObserver(Protocol):
    """Hears the engine's events (called inside the step loop: must not block or raise)."""

    def first_token(self, seq: Sequence, now: float) -> None:
        """``seq`` produced its first token at ``now`` (its prefill is done)."""

    def ended(self, seq: Sequence, now: float) -> None:
        """``seq`` left the engine at ``now``: finished, cancelled or aborted (``seq.state``)."""

    def step(
        self, now: float, gap_s: float, continuing: int, step_tokens: int, batch: list[Sequence]
    ) -> None:
        """A step ended at ``now``, ``gap_s`` after the previous one: ``continuing`` sequences
        produced a token that was not their first (each an inter-token gap of ``gap_s``), the
        step processed ``step_tokens`` tokens (prompt tokens admitted + tokens produced), and
        ``batch`` were its sequences (those whose state is running or finished produced a
        token in it; read, never keep)."""


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
        "adapter_held",
        "adapter_load_s",
        "admitted_at",
        "cached_tokens",
        "finish_reason",
        "finished_at",
        "first_token_at",
        "model",
        "output_tokens",
        "produced",
        "prompt_blocks",
        "prompt_tokens",
        "prompt_units",
        "state",
        "submitted_at",
    )

    def __init__(
        self,
        engine: Engine,
        prompt_tokens: int,
        output_tokens: int,
        now: float,
        model: str = "",
        finish_reason: str = "length",
        prompt_units: tuple[str, ...] = (),
    ) -> None:
        self._engine = engine
        self.prompt_units = prompt_units
        self.prompt_blocks: list[int] = []
        self.cached_tokens = 0  # prompt tokens served by the prefix cache at admission
        self.adapter_held = False  # holds a LoRA adapter slot (given back when it ends)
        self.adapter_load_s = 0.0  # the adapter load its admission paid (0: a hit, or no adapter)
        self.model = model
        self.finish_reason = finish_reason
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
        if self.adapter_held:
            self.adapter_held = False
            slots = self._engine.adapter_slots
            if slots is not None:
                slots.release(self.model)
        observer = self._engine.observer
        if observer is not None:
            observer.ended(self, self._engine._clock())
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
        prefix_cache: PrefixCache | None = None,
        adapter_slots: AdapterSlots | None = None,
        adapter_ids: frozenset[str] = frozenset(),
    ) -> None:
        self._profile = profile
        self.prefix_cache = prefix_cache
        self.adapter_slots = adapter_slots
        self.adapter_ids = adapter_ids
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
        self._prefill = 0
        self._last_emit: float | None = None
        self.observer: EngineObserver | None = None

    @property
    def profile(self) -> Profile:
        return self._profile

    def capacity(self) -> Capacity:
        return capacity(self._profile)

    def stats(self) -> EngineStats:
        running = sum(1 for s in self._running if s.state is SequenceState.RUNNING)
        return EngineStats(self._queued, running, self._steps, self._tokens, self._rebased)

    def sequences(self) -> tuple[list[Sequence], list[Sequence]]:
        """The running and the queued sequences now (for metrics: read, never modify)."""
        running = [s for s in self._running if s.state is SequenceState.RUNNING]
        queued = [s for s in self._waiting if s.state is SequenceState.QUEUED]
        return running, queued

    def submit(
        self,
        prompt_tokens: int,
        output_tokens: int,
        *,
        model: str = "",
        finish_reason: str = "length",
        prompt_units: tuple[str, ...] = (),
    ) -> Sequence:
        """Queue a generation of ``output_tokens`` (>= 1) tokens; must run inside the event loop.

        ``model`` and ``finish_reason`` are carried for the observer (see the module docstring);
        ``prompt_units``, the prompt's toy tokens, are what a prefix cache looks up.
        """
        if output_tokens < 1:
            raise ValueError(f"output_tokens must be >= 1, got {output_tokens}")
        if self._closed:
            raise RuntimeError("the engine is closed")
        if self._task is not None and self._task.done():
            # Only a bug ends the loop while the engine is open; say so rather than hang.
            failure = None if self._task.cancelled() else self._task.exception()
            raise RuntimeError("the engine's step loop has stopped") from failure
        seq = Sequence(
            self, prompt_tokens, output_tokens, self._clock(), model, finish_reason, prompt_units
        )
        cache = self.prefix_cache
        if cache is not None and prompt_units:
            seq.prompt_blocks = block_hashes(prompt_units, cache.block_tokens, model)
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
            adapter_load_s = 0.0
            skipped: list[Sequence] = []
            while waiting and len(running) < max_batch:
                seq = waiting.popleft()
                if seq.state is not SequenceState.QUEUED:
                    continue  # cancelled while queued
                if self.adapter_slots is not None and seq.model in self.adapter_ids:
                    load_s = self.adapter_slots.admit(seq.model)
                    if load_s is None:
                        skipped.append(seq)  # every slot is held: it waits, in its place
                        continue
                    seq.adapter_held = True
                    seq.adapter_load_s = load_s
                    adapter_load_s += load_s
                self._queued -= 1
                seq.state = SequenceState.RUNNING
                seq.admitted_at = now
                prefill += seq.prompt_tokens - self._cached(seq)
                running.append(seq)
            if skipped:
                waiting.extendleft(reversed(skipped))
            elif not waiting:
                self._queued = 0  # keeps the idle test above exact, so an empty loop cannot spin
            if not running:
                continue
            self._prefill = prefill
            step_end = step_start + (
                profile.decode_base_s
                + profile.decode_per_seq_s * len(running)
                + profile.prefill_per_token_s * prefill
                + adapter_load_s
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

    def _cached(self, seq: Sequence) -> int:
        """Look ``seq`` up in the prefix cache at its admission, and cache its prompt blocks."""
        cache = self.prefix_cache
        if cache is None:
            return 0
        hit = cache.lookup(seq.prompt_blocks, seq.prompt_tokens)
        if hit >= seq.prompt_tokens > 0:  # the last token is always computed
            hit = (seq.prompt_tokens - 1) // cache.block_tokens * cache.block_tokens
            cache.hit_tokens -= cache.block_tokens
        cache.insert(seq.prompt_blocks)
        seq.cached_tokens = hit
        return hit

    def _cache_answer(self, seq: Sequence) -> None:
        cache = self.prefix_cache
        if cache is not None and seq.prompt_units:
            units = (*seq.prompt_units, *generated_tokens(seq.output_tokens))
            cache.insert(block_hashes(units, cache.block_tokens, seq.model))

    def _emit(self, running: list[Sequence], now: float) -> None:
        still: list[Sequence] = []
        emitted = 0
        continuing = 0
        observer = self.observer
        for seq in running:
            if seq.state is not SequenceState.RUNNING:
                continue  # cancelled during the step
            produced = seq.produced + 1
            seq.produced = produced
            emitted += 1
            if produced == 1:
                seq.first_token_at = now
                if observer is not None:
                    observer.first_token(seq, now)
            else:
                continuing += 1
            if produced >= seq.output_tokens:
                seq.finished_at = now
                self._cache_answer(seq)
                seq._end(SequenceState.FINISHED)
            else:
                seq._wake_token()
                still.append(seq)
        self._running = still
        self._steps += 1
        self._tokens += emitted
        if observer is not None:
            # A continuing sequence was in the previous step too: its last token came then.
            last = self._last_emit
            gap_s = 0.0 if last is None else now - last
            observer.step(now, gap_s, continuing, self._prefill + emitted, running)
        self._last_emit = now

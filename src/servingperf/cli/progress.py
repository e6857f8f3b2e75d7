"""Live progress on the terminal (Rich), as a ProgressSink the engine writes to."""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable

from rich.console import Console
from rich.live import Live
from rich.text import Text

from servingperf.load.sinks import LoadCounters
from servingperf.results.background import lower_thread_priority


class RichProgress:
    """One live line per phase: elapsed / planned, requests, errors, in flight, output tokens/s.

    On a terminal the line updates in place; in a CI log (no terminal) a plain line is printed
    every ``log_interval_s`` and at the end of each phase. The token rate is taken over the last
    ``RATE_WINDOW_S`` of ticks and recomputed at every tick, so it follows the load without
    standing still between updates (a display figure only: reports read the records).
    """

    RATE_WINDOW_S = 2.0

    def __init__(
        self,
        console: Console,
        log_interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._console = console
        self._log_interval_s = log_interval_s
        self._clock_now = clock
        self._next_log = 0.0
        self._live: Live | None = None
        self._duration = 0.0
        self._elapsed = 0.0
        self._samples: collections.deque[tuple[float, int]] = collections.deque()
        self._rate = 0.0

    def phase_started(self, counters: LoadCounters, duration_s: float) -> None:
        self._duration = duration_s
        self._elapsed = 0.0
        self._samples.clear()
        self._samples.append((self._clock_now(), counters.output_tokens))
        self._rate = 0.0
        self._live = Live(
            self._line(counters, 0.0), console=self._console, transient=False, refresh_per_second=4
        )
        self._live.start()
        refresher = getattr(self._live, "_refresh_thread", None)  # Rich's redraw thread
        if refresher is not None and refresher.native_id is not None:
            lower_thread_priority(refresher.native_id)  # drawing waits for the load loop

    def tick(self, counters: LoadCounters, elapsed_s: float) -> None:
        self._elapsed = elapsed_s
        now = self._clock_now()
        samples = self._samples
        samples.append((now, counters.output_tokens))
        while len(samples) > 2 and now - samples[1][0] >= self.RATE_WINDOW_S:
            samples.popleft()  # keep one sample at least a window old
        first_t, first_tokens = samples[0]
        if now > first_t:
            self._rate = (counters.output_tokens - first_tokens) / (now - first_t)
        if self._live is not None:
            self._live.update(self._line(counters, elapsed_s))
        elif now >= self._next_log:
            self._next_log = now + self._log_interval_s
            self._console.print(self._line(counters, elapsed_s))

    def phase_ended(self, counters: LoadCounters) -> None:
        end = self._duration if math.isfinite(self._duration) else self._elapsed
        final = self._line(counters, end, done=True)
        if self._live is not None:
            self._live.update(final)
            self._live.stop()
            self._live = None
        else:
            self._console.print(final)

    def _clock(self, elapsed: float) -> str:
        """Elapsed over planned seconds; elapsed alone for a phase of unknown length (the
        many-model validations last as long as the deployments do)."""
        if not math.isfinite(self._duration):
            return f"{elapsed:6.1f} s"
        return f"{min(elapsed, self._duration):6.1f}/{self._duration:.0f} s"

    def _line(self, c: LoadCounters, elapsed: float, done: bool = False) -> Text:
        mark = "✔" if done else "…"
        text = Text.assemble(
            (f"{mark} {c.instance}", "bold"),
            f" [{c.phase}] ",
            (self._clock(elapsed), "cyan"),
            f"  requests {c.ok:>6} ok",
            (f" {c.errors:>4} errors", "red" if c.errors else "dim"),
            f"  {c.in_flight:>3} in flight",
            f"  {self._rate:8.1f} tok/s",
        )
        if c.cut:
            text.append(f"  {c.cut} cut", style="yellow")
        return text

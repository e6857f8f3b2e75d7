"""The live progress line: planned phases show elapsed/planned seconds; a phase of unknown length
(many-model validations, planned as infinity) shows elapsed seconds, never "inf"."""

from __future__ import annotations

import io
import math

import pytest
from rich.console import Console

from servingperf.cli.progress import RichProgress
from servingperf.load.sinks import LoadCounters


def _printed(duration_s: float, elapsed_s: float) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, force_terminal=False, color_system=None)
    progress = RichProgress(console)
    counters = LoadCounters(instance="m", phase="validation", ok=3)
    progress.phase_started(counters, duration_s)
    progress.tick(counters, elapsed_s)
    progress.phase_ended(counters)
    return buffer.getvalue()


def test_a_planned_phase_shows_elapsed_over_planned() -> None:
    text = _printed(12.0, 5.0)
    assert "12.0/12 s" in text  # the final line: the whole planned length
    assert "inf" not in text


def test_a_phase_of_unknown_length_shows_elapsed_only() -> None:
    text = _printed(math.inf, 7.25)
    assert "7.2 s" in text or "7.3 s" in text
    assert "inf" not in text
    assert "/" not in text.split("requests")[0].split("]")[-1]


def test_the_token_rate_follows_every_tick() -> None:
    """Ticks every 0.5 s: the rate moves at each tick (it used to stand still every other one)."""
    now = [100.0]
    console = Console(file=io.StringIO(), width=200, force_terminal=False, color_system=None)
    progress = RichProgress(console, clock=lambda: now[0])
    counters = LoadCounters(instance="m", phase="load")
    progress.phase_started(counters, 60.0)
    rates = []
    for step, tokens_per_tick in enumerate([50, 50, 100, 100, 100, 100, 0, 0, 0, 0], start=1):
        now[0] += 0.5
        counters.output_tokens += tokens_per_tick
        progress.tick(counters, 0.5 * step)
        rates.append(progress._rate)
    # tokens per second over the last 2 s of ticks (less while the phase is younger)
    expected = [100.0, 100.0, 400 / 3, 150.0, 175.0, 200.0, 150.0, 100.0, 50.0, 0.0]
    assert rates == pytest.approx(expected)

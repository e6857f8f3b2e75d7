"""The live progress line: planned phases show elapsed/planned seconds; a phase of unknown length
(many-model validations, planned as infinity) shows elapsed seconds, never "inf"."""

from __future__ import annotations

import io
import math

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

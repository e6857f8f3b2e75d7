"""Output length: how many tokens the emulator generates for a request, and why it stopped.

A request *forces* its length when it gives ``max_tokens`` and either ``ignore_eos`` is true or
``min_tokens == max_tokens`` (the way llm-load-test pins output lengths): it then gets exactly
``max_tokens`` tokens, finish reason ``length``. Otherwise the profile's *natural* length (a normal
draw, rounded, clipped to the profile's range: where the emulated model would emit EOS) is clipped
to ``[min_tokens or 1, max_tokens or the profile's maximum]``. The finish reason is ``length``
when the upper limit cut the natural length short, ``stop`` when the model "emitted EOS".
``ignore_eos`` without ``max_tokens`` generates up to the profile's maximum.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from servingperf.emulator.profiles import Profile


@dataclass(frozen=True, slots=True)
class OutputPlan:
    """How many tokens to generate and the finish reason the last one carries."""

    tokens: int
    finish_reason: str  # "length" | "stop"


def natural_length(profile: Profile, rng: random.Random) -> int:
    """A draw from the profile's natural output length distribution."""
    draw = round(rng.gauss(profile.output_tokens_mean, profile.output_tokens_sd))
    return min(max(draw, profile.output_tokens_min), profile.output_tokens_max)


def plan_output(
    profile: Profile,
    rng: random.Random,
    *,
    max_tokens: int | None,
    min_tokens: int | None,
    ignore_eos: bool,
) -> OutputPlan:
    """Decide a request's output length (rules in the module docstring).

    The caller has validated the request: ``max_tokens >= 1`` and ``min_tokens <= max_tokens``
    when both are given.
    """
    if max_tokens is not None and (ignore_eos or min_tokens == max_tokens):
        return OutputPlan(max_tokens, "length")
    lower = max(min_tokens or 1, 1)
    upper = max_tokens if max_tokens is not None else max(profile.output_tokens_max, lower)
    if ignore_eos:
        return OutputPlan(upper, "length")
    natural = natural_length(profile, rng)
    if natural >= upper:
        return OutputPlan(upper, "length")
    return OutputPlan(max(natural, lower), "stop")

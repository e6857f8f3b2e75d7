"""Output-length rules: forced lengths, clipping, finish reasons, reproducibility."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from servingperf.emulator.lengths import OutputPlan, natural_length, plan_output
from servingperf.emulator.profiles import PROFILES, resolve_profile

SMALL = PROFILES["flan-t5-small"]


def plan(
    max_tokens: int | None, min_tokens: int | None = None, ignore_eos: bool = False, seed: int = 0
) -> OutputPlan:
    return plan_output(
        SMALL,
        random.Random(seed),
        max_tokens=max_tokens,
        min_tokens=min_tokens,
        ignore_eos=ignore_eos,
    )


def test_ignore_eos_with_max_tokens_forces_the_length() -> None:
    for n in (1, 7, 300, 5000):
        assert plan(n, ignore_eos=True) == OutputPlan(n, "length")


def test_min_equal_max_forces_the_length() -> None:
    assert plan(123, min_tokens=123) == OutputPlan(123, "length")


def test_ignore_eos_without_max_runs_to_the_profile_maximum() -> None:
    assert plan(None, ignore_eos=True) == OutputPlan(SMALL.output_tokens_max, "length")


def test_natural_length_is_cut_by_max_tokens_with_reason_length() -> None:
    assert plan(1) == OutputPlan(1, "length")


def test_natural_length_below_max_stops() -> None:
    profile = resolve_profile("flan-t5-small", {"output_tokens_sd": 0, "output_tokens_mean": 30})
    result = plan_output(
        profile, random.Random(1), max_tokens=100, min_tokens=None, ignore_eos=False
    )
    assert result == OutputPlan(30, "stop")
    raised = plan_output(profile, random.Random(1), max_tokens=100, min_tokens=50, ignore_eos=False)
    assert raised == OutputPlan(50, "stop")


def test_same_seed_same_length() -> None:
    assert [plan(None, seed=s) for s in range(20)] == [plan(None, seed=s) for s in range(20)]
    assert len({plan(None, seed=s).tokens for s in range(50)}) > 5


def test_natural_lengths_follow_the_profile() -> None:
    rng = random.Random(3)
    draws = [natural_length(SMALL, rng) for _ in range(2000)]
    assert all(SMALL.output_tokens_min <= d <= SMALL.output_tokens_max for d in draws)
    mean = sum(draws) / len(draws)
    assert abs(mean - SMALL.output_tokens_mean) < 3


@given(
    max_tokens=st.one_of(st.none(), st.integers(1, 3000)),
    min_tokens=st.one_of(st.none(), st.integers(0, 3000)),
    ignore_eos=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_plan_respects_the_request_bounds(
    max_tokens: int | None, min_tokens: int | None, ignore_eos: bool, seed: int
) -> None:
    if max_tokens is not None and min_tokens is not None and min_tokens > max_tokens:
        min_tokens = max_tokens  # the HTTP layer rejects min > max before planning
    result = plan(max_tokens, min_tokens, ignore_eos, seed)
    assert result.tokens >= max(min_tokens or 1, 1)
    if max_tokens is not None:
        assert result.tokens <= max_tokens
        if result.finish_reason == "length":
            assert result.tokens == max_tokens
    assert result.finish_reason in ("length", "stop")

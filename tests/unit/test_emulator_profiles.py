"""Emulator profiles: the named set, override resolution and its errors, load-time draws."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from servingperf.emulator.engine import capacity
from servingperf.emulator.profiles import (
    OVERRIDABLE,
    PROFILES,
    draw_load_time_s,
    profile_problems,
    resolve_profile,
)
from servingperf.errors import ConfigError

SEED_MODELS = ("flan-t5-small", "flan-t5-large", "bloom-560m", "mpt-7b-instruct2")


def test_named_profiles_are_valid_and_ordered_fast_to_slow() -> None:
    assert set(PROFILES) == {*SEED_MODELS, "instant"}
    for profile in PROFILES.values():
        assert profile_problems(profile) == [], profile.name
    steps = [capacity(PROFILES[name]).step_s_single for name in SEED_MODELS]
    assert steps == sorted(steps)
    assert len(set(steps)) == len(steps)
    assert 0.003 <= steps[0] <= 0.008  # ~5 ms per token at batch 1
    assert 0.035 <= steps[-1] <= 0.065  # ~40-60 ms per token at batch 1
    for name in SEED_MODELS:
        assert 10.0 <= PROFILES[name].load_time_median_s < 300.0


def test_instant_costs_nothing() -> None:
    instant = PROFILES["instant"]
    assert instant.decode_base_s == instant.decode_per_seq_s == instant.prefill_per_token_s == 0
    assert draw_load_time_s(instant, seed=7) == 0.0
    assert capacity(instant).tokens_per_s_full == math.inf


def test_overrides_apply_and_convert_whole_numbers() -> None:
    profile = resolve_profile(
        "flan-t5-small", {"decode_base_s": 0.001, "max_batch": 8.0, "output_tokens_max": 100}
    )
    assert profile.decode_base_s == 0.001
    assert profile.max_batch == 8
    assert isinstance(profile.max_batch, int)
    assert profile.output_tokens_max == 100
    assert profile.decode_per_seq_s == PROFILES["flan-t5-small"].decode_per_seq_s
    assert resolve_profile("bloom-560m", {}) == PROFILES["bloom-560m"]


def test_unknown_profile_names_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_profile("gpt-9", {})
    message = str(info.value)
    assert "gpt-9" in message
    for name in PROFILES:
        assert name in message


def test_unknown_override_names_the_valid_keys() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_profile("flan-t5-small", {"speed": 2.0})
    message = str(info.value)
    assert "speed" in message
    for key in OVERRIDABLE:
        assert key in message
    assert "name" not in OVERRIDABLE


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"max_batch": 2.5}, "whole number"),
        ({"max_batch": 0}, "max_batch must be >= 1"),
        ({"decode_base_s": -0.1}, "decode_base_s"),
        ({"prefill_per_token_s": math.nan}, "prefill_per_token_s"),
        ({"output_tokens_min": 10, "output_tokens_max": 5}, "output_tokens_max"),
        ({"output_tokens_min": 0}, "output_tokens_min must be >= 1"),
        ({"load_time_min_s": 10, "load_time_max_s": 1}, "load_time_max_s"),
        ({"decode_base_s": "fast"}, "must be a number"),
        ({"max_batch": True}, "must be a number"),
    ],
)
def test_invalid_override_values_are_config_errors(
    overrides: dict[str, float], fragment: str
) -> None:
    with pytest.raises(ConfigError, match=fragment):
        resolve_profile("flan-t5-small", overrides)


def test_load_time_draw_is_reproducible_clipped_and_seed_dependent() -> None:
    profile = PROFILES["flan-t5-small"]
    draws = [draw_load_time_s(profile, seed) for seed in range(200)]
    assert draws == [draw_load_time_s(profile, seed) for seed in range(200)]
    assert all(profile.load_time_min_s <= d <= profile.load_time_max_s for d in draws)
    assert len(set(draws)) > 150
    median = sorted(draws)[100]
    assert 0.8 * profile.load_time_median_s < median < 1.2 * profile.load_time_median_s
    narrow = resolve_profile("flan-t5-small", {"load_time_min_s": 39, "load_time_max_s": 41})
    assert all(39 <= draw_load_time_s(narrow, seed) <= 41 for seed in range(50))


def test_docs_table_matches_the_profiles() -> None:
    """docs/emulator.md states every parameter's value; keep it in step with the code."""
    docs = (Path(__file__).parents[2] / "docs" / "emulator.md").read_text()
    assert "illustrative, not measurements" in docs
    header = next(line for line in docs.splitlines() if line.startswith("| parameter |"))
    columns = [c.strip() for c in header.strip("|").split("|")][1:-1]
    assert columns == list(PROFILES)
    rows = {}
    table = docs.splitlines()
    start = table.index(header)
    end = next(i for i in range(start + 1, len(table)) if not table[i].startswith("|"))
    for line in table[start:end]:  # the profile table only (other tables name fields too)
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells and cells[0].startswith("`") and cells[0].strip("`") in OVERRIDABLE:
            rows[cells[0].strip("`")] = cells[1 : 1 + len(columns)]
    assert set(rows) == set(OVERRIDABLE)
    for key, values in rows.items():
        for name, text in zip(columns, values, strict=True):
            assert float(text) == getattr(PROFILES[name], key), (key, name)

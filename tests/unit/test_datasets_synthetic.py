"""Synthetic prompts: exact toy-token lengths, determinism, and the size caps."""

from __future__ import annotations

import pytest

from servingperf.datasets import synthetic_prompts, toy_token_count
from servingperf.datasets.synthetic import MAX_SYNTHETIC_TOKENS, WORDS
from servingperf.errors import ConfigError


@pytest.mark.parametrize("input_tokens", [1, 2, 7, 128, 4096])
def test_every_prompt_has_exactly_the_requested_length(input_tokens: int) -> None:
    prompts = synthetic_prompts(20, input_tokens, seed=3)
    assert len(prompts) == 20
    for p in prompts:
        assert toy_token_count(p.text) == input_tokens
        assert p.text == " ".join(p.text.split())  # single spaces, nothing at the ends
        assert set(p.text.split()) <= set(WORDS)
        assert p.system_prompt is None
        assert p.expected_output_tokens is None
    assert [p.index for p in prompts] == list(range(20))


def test_same_seed_same_prompts_other_seed_other_prompts() -> None:
    first = synthetic_prompts(10, 50, seed=7)
    assert synthetic_prompts(10, 50, seed=7) == first
    assert synthetic_prompts(10, 50, seed=8) != first
    assert synthetic_prompts(10, 50, seed=-7) != first


def test_asking_for_more_prompts_keeps_the_first_ones() -> None:
    assert synthetic_prompts(12, 30, seed=1)[:5] == synthetic_prompts(5, 30, seed=1)


def test_prompts_differ_from_each_other() -> None:
    prompts = synthetic_prompts(50, 16, seed=0)
    assert len({p.text for p in prompts}) == 50


def test_known_output_for_a_seed_is_stable() -> None:
    # Guards reproducibility across versions: changing the generator changes past runs' prompts.
    assert synthetic_prompts(1, 8, seed=0)[0].text == "those one go must door this said rain"


@pytest.mark.parametrize(("count", "tokens"), [(0, 5), (5, 0), (-1, 5)])
def test_nonpositive_sizes_are_config_errors(count: int, tokens: int) -> None:
    with pytest.raises(ConfigError, match="count >= 1 and input tokens >= 1"):
        synthetic_prompts(count, tokens, seed=0)


def test_total_size_is_capped_before_generating() -> None:
    with pytest.raises(ConfigError, match=r"lower 'prompts' or 'synthetic_input_tokens'"):
        synthetic_prompts(MAX_SYNTHETIC_TOKENS // 1000 + 1, 1000, seed=0)


def test_a_prompt_over_the_byte_limit_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"more than the 1000000 bytes"):
        synthetic_prompts(1, 1_000_000, seed=0)

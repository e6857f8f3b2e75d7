"""The bundled sample: size, validity, and a real spread of lengths and topics."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from servingperf.datasets import Prompt, read_bundled, toy_token_count


@pytest.fixture(scope="module")
def bundled() -> tuple[Prompt, ...]:
    return tuple(read_bundled())


def test_has_at_least_220_prompts_numbered_in_order(bundled: tuple[Prompt, ...]) -> None:
    assert len(bundled) >= 220
    assert [p.index for p in bundled] == list(range(len(bundled)))


def test_readme_states_the_actual_count(bundled: tuple[Prompt, ...]) -> None:
    readme = resources.files("servingperf.datasets").joinpath("data", "README.md").read_text()
    assert f"{len(bundled)} prompts" in readme
    with_system = sum(p.system_prompt is not None for p in bundled)
    assert f"({len(bundled) - with_system} of {len(bundled)})" in readme


def test_every_line_has_exactly_the_documented_fields() -> None:
    raw = resources.files("servingperf.datasets").joinpath("data", "prompts.jsonl").read_text()
    lines = raw.splitlines()
    for number, line in enumerate(lines, start=1):
        row = json.loads(line)
        assert set(row) == {"system_prompt", "question", "expected_output_tokens"}, number
        assert isinstance(row["system_prompt"], str), number
        assert row["system_prompt"] == row["system_prompt"].strip(), number
        assert isinstance(row["question"], str), number
        assert row["question"] == row["question"].strip(), number
        assert type(row["expected_output_tokens"]) is int, number


def test_fields_are_valid_and_prompts_distinct(bundled: tuple[Prompt, ...]) -> None:
    for p in bundled:
        assert p.text.strip(), p.index
        assert p.expected_output_tokens is not None
        assert 16 <= p.expected_output_tokens <= 512, p.index
        assert p.system_prompt is None or p.system_prompt.strip()
    assert len({p.text for p in bundled}) == len(bundled)


def test_question_lengths_are_spread_from_a_few_words_to_several_hundred(
    bundled: tuple[Prompt, ...],
) -> None:
    words = sorted(toy_token_count(p.text) for p in bundled)
    assert words[0] <= 8
    assert words[-1] >= 350
    assert sum(w <= 10 for w in words) >= 25
    assert sum(11 <= w <= 100 for w in words) >= 100
    assert sum(w > 200 for w in words) >= 10
    median = words[len(words) // 2]
    assert 15 <= median <= 80


def test_output_lengths_cover_the_whole_range(bundled: tuple[Prompt, ...]) -> None:
    lengths = [p.expected_output_tokens or 0 for p in bundled]
    assert min(lengths) == 16
    assert max(lengths) == 512
    for low, high in [(16, 63), (64, 127), (128, 255), (256, 512)]:
        assert sum(low <= n <= high for n in lengths) >= 30, (low, high)
    assert len(set(lengths)) >= 40


def test_some_prompts_have_system_prompts_a_few_long(bundled: tuple[Prompt, ...]) -> None:
    system_words = [toy_token_count(p.system_prompt) for p in bundled if p.system_prompt]
    assert len(system_words) >= 15
    assert sum(w >= 150 for w in system_words) >= 3


@pytest.mark.parametrize(
    ("fragment", "at_least"),
    [
        ("translat", 10),
        ("summar", 10),
        ("story", 5),
        ("extract", 5),
        ("probability", 2),
        ("python", 3),
        ("sql", 2),
        ("json", 3),
        ("classify", 3),
    ],
)
def test_topics_are_varied(bundled: tuple[Prompt, ...], fragment: str, at_least: int) -> None:
    assert sum(fragment in p.text.lower() for p in bundled) >= at_least

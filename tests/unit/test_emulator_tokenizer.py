"""The toy tokenizer: counts words and punctuation, generates countable words, deterministically."""

from __future__ import annotations

import json

from servingperf.emulator.tokenizer import (
    TOKEN_JSON,
    TOKEN_TEXTS,
    count_tokens,
    generated_text,
    token_text,
)


def test_counts_words_and_punctuation() -> None:
    assert count_tokens("") == 0
    assert count_tokens("   \n\t ") == 0
    assert count_tokens("Hello, world!") == 4
    assert count_tokens("one two  three") == 3
    assert count_tokens("don't") == 3
    assert count_tokens("x" * 1000) == 1


def test_counting_is_deterministic() -> None:
    text = "The quick brown fox; it jumps (twice) over 2 lazy dogs."
    assert len({count_tokens(text) for _ in range(10)}) == 1


def test_generated_tokens_are_words_with_a_leading_space() -> None:
    for i in range(3 * len(TOKEN_TEXTS)):
        text = token_text(i)
        assert text.startswith(" ")
        assert text[1:].isalpha()
        assert token_text(i) == text
        assert count_tokens(text) == 1
        assert token_text(i) != token_text(i + 1)


def test_generated_text_counts_back_exactly() -> None:
    for n in (0, 1, 2, 63, 64, 65, 500):
        text = generated_text(n)
        assert count_tokens(text) == n
        assert text == "".join(token_text(i) for i in range(n))


def test_pre_encoded_json_matches_the_texts() -> None:
    assert [json.loads(j) for j in TOKEN_JSON] == list(TOKEN_TEXTS)
